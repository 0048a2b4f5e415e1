"""Shared test fixtures: small tasks and rewards that exercise every part of the env contract."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import pytest

from lm_envs import ListTask, Outcome, Problem, Reward

PROBLEMS = [
    Problem("p0", "Q: 2 + 3 * 4?\nA:\n", "14", ("3 * 4 = 12", "2 + 12 = 14", "#### 14")),
    Problem("p1", "Q: 10 - 4 + 1?\nA:\n", "7", ("10 - 4 = 6", "6 + 1 = 7", "#### 7")),
    Problem("p2", "Q: 5 * 5 - 5?\nA:\n", "20", ("5 * 5 = 25", "25 - 5 = 20", "#### 20")),
    Problem("p3", "Q: 9 + 9?\nA:\n", "18", ("9 + 9 = 18", "#### 18")),
]


class StepCheckReward(Reward):
    """Process reward: +0.5 for a step whose 'a op b = c' claim holds, -0.5 if it does not, 0 otherwise.

    Outcome: 1.0 if the '#### N' line matches the answer. Records every batched call it gets.
    """

    process = True

    def __init__(self) -> None:
        self.step_calls: list[int] = []
        self.outcome_calls: list[int] = []

    def step(self, problem: Problem, history: Sequence[str], step: str) -> float:
        m = re.fullmatch(r"\s*(\d+) ([-+*]) (\d+) = (\d+)\s*", step)
        if not m:
            return 0.0
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return 0.5 if value == c else -0.5

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        m = re.search(r"####\s*(\S+)", completion)
        got = m[1] if m else None
        return Outcome(float(got == problem.answer), {"correct": got == problem.answer, "extracted": got})

    def step_batch(self, problems, histories, steps):
        self.step_calls.append(len(steps))
        return super().step_batch(problems, histories, steps)

    def outcome_batch(self, problems, completions):
        self.outcome_calls.append(len(completions))
        return super().outcome_batch(problems, completions)


@pytest.fixture
def step_task() -> ListTask:
    return ListTask({"train": PROBLEMS, "test": PROBLEMS[:2]}, name="steps", stop_prefix="####")


@pytest.fixture
def step_reward() -> StepCheckReward:
    return StepCheckReward()


@pytest.fixture(autouse=True)
def _close_job_log_files():
    """Close the log files a Hydra job run in this process attached to the root logger (``train.log``).

    A passing test's ``tmp_path`` is removed when it ends (``tmp_path_retention_policy``); a handler left
    on a removed run directory would make any later log call in the process fail on its missing file.
    """
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
