"""Math word problems: generator, dataset loaders, safe grading, outcome/process rewards, PRMs.

Environment ids: ``LMEnv/Math-v0`` (outcome reward) and ``LMEnv/MathProcess-v0`` (rule-based
process rewards plus outcome); see :mod:`lm_envs.builtin_envs`. Files in GSM8K or MATH JSONL
format plug into the same env: ``gym.make("LMEnv/Math-v0", task="lm_envs.tasks.math:load_math_task",
task_kwargs={"train": "train.jsonl", "test": "test.jsonl", "format": "gsm8k"})``.
"""

from __future__ import annotations

from typing import Any

from lm_envs.tasks.math.generator import ArithmeticWordProblems
from lm_envs.tasks.math.loaders import load_math_task
from lm_envs.tasks.math.rewards import MathReward

__all__ = ["ArithmeticWordProblems", "MathReward", "load_math_task", "stratified_word_problems", "word_problems"]


def word_problems(preset: str = "easy", **overrides: Any) -> ArithmeticWordProblems:
    """The generated word problems of a difficulty preset (``"basic"``, ``"easy"``, ``"medium"``, ``"hard"``)."""
    return ArithmeticWordProblems.from_preset(preset, **overrides)


def stratified_word_problems(preset: str = "easy", **overrides: Any) -> ArithmeticWordProblems:
    """:func:`word_problems` with ``stratified_test=True`` unless overridden (``LMEnv/Math-v1``'s task).

    A test split with train's mix of step counts, templates and variants. ``task_kwargs`` given to
    ``gym.make("LMEnv/Math-v1", task_kwargs=...)`` replace the registered ones, and the split stays
    stratified because the factory, not the registered kwargs, sets it.

    Example:
        >>> stratified_word_problems("easy", max_steps=1).stratified_test
        True
    """
    return ArithmeticWordProblems.from_preset(preset, **{"stratified_test": True, **overrides})
