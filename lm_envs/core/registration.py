"""Registering token-level environments with Gymnasium, and making their text-level twins."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from lm_envs.core.components import RewardSpec, TaskSpec
from lm_envs.core.protocol import EvalProtocol, set_protocol

TOKEN_ENTRY_POINT = "lm_envs.core.token_env:TokenEnv"
VECTOR_ENTRY_POINT = "lm_envs.core.vector_env:TokenVectorEnv"


def register(
    id: str,
    task: TaskSpec,
    reward: RewardSpec,
    *,
    nondeterministic: bool = False,
    reward_threshold: float | None = None,
    protocol: EvalProtocol | dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Register a token-level environment: ``gym.make(id)`` and ``gym.make_vec(id, num_envs)`` then work.

    Registers :class:`~lm_envs.TokenEnv` as the entry point and the native
    :class:`~lm_envs.TokenVectorEnv` as the vector entry point, so ``gym.make_vec`` builds one batched
    env rather than a loop of envs. :func:`make_text` builds the text-level twin from the same spec.

    Args:
        id: ``[namespace/]Name-vN``; bump ``N`` whenever data, prompt, tokenizer or reward change.
        task: A :class:`~lm_envs.Task`, or an import string ``"package.module:attr"`` naming one, its
            class or a factory (strings keep the spec serialisable).
        reward: A :class:`~lm_envs.Reward`, a function ``(problem, completion) -> float``, or an
            import string naming a reward, its class or a factory.
        nondeterministic: Set for rewards that are not a function of the text (e.g. a sampled judge).
        reward_threshold: Return at which the env counts as solved (informational).
        protocol: How the env is evaluated for the leaderboard (default: ``EvalProtocol()``,
            accuracy on the whole ``test`` split over at least 3 seeds).
        **kwargs: Default keyword arguments of the env (``max_new_tokens``, ``task_kwargs``, ...);
            ``gym.make(id, **overrides)`` overrides them.

    Example:
        >>> import gymnasium as gym, lm_envs
        >>> task = lm_envs.ListTask.from_pairs(train=[("2+2=", "4")], test=[("3+3=", "6")])
        >>> lm_envs.register("Doc/Add-v0", task=task, reward=lambda p, c: float(c.strip() == p.answer))
        >>> env = gym.make("Doc/Add-v0", max_new_tokens=4)
        >>> obs, info = env.reset(seed=0)
        >>> info["prompt"]
        '2+2='
    """
    gym.register(
        id=id,
        entry_point=TOKEN_ENTRY_POINT,
        vector_entry_point=VECTOR_ENTRY_POINT,
        nondeterministic=nondeterministic,
        reward_threshold=reward_threshold,
        kwargs={"task": task, "reward": reward, **kwargs},
    )
    set_protocol(id, protocol if protocol is not None else EvalProtocol())


def make_text(id: str, **kwargs: Any) -> Any:
    """Make the :class:`~lm_envs.TextEnv` twin of a registered token-level env (same task and reward).

    Raises:
        gymnasium.error.Error: If ``id`` is not registered (with suggestions, as ``gym.make``).
        ValueError: If ``id`` was not registered through :func:`register`.
    """
    from lm_envs.core.text_env import TextEnv

    spec = gym.spec(id)
    if spec.entry_point != TOKEN_ENTRY_POINT:
        raise ValueError(
            f"{id!r} is not an lm_envs token env; make_text works on ids registered with lm_envs.register."
        )
    return TextEnv(**{**spec.kwargs, **kwargs})


def registered_ids() -> list[str]:
    """Every registered id whose entry point is an lm_envs token env, sorted."""
    return sorted(k for k, s in gym.registry.items() if s.entry_point == TOKEN_ENTRY_POINT)
