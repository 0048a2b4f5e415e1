"""Evaluation protocols: how a registered env is scored for the leaderboard.

A protocol is declared beside the env's registration (``lm_envs.register(..., protocol=...)``),
so a new env gets a leaderboard by declaring one.
"""

from __future__ import annotations

import math
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
        metric_range: ``(low, high)``, the values ``metric`` can take (either end ``None`` for
            unbounded); the leaderboard refuses per-seed scores outside it. Default: ``(0, 1)`` for
            ``"accuracy"``, else ``None`` (no declared range: any finite score of magnitude up to 1e15).
        tolerance: Largest absolute difference per seed between a submitted score and the score a
            re-run of this protocol gives, for the leaderboard to mark the entry verified.

    Example:
        >>> EvalProtocol(num_episodes=100).to_dict()["metric_range"]
        [0.0, 1.0]
        >>> EvalProtocol(metric="mean_return", metric_range=(-1, 1)).metric_range
        (-1.0, 1.0)
    """

    split: str = "test"
    num_episodes: int | None = None
    min_seeds: int = 3
    metric: str = "accuracy"
    higher_is_better: bool = True
    aggregate: str = "iqm"
    metric_range: tuple[float | None, float | None] | None = None
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        if self.num_episodes is not None and (not isinstance(self.num_episodes, int) or self.num_episodes < 1):
            raise ValueError(f"num_episodes must be a positive int or None, got {self.num_episodes!r}.")
        if not isinstance(self.min_seeds, int) or self.min_seeds < 1:
            raise ValueError(f"min_seeds must be a positive int, got {self.min_seeds!r}.")
        if self.aggregate not in ("iqm", "mean"):
            raise ValueError(f"aggregate must be 'iqm' or 'mean', got {self.aggregate!r}.")
        bounds = self.metric_range
        if bounds is None and self.metric == "accuracy":
            bounds = (0.0, 1.0)
        if bounds is not None:
            bounds = _range(bounds)
        object.__setattr__(self, "metric_range", bounds)
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)):
            raise ValueError(f"tolerance must be a number >= 0, got {self.tolerance!r}.")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {self.tolerance!r}.")
        object.__setattr__(self, "tolerance", float(self.tolerance))

    def to_dict(self) -> dict[str, Any]:
        """The protocol as a plain dict of JSON data (for result files and the leaderboard)."""
        out = asdict(self)
        out["metric_range"] = list(self.metric_range) if self.metric_range is not None else None
        return out

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is a value the metric can take (inside :attr:`metric_range`, ends included)."""
        if self.metric_range is None:
            return math.isfinite(value)
        low, high = self.metric_range
        return math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)


def _range(bounds: Any) -> tuple[float | None, float | None]:
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(f"metric_range must be (low, high) with None for an open end, got {bounds!r}.") from None
    out = []
    for end in (low, high):
        if end is None:
            out.append(None)
        elif isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
            raise ValueError(f"metric_range ends must be finite numbers or None, got {bounds!r}.")
        else:
            out.append(float(end))
    if out[0] is not None and out[1] is not None and not out[0] < out[1]:
        raise ValueError(f"metric_range must have low < high, got {bounds!r}.")
    return out[0], out[1]


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
