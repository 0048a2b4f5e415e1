"""A trivially learnable task: write digits. Agents use it to prove that they learn.

It plays the role of stable-baselines3's identity envs for token-level RL: every generated token
earns its own credit (a digit counts, anything else does not), about one token in a hundred is a
digit under a random policy, and the optimum is plain: only digits, for the whole budget. A correct
learner's return rises from about 0.01 to near 1.0 within a short run; a broken one's does not.
"""

from __future__ import annotations

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward
from lm_envs.core.task import Task

PROMPT = "Write a long number:\n"


class DigitsTask(Task):
    """One prompt, ``"Write a long number:\\n"``, in both splits; its gold answer is ``"12345678"``."""

    name = "digits"

    def size(self, split: str) -> int:
        self.check_split(split)
        return 1

    def problem(self, split: str, index: int) -> Problem:
        self.check_index(split, index)
        return Problem(id=f"{split}/0", prompt=PROMPT, answer="12345678", steps=("12345678",))


class DigitCountReward(Reward):
    """``min(number of digit characters, length) / length``: each digit written earns ``1 / length``.

    Example:
        >>> r = DigitCountReward(length=8)
        >>> r.outcome(Problem("a", "q"), "12ab34").reward, r.outcome(Problem("a", "q"), "123456789").reward
        (0.5, 1.0)
    """

    def __init__(self, length: int = 8) -> None:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"DigitCountReward length must be a positive int, got {length!r}.")
        self.length = length

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        digits = sum(c.isdigit() for c in completion)
        return Outcome(min(digits, self.length) / self.length, {"correct": digits >= self.length, "digits": digits})
