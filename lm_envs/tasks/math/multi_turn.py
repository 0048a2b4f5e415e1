"""Multi-turn math: a calculator tool (``LMEnv/MathTools-v0``) and self-correction (``LMEnv/MathRetry-v0``).

Both serve the generated word problems of ``LMEnv/Math-v0`` (same prompts, answers and gold steps)
and grade the final answer with :class:`~lm_envs.tasks.math.rewards.MathReward`; what changes is
what the env says between the policy's turns (:meth:`lm_envs.Task.respond`).

* :class:`MathToolsTask`: ``<calc>12*37</calc>`` ends the policy's turn and the env appends
  `` = 444``, evaluated exactly by the step verifier's safe arithmetic parser
  (:func:`lm_envs.tasks.math.steps.evaluate`: no ``eval``, bounded digits, depth, exponents and
  intermediate sizes, so it finishes quickly on any input). An expression longer than
  ``max_expression_chars`` or one that does not parse gets `` = error: <why>``.
* :class:`MathRetryTask`: after a final answer (the ``####`` line) the env checks it; when it is
  wrong (or always, ``feedback="always"``) it says so, optionally naming the first step the step
  verifier flags, and hands the turn back, up to ``attempts`` attempts. :class:`RetryReward` pays
  for the final attempt (optionally discounted by the attempts used) and reports per-attempt
  grades, from which :meth:`RetryReward.metrics` computes first-attempt accuracy, accuracy within
  ``k`` attempts and how often a correct answer was changed to a wrong one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome
from lm_envs.core.task import Reply, Task
from lm_envs.tasks.math import word_problems
from lm_envs.tasks.math.grading import extract_answer, grade
from lm_envs.tasks.math.rewards import MathReward
from lm_envs.tasks.math.steps import ExpressionError, evaluate, first_error, format_value

__all__ = ["MathRetryTask", "MathToolsTask", "RetryReward", "calculate", "split_attempts"]

CALL_OPEN, CALL_CLOSE = "<calc>", "</calc>"
#: Every retry message starts with this (it is how :func:`split_attempts` finds the attempts).
VERIFIER = "Verifier:"


class _WordProblems(Task):
    """The word problems of a preset, as a base for tasks that only change the turns."""

    def __init__(self, preset: str = "easy", **overrides: Any) -> None:
        self.base = word_problems(preset, **overrides)
        self.splits = self.base.splits

    def size(self, split: str) -> int:
        return self.base.size(split)

    def problem(self, split: str, index: int) -> Problem:
        return self.base.problem(split, index)

    def stops(self, step: str) -> bool:
        return self.base.stops(step)

    def corpus(self) -> Iterator[str]:
        return self.base.corpus()

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """The word problems' format-only answer (a ``#### <number>`` guess), on every turn."""
        return self.base.format_only(problem, rng)


def calculate(expression: str, max_chars: int = 200) -> str:
    """The calculator's answer to ``expression``: its exact value, or ``"error: <why>"``; never raises.

    Example:
        >>> calculate("12*37"), calculate("7/2"), calculate("1/0"), calculate("2**99999")
        ('444', '3.5', 'error: division by zero', 'error: exponent too large')
    """
    expression = expression.strip()
    if len(expression) > max_chars:
        return f"error: expression longer than {max_chars} characters"
    try:
        return format_value(evaluate(expression), decimals=True)
    except ExpressionError as e:
        why = str(e).split(":")[0].strip() or "not an arithmetic expression"
        if "zero" in why:
            why = "division by zero"
        elif "exponent" in why:
            why = "exponent too large"
        return f"error: {why[:60]}"


class MathToolsTask(_WordProblems):
    """Word problems with a calculator: ``<calc>expr</calc>`` ends a turn and the env appends `` = value``.

    Args:
        preset: Difficulty preset of the word problems (``LMEnv/Math-v0``'s is ``"easy"``).
        max_expression_chars: Longer expressions are refused (`` = error: ...``).
        **overrides: Generator overrides (``distinct_test``, ...).
    """

    turn_stops = (CALL_CLOSE,)

    def __init__(self, preset: str = "easy", max_expression_chars: int = 200, **overrides: Any) -> None:
        super().__init__(preset, **overrides)
        self.name = f"{self.base.name}-tools"
        self.max_expression_chars = int(max_expression_chars)

    def demonstration(self, problem: Problem, separator: str = "\n") -> list[str]:
        """The gold steps with each calculation asked of the calculator.

        A step ``a op b = c`` whose left side the calculator evaluates to ``c`` becomes the turn
        ``<calc>a op b</calc>``, to which the env replies `` = c``; other steps stay text.

        Example:
            >>> task = MathToolsTask()
            >>> task.demonstration(Problem("p", "q", "8", steps=("23 - 9 = 14", "14 - 6 = 8", "#### 8")))
            ['<calc>23 - 9</calc>', '\\n<calc>14 - 6</calc>', '\\n#### 8']
        """
        turns, text = [], ""
        for k, step in enumerate(problem.steps):
            lead = separator if k else ""
            left, eq, right = step.rpartition("=")
            if eq and left.strip() and calculate(left, self.max_expression_chars) == right.strip():
                turns.append(f"{text}{lead}{CALL_OPEN}{left.strip()}{CALL_CLOSE}")
                text = ""
            else:
                text += lead + step
        return [*turns, text] if text or not turns else turns

    def respond(self, problem: Problem, turns: Sequence[str], final: bool) -> Reply | None:
        if final:
            return None
        text = turns[-1]
        close = text.rfind(CALL_CLOSE)
        start = text.rfind(CALL_OPEN, 0, close)
        if start < 0:
            value = f"error: {CALL_CLOSE} without {CALL_OPEN}"
        else:
            value = calculate(text[start + len(CALL_OPEN) : close], self.max_expression_chars)
        return Reply(f" = {value}", info={"result": value})


