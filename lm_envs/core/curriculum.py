"""Reverse-curriculum start states (R3, Xi et al. 2024): start from a prefix of a gold solution.

A start state is the prompt plus the first ``k`` gold steps; the policy writes the rest. The
*stage* of a start state is the number of steps left to write, ``K - k`` for a solution of ``K``
steps, so stage 1 is the easiest (only the last step missing) and the last stage is the whole
problem. Two schedules:

* ``"mixed"`` (R3's released default): ``k`` uniform over ``0 .. K-1`` for every episode, all
  stages trained together.
* ``"staged"``: begin at stage 1 and move to the next stage (fewer given steps) when the success
  rate over the last ``window`` episodes of the current stage reaches ``threshold``.

The environments call :meth:`ReverseCurriculum.start` on reset (unless a reset option fixes the
prefix) and :meth:`ReverseCurriculum.record` when an episode ends; ``info`` carries ``stage`` at
reset and ``curriculum`` (current stage and per-stage success rates) at the end.
:meth:`~ReverseCurriculum.state_dict` / :meth:`~ReverseCurriculum.load_state_dict` make the
schedule survive a checkpoint.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from lm_envs.core.problem import Problem

MODES = ("mixed", "staged")


class ReverseCurriculum:
    """Chooses start states from gold solutions and tracks success per stage.

    Args:
        mode: ``"mixed"`` or ``"staged"`` (see the module docstring).
        threshold: Staged: success rate that advances to the next stage.
        window: Number of recent episodes per stage that the success rate is taken over.
        min_episodes: Staged: episodes needed at a stage before it may advance.
        max_stage: Last stage (whole problems for solutions of up to ``max_stage`` steps).
        separator: Step separator placed after each given step.

    Example:
        >>> c = ReverseCurriculum("staged", threshold=0.5, window=2, min_episodes=2)
        >>> p = Problem("a", "q", "3", steps=("1 + 1 = 2", "2 + 1 = 3", "#### 3"))
        >>> c.start(p, np.random.default_rng(0))
        ('1 + 1 = 2\\n2 + 1 = 3\\n', 1)
        >>> c.record(1, True); c.record(1, True); c.stage
        2
    """

    def __init__(
        self,
        mode: str = "mixed",
        threshold: float = 0.7,
        window: int = 64,
        min_episodes: int = 32,
        max_stage: int = 16,
        separator: str = "\n",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"curriculum mode must be one of {MODES}, got {mode!r}.")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"curriculum threshold must be in (0, 1], got {threshold!r}.")
        if window < 1 or min_episodes < 1 or max_stage < 1:
            raise ValueError("curriculum window, min_episodes and max_stage must be positive ints.")
        self.mode, self.threshold, self.window = mode, float(threshold), int(window)
        self.min_episodes, self.max_stage, self.separator = int(min_episodes), int(max_stage), separator
        self.stage = 1
        self.history: dict[int, deque[bool]] = {}
        self.counts: dict[int, int] = {}

    def start(self, problem: Problem, rng: np.random.Generator) -> tuple[str, int]:
        """Choose a start state for ``problem``: ``(prefix, stage)``.

        Raises:
            ValueError: If the problem has no gold steps to build start states from.
        """
        n = len(problem.steps)
        if n == 0:
            raise ValueError(
                f"problem {problem.id!r} has no gold solution steps, so no reverse-curriculum start state can be "
                "built; use a task with gold steps (Problem.steps) or curriculum=None."
            )
        if self.mode == "mixed":
            k = int(rng.integers(n))
        else:
            k = max(n - self.stage, 0)
        return problem.prefix(k, self.separator), min(n - k, self.max_stage)

    def record(self, stage: int, success: bool) -> None:
        """Count one finished episode started at ``stage``; advance a staged schedule if due."""
        stage = int(stage)
        hist = self.history.setdefault(stage, deque(maxlen=self.window))
        hist.append(bool(success))
        self.counts[stage] = self.counts.get(stage, 0) + 1
        if (
            self.mode == "staged"
            and stage == self.stage
            and self.stage < self.max_stage
            and len(hist) >= min(self.min_episodes, self.window)
            and sum(hist) / len(hist) >= self.threshold
        ):
            self.stage += 1

    def success_rates(self) -> dict[int, float]:
        """Success rate over the recent window, per stage seen so far."""
        return {s: sum(h) / len(h) for s, h in sorted(self.history.items()) if h}

    def info(self) -> dict[str, Any]:
        """What the env reports at the end of an episode."""
        return {"stage": self.stage, "success_rates": {str(k): v for k, v in self.success_rates().items()}}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable schedule state (for checkpoints)."""
        return {
            "mode": self.mode,
            "stage": self.stage,
            "history": {str(k): [int(x) for x in v] for k, v in self.history.items()},
            "counts": {str(k): v for k, v in self.counts.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        if state.get("mode") != self.mode:
            raise ValueError(f"curriculum state is for mode {state.get('mode')!r}, this curriculum is {self.mode!r}.")
        self.stage = int(state["stage"])
        self.history = {int(k): deque((bool(x) for x in v), maxlen=self.window) for k, v in state["history"].items()}
        self.counts = {int(k): int(v) for k, v in state["counts"].items()}


def make_curriculum(spec: ReverseCurriculum | str | dict[str, Any] | None, separator: str) -> ReverseCurriculum | None:
    """Build a curriculum from ``None``, a mode name, a kwargs dict or an instance."""
    if spec is None or isinstance(spec, ReverseCurriculum):
        return spec
    if isinstance(spec, str):
        return ReverseCurriculum(spec, separator=separator)
    if isinstance(spec, dict):
        return ReverseCurriculum(**{"separator": separator, **spec})
    raise TypeError(f"curriculum must be None, 'mixed', 'staged', a dict of ReverseCurriculum kwargs; got {spec!r}.")
