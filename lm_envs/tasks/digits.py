"""A trivially learnable task: write digits. Agents use it to prove that they learn.

It plays the role of stable-baselines3's identity envs for token-level RL: every generated token
earns its own credit (a digit counts, anything else does not), about one token in a hundred is a
digit under a random policy, and the optimum is plain: only digits, for the whole budget. A correct
learner's return rises from about 0.01 to near 1.0 within a short run; a broken one's does not.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward
from lm_envs.core.task import Reply, Task

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

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """Eight random digits: the format asked for (a number) is the whole task here.

        So the format-only baseline scores the optimum (1.0 on ``LMEnv/Digits-v0``, and on
        ``LMEnv/DigitTurns-v0``, where each turn's first digit ends it): these envs check that agents
        learn, their scores say nothing about knowledge.

        Example:
            >>> DigitsTask().format_only(DigitsTask().problem("test", 0), random.Random(0))
            '66048764'
        """
        return "".join(str(rng.randrange(10)) for _ in range(8))


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


class DigitTurnsTask(DigitsTask):
    """The two-turn version: a digit ends the policy's turn; the env says ``" next:"`` once, then ends it.

    Each turn ended by a digit pays a turn reward of 0.5 (on the digit's token), so the optimum is a
    digit at once, twice: return 1.0 in two turns. A random policy rarely writes a digit within the
    budget. The env's ``" next:"`` sits between the policy's turns: agents that trained on it, or lost
    the turn structure, would not learn this as fast as the single-turn ``LMEnv/Digits-v0``.
    """

    name = "digit-turns"
    turn_stops = tuple("0123456789")

    def respond(self, problem: Problem, turns: Sequence[str], final: bool) -> Reply | None:
        if final:
            return None
        return Reply(" next:", reward=0.5) if len(turns) < 2 else Reply(reward=0.5, done=True)


class ZeroReward(Reward):
    """No outcome reward (for envs whose turns carry all of it)."""

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        return Outcome(0.0)
