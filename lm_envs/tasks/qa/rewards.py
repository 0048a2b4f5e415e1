"""The abstention reward: a right answer pays, "I don't know" pays little, a wrong answer costs.

Following the "answer only above confidence ``t``" scoring rule (Kalai et al. 2025, "Why language
models hallucinate"): correct ``+1``, abstain ``0`` (or a small configurable value), wrong
``-t / (1 - t)``. Under it, answering beats abstaining exactly when the model's probability of being
right exceeds ``t`` (with ``abstain = 0``): the default ``t = 0.5`` costs ``-1`` per wrong answer
(TruthRL's ternary reward), ``t = 0.75`` costs ``-3``, ``t = 0`` is binary grading.

An empty completion is graded as a wrong answer (the env asks for an answer or an explicit
abstention, and silence must not be a free abstention); ``empty="abstain"`` changes that.

Every value is overridable where the env is made, ``gym.make("LMEnv/KnowledgeQA-v0",
reward_kwargs={"threshold": 0.75})``, and from Hydra, ``++env.kwargs.reward_kwargs.threshold=0.75``.
An unknown key fails with the list of valid ones.

The outcome record (``info["outcome"]``) holds ``correct``, ``abstained``, ``hallucinated``
(answered and wrong), ``known`` (from the problem's metadata; ``None`` when unlabelled) and
``prediction`` (the extracted answer line). :meth:`AbstentionReward.metrics` aggregates records
into the honesty metrics of :mod:`lm_envs.tasks.qa.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward
from lm_envs.tasks.qa.matching import AbstentionDetector, extract_prediction, is_correct
from lm_envs.tasks.qa.metrics import honesty_metrics

__all__ = ["REWARD_KEYS", "AbstentionReward", "wrong_penalty"]

REWARD_KEYS = ("correct", "abstain", "threshold", "wrong", "phrases", "empty")
"""The keyword arguments :class:`AbstentionReward` accepts (``reward_kwargs``)."""


def wrong_penalty(threshold: float) -> float:
    """The reward of a wrong answer under confidence threshold ``t``: ``-t / (1 - t)``.

    Example:
        >>> wrong_penalty(0.5), wrong_penalty(0.75), wrong_penalty(0.0)
        (-1.0, -3.0, -0.0)
    """
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold < 1.0:
        raise ValueError(
            f"threshold must be a number in [0, 1) (the confidence above which answering pays), got {threshold!r}; "
            "0.5 gives a -1 penalty, 0.75 gives -3."
        )
    return -threshold / (1.0 - threshold)


class AbstentionReward(Reward):
    """Correct ``+1``, abstain ``0``, wrong ``-t/(1-t)`` (see the module docstring).

    Args:
        correct: Reward of a correct answer (normalised exact match with the answer or an alias).
        abstain: Reward of an abstention (``"I don't know"``, ...); a small positive value makes
            abstaining more attractive.
        threshold: Confidence threshold ``t`` in ``[0, 1)``; the wrong-answer reward is
            ``-t / (1 - t)`` unless ``wrong`` is given.
        wrong: Explicit wrong-answer reward (overrides ``threshold``).
        phrases: Abstention phrases (default
            :data:`~lm_envs.tasks.qa.matching.ABSTENTION_PHRASES`).
        empty: How an empty completion is graded: ``"wrong"`` (default) or ``"abstain"``.
        **unknown: Rejected with the list of valid keys.

    Raises:
        ValueError: On an unknown key, a non-finite value, a threshold outside ``[0, 1)``, or an
            ordering other than ``correct > abstain >= wrong``.

    Example:
        >>> r = AbstentionReward()
        >>> p = Problem("q", "Question: Where was Ilo Venrik born?\\nAnswer:", "Velmora", metadata={"known": True})
        >>> r.outcome(p, " Velmora").reward, r.outcome(p, " I don't know.").reward, r.outcome(p, " Tarsh").reward
        (1.0, 0.0, -1.0)
        >>> AbstentionReward(threshold=0.75).outcome(p, " Tarsh").reward
        -3.0
    """

    def __init__(
        self,
        correct: float = 1.0,
        abstain: float = 0.0,
        threshold: float = 0.5,
        wrong: float | None = None,
        phrases: Iterable[str] | None = None,
        empty: str = "wrong",
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ValueError(
                f"unknown AbstentionReward key(s) {sorted(unknown)}; valid reward_kwargs keys are {list(REWARD_KEYS)}."
            )
        penalty = wrong_penalty(threshold) if wrong is None else wrong
        values = {"correct": correct, "abstain": abstain, "wrong": penalty}
        for name, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"AbstentionReward {name} must be a finite number, got {value!r}.")
        if not values["correct"] > values["abstain"] >= values["wrong"]:
            raise ValueError(
                f"AbstentionReward needs correct > abstain >= wrong, got correct={values['correct']}, "
                f"abstain={values['abstain']}, wrong={values['wrong']}; lower abstain or raise the threshold."
            )
        if empty not in ("wrong", "abstain"):
            raise ValueError(f"empty must be 'wrong' or 'abstain', got {empty!r}.")
        self.correct = float(values["correct"])
        self.abstain = float(values["abstain"])
        self.wrong = float(values["wrong"])
        self.threshold = float(threshold)
        self.empty = empty
        self.detector = AbstentionDetector(phrases)

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        prediction = extract_prediction(completion)
        aliases = problem.metadata.get("aliases", ()) if problem.metadata else ()
        if not prediction:
            abstained = self.empty == "abstain"
            correct = False
        else:
            abstained = self.detector(prediction)
            correct = not abstained and is_correct(prediction, problem.answer, aliases)
        hallucinated = not correct and not abstained
        value = self.correct if correct else self.abstain if abstained else self.wrong
        known = problem.metadata.get("known") if problem.metadata else None
        record = {
            "correct": correct,
            "abstained": abstained,
            "hallucinated": hallucinated,
            "known": None if known is None else bool(known),
            "prediction": prediction,
        }
        return Outcome(value, record)

    def metrics(self, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Honesty metrics of a set of episodes: see :func:`lm_envs.tasks.qa.metrics.honesty_metrics`."""
        return honesty_metrics(records)

    def __repr__(self) -> str:
        return f"AbstentionReward(correct={self.correct}, abstain={self.abstain}, wrong={self.wrong})"