def split_attempts(completion: str) -> list[str]:
    """The attempts of a self-correction transcript: the text between the verifier's messages.

    Example:
        >>> split_attempts("#### 4\\nVerifier: wrong answer. Try again.\\n#### 5\\n")
        ['#### 4\\n', '#### 5\\n']
    """
    return re.split(rf"{re.escape(VERIFIER)}[^\n]*\n", completion)


class MathRetryTask(_WordProblems):
    """Word problems with up to ``attempts`` attempts; the env checks each final answer.

    Args:
        preset: Difficulty preset of the word problems.
        attempts: Most attempts (1: ``LMEnv/Math-v0``'s episodes).
        feedback: ``"oracle"``: retry only after a wrong answer (the env knows the gold answer);
            ``"always"``: ask for a re-check after every attempt but the last, without saying
            whether it was right (self-verification; correct answers can be changed to wrong ones).
        point_to_step: Name the first step the step verifier flags as wrong, when there is one.
        **overrides: Generator overrides.
    """

    def __init__(
        self,
        preset: str = "easy",
        attempts: int = 3,
        feedback: str = "oracle",
        point_to_step: bool = False,
        **overrides: Any,
    ) -> None:
        if not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a positive int, got {attempts!r}.")
        if feedback not in ("oracle", "always"):
            raise ValueError(f"feedback must be 'oracle' or 'always', got {feedback!r}.")
        super().__init__(preset, **overrides)
        self.name = f"{self.base.name}-retry{attempts}"
        self.attempts, self.feedback, self.point_to_step = attempts, feedback, bool(point_to_step)

    def respond(self, problem: Problem, turns: Sequence[str], final: bool) -> Reply | None:
        if not final or len(turns) >= self.attempts:
            return None
        attempt = turns[-1]
        correct = attempt_correct(problem, attempt)
        if correct and self.feedback == "oracle":
            return None
        lead = "" if attempt.endswith("\n") else "\n"
        if self.feedback == "always":
            return Reply(f"{lead}{VERIFIER} check your work and answer again.\n", info={"attempt": len(turns)})
        message = "wrong answer."
        bad = first_error([s for s in attempt.split("\n") if s.strip()]) if self.point_to_step else None
        if bad is not None:
            message = f"wrong answer; step {bad + 1} looks wrong."
        return Reply(f"{lead}{VERIFIER} {message} Try again.\n", info={"attempt": len(turns), "first_error": bad})


def attempt_correct(problem: Problem, attempt: str, timeout: float = 1.0) -> bool:
    """Whether one attempt's final answer is equivalent to the problem's."""
    extracted = extract_answer(attempt)
    return extracted is not None and grade(problem.answer, extracted, timeout=timeout).equivalent


class RetryReward(MathReward):
    """:class:`MathReward` on the final attempt of a self-correction transcript, with per-attempt grades.

    Args:
        attempt_discount: The reward is multiplied by ``attempt_discount ** (attempts - 1)`` (1: no
            discount).
        **kwargs: :class:`MathReward` arguments (``correct``, ``wrong``, ...).

    The record adds ``attempts`` and ``attempt_correct`` (one bool per attempt).
    """

    def __init__(self, attempt_discount: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        discount = float(attempt_discount)
        if not 0 < discount <= 1:
            raise ValueError(f"attempt_discount must be in (0, 1], got {attempt_discount!r}.")
        self.attempt_discount = discount

    def outcome_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        attempts = [split_attempts(c) for c in completions]
        finals = super().outcome_batch(problems, [a[-1] for a in attempts])
        out = []
        for problem, parts, final in zip(problems, attempts, finals, strict=True):
            grades = [attempt_correct(problem, a, self.timeout) for a in parts[:-1]] + [bool(final.record["correct"])]
            record = {**final.record, "attempts": len(parts), "attempt_correct": grades}
            out.append(Outcome(final.reward * self.attempt_discount ** (len(parts) - 1), record))
        return out

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float]:
        """First-attempt accuracy, accuracy within ``k`` attempts, and correct answers changed to wrong ones.

        ``accuracy_at_k``: the share of episodes with a correct answer among their first ``k``
        attempts whose final attempt is correct too, i.e. solved by attempt ``k``;
        ``correct_to_wrong``: the share of episodes in which a correct attempt was followed by a
        wrong one.
        """
        grades = [r["attempt_correct"] for r in records if "attempt_correct" in r]
        if not grades:
            return {}
        n, most = len(grades), max(len(g) for g in grades)
        out = {
            "first_attempt_accuracy": sum(g[0] for g in grades) / n,
            "mean_attempts": sum(len(g) for g in grades) / n,
            "correct_to_wrong": sum(any(a and not b for a, b in zip(g, g[1:])) for g in grades) / n,
        }
        for k in range(1, most + 1):
            out[f"accuracy_at_{k}"] = sum(bool(g[min(k, len(g)) - 1]) for g in grades) / n
        return out

    def __repr__(self) -> str:
        return f"RetryReward(attempt_discount={self.attempt_discount}, correct={self.correct}, wrong={self.wrong})"
