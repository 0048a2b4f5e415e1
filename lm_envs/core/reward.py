"""Rewards score text, never tokens: an outcome at the end, optional process rewards per step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lm_envs.core.problem import Problem


@dataclass(frozen=True)
class Outcome:
    """The result of scoring a finished completion.

    Attributes:
        reward: The scalar outcome reward paid on the episode's final token.
        record: What the reward saw, for ``info`` and evaluation (e.g. ``correct``,
            ``extracted``, ``abstained``). Keep it deterministic and JSON-serialisable.
    """

    reward: float
    record: dict[str, Any] = field(default_factory=dict)


class Reward:
    """Base class of every reward: outcome at the end, process rewards at step boundaries.

    Subclasses implement :meth:`outcome` and, for process rewards, set ``process = True`` and
    implement :meth:`step`. Learned reward models override the batched forms
    (:meth:`outcome_batch`, :meth:`step_batch`), which the vector environment calls once per
    vector step for every episode that reached a step boundary or its end in that step.

    Attributes:
        process: Whether :meth:`step` can pay anything. When ``False`` the environments skip
            step bookkeeping for rewards (they still split steps if the task has a stop rule).
        pays_turn_rewards: Whether the env pays a multi-turn task's turn rewards
            (:attr:`Reply.reward <lm_envs.core.task.Reply.reward>`) besides this reward's own;
            ``False`` makes this reward the only one paid (e.g. :class:`~lm_envs.core.baselines.RandomReward`).
    """

    process: bool = False
    pays_turn_rewards: bool = True

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        """Score a finished completion (the text after the prompt, start-state prefix included)."""
        raise NotImplementedError

    def step(self, problem: Problem, history: Sequence[str], step: str) -> float:
        """Reward for the reasoning step ``step`` just closed, after the closed steps ``history``.

        ``history`` includes the steps of a start-state prefix, which are never paid themselves.
        """
        return 0.0

    def outcome_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        """Score many finished completions; override for a single batched forward."""
        return [self.outcome(p, c) for p, c in zip(problems, completions, strict=True)]

    def step_batch(
        self,
        problems: Sequence[Problem],
        histories: Sequence[Sequence[str]],
        steps: Sequence[str],
    ) -> list[float]:
        """Score many closed steps; override for a single batched forward."""
        return [self.step(p, h, s) for p, h, s in zip(problems, histories, steps, strict=True)]

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Aggregate task metrics over the outcome records of a set of episodes (one per problem).

        Evaluation merges them into its result and training runs log them on every rollout, so a
        task can report what its mean return hides (e.g. abstention and hallucination rates).
        The default reports nothing; names must not clash with ``accuracy`` or ``mean_return``.

        Args:
            records: :attr:`Outcome.record` of each episode, in episode order.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The reward's own mutable state, JSON-serialisable, for training checkpoints.

        Stateless rewards (the default) have none. A reward whose payouts depend on what it has
        already scored (:class:`~lm_envs.core.baselines.RandomReward`'s repeat counts) returns it,
        so a resumed training run pays what an uninterrupted one would.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (the default, stateless, ignores it)."""


class FunctionReward(Reward):
    """An outcome reward from a plain function ``fn(problem, completion)``.

    ``fn`` may return a number, a ``(number, record_dict)`` pair or an :class:`Outcome`.

    Example:
        >>> r = FunctionReward(lambda p, c: float(c.strip() == p.answer))
        >>> r.outcome(Problem("a", "1+1=", "2"), " 2").reward
        1.0
    """

    def __init__(self, fn: Callable[[Problem, str], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionReward needs a callable (problem, completion) -> float, got {fn!r}.")
        self.fn = fn

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        return as_outcome(self.fn(problem, completion), source=self.fn)

    def __repr__(self) -> str:
        return f"FunctionReward({getattr(self.fn, '__qualname__', self.fn)!r})"


def as_outcome(value: Any, source: object = None) -> Outcome:
    """Coerce a reward function's return value into an :class:`Outcome`, checking it is finite."""
    if isinstance(value, Outcome):
        out = value
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        out = Outcome(float(value[0]), value[1])
    else:
        try:
            out = Outcome(float(value))
        except (TypeError, ValueError):
            raise TypeError(
                f"reward {source!r} returned {value!r}; return a float, a (float, dict) pair or an Outcome."
            ) from None
    if out.reward != out.reward or out.reward in (float("inf"), float("-inf")):
        raise ValueError(f"reward {source!r} returned a non-finite value {out.reward}; rewards must be finite.")
    return out


def as_reward(reward: Reward | Callable[[Problem, str], Any]) -> Reward:
    """Accept a :class:`Reward` or a plain outcome function and return a :class:`Reward`."""
    if isinstance(reward, Reward):
        return reward
    if callable(reward):
        return FunctionReward(reward)
    raise TypeError(
        f"expected a lm_envs.Reward or a function (problem, completion) -> float, got {type(reward).__name__}."
    )
