"""Evaluation protocols: how a registered env is scored for the leaderboard.

A protocol is declared beside the env's registration (``lm_envs.register(..., protocol=...)``),
so a new env gets a leaderboard by declaring one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

_PROTOCOLS: dict[str, EvalProtocol] = {}


@dataclass(frozen=True)
class EvalProtocol:
    """How an env id is evaluated and ranked.

    Attributes:
        split: The fixed split episodes are drawn from (problems in index order).
        num_episodes: Episodes per seed (the first ``num_episodes`` problems of ``split``); ``None``
            for the whole split.
        min_seeds: Fewest seeds a submission may report.
        metric: Name of the primary per-seed score (``"accuracy"``: mean of ``info["is_success"]``;
            ``"mean_return"``: mean episode return; or a key of the reward's record).
        higher_is_better: Direction of ``metric``.
        aggregate: How seeds are aggregated for ranking (``"iqm"``: interquartile mean with a 95%
            stratified-bootstrap confidence interval; ``"mean"``).

    Example:
        >>> EvalProtocol(num_episodes=100).to_dict()["metric"]
        'accuracy'
    """

    split: str = "test"
    num_episodes: int | None = None
    min_seeds: int = 3
    metric: str = "accuracy"
    higher_is_better: bool = True
    aggregate: str = "iqm"

    def __post_init__(self) -> None:
        if self.num_episodes is not None and (not isinstance(self.num_episodes, int) or self.num_episodes < 1):
            raise ValueError(f"num_episodes must be a positive int or None, got {self.num_episodes!r}.")
        if not isinstance(self.min_seeds, int) or self.min_seeds < 1:
            raise ValueError(f"min_seeds must be a positive int, got {self.min_seeds!r}.")
        if self.aggregate not in ("iqm", "mean"):
            raise ValueError(f"aggregate must be 'iqm' or 'mean', got {self.aggregate!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The protocol as a plain dict (for result files and the leaderboard)."""
        return asdict(self)


def set_protocol(env_id: str, protocol: EvalProtocol | dict[str, Any]) -> None:
    """Declare the evaluation protocol of ``env_id`` (called by :func:`lm_envs.register`)."""
    _PROTOCOLS[env_id] = protocol if isinstance(protocol, EvalProtocol) else EvalProtocol(**protocol)


def get_protocol(env_id: str) -> EvalProtocol:
    """The evaluation protocol of ``env_id``.

    Raises:
        KeyError: If the id is not registered in this process (import the package that registers it:
            ``lm-envs --import MODULE``), or was registered without :func:`lm_envs.register`.
    """
    try:
        return _PROTOCOLS[env_id]
    except KeyError:
        import gymnasium as gym

        if env_id in gym.registry:
            raise KeyError(
                f"env {env_id!r} has no evaluation protocol; register it with "
                "lm_envs.register(..., protocol=EvalProtocol(...))."
            ) from None
        raise KeyError(
            f"env {env_id!r} is not registered in this process; import the package that registers it "
            "(lm-envs --import MODULE ..., or an lm_envs.envs entry point; see lm_envs.load_plugins)."
        ) from None
