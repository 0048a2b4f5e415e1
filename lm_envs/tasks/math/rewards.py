"""Math rewards: outcome (ORM-style, graded answer) and process (per step), combined with weights.

* **Outcome**: the final answer is extracted from the completion (:func:`grading.extract_answer`)
  and compared with the gold answer (:func:`grading.grade`). It pays ``correct`` when equivalent,
  ``wrong`` when an answer was found but is not equivalent ("formatted but wrong"), ``no_answer``
  when none was found. Plain 1 / 0 / 0 by default; R3 uses 1 / 0.2 / 0 (``MathReward.r3()``).
* **Process** (``process="rule"``): every closed step is checked by the rule-based verifier
  (:func:`steps.check_step`, exact rational arithmetic) and pays ``step_correct``,
  ``step_wrong`` or ``step_unverifiable`` on the token that closes it.
* **Process** (``process="learned"``): a learned PRM (any ``transformers`` sequence classifier,
  see :class:`~lm_envs.tasks.math.prm.LearnedPRM`) gives each step a probability ``p`` of being
  correct and the step pays the expected rule reward ``p * step_correct + (1 - p) * step_wrong``.
  The solution-level PRM score (product, min or last of the step probabilities) goes in the record.
* **Outcome source** (``outcome_source``): ``"grader"`` (default) pays the graded answer as above;
  ``"orm"`` pays a learned outcome reward model's verdict instead (any ``transformers`` sequence
  classifier scoring ``prompt + completion``, e.g. from ``lm-envs train-rm rm=orm``; see
  :class:`~lm_envs.tasks.math.prm.LearnedORM`); ``"prm"`` pays the learned PRM's solution-level
  aggregate (``prm_aggregate``: product, min or last of the step probabilities). Both pay the expected
  outcome reward under the model's probability ``p`` that the solution is right,
  ``p * correct + (1 - p) * wrong``; the grader still fills the record (``correct``, hence
  ``is_success`` and accuracy, stay the true ones), beside ``orm_score`` / ``prm_score``. A
  pairwise-trained ORM's logit is a Bradley-Terry score, not a calibrated log-odds: ``p`` then ranks
  solutions but its scale is arbitrary.

The episode pays ``outcome_weight * outcome`` at the end and ``process_weight * step`` per step.
The record (``info["outcome"]``) holds ``correct``, ``extracted``, ``reason``, the number of
steps, ``first_error`` (index of the first wrong step of the completion, or ``None``) and, with a
learned PRM (as process reward or outcome source), ``prm_score``; with a learned ORM, ``orm_score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward
from lm_envs.tasks.math.grading import extract_answer, grade
from lm_envs.tasks.math.steps import check_step, first_error

PROCESS_MODES = ("none", "rule", "learned")
AGGREGATES = ("product", "min", "last")
OUTCOME_SOURCES = ("grader", "orm", "prm")


class MathReward(Reward):
    """Outcome and process rewards for math word problems (see the module docstring).

    Args:
        correct: Outcome reward for an equivalent final answer.
        wrong: Outcome reward for a final answer that is present but wrong.
        no_answer: Outcome reward when no final answer can be extracted.
        process: ``"none"``, ``"rule"`` (step verifier) or ``"learned"`` (a learned PRM).
        step_correct: Rule process reward of a step whose claim holds.
        step_wrong: Rule process reward of a step whose claim is false.
        step_unverifiable: Rule process reward of a step with no checkable claim.
        outcome_weight: Weight of the outcome reward.
        process_weight: Weight of the process rewards.
        prm_path: Local path (or name) of the learned PRM, for ``process="learned"``.
        prm_aggregate: Solution-level PRM score: ``"product"``, ``"min"`` or ``"last"``.
        prm_device: Torch device for the learned PRM.
        outcome_source: What pays the outcome: ``"grader"`` (the graded answer), ``"orm"`` (a learned
            outcome RM at ``orm_path``) or ``"prm"`` (the learned PRM's ``prm_aggregate`` at ``prm_path``).
        orm_path: Local path (or name) of the learned ORM, for ``outcome_source="orm"``.
        orm_device: Torch device for the learned ORM.
        timeout: Seconds allowed to a symbolic answer comparison.
        fallback_last_number: Take the last number as the answer when no answer marker is found.

    Example:
        >>> r = MathReward(process="rule")
        >>> p = Problem("a", "q", "40", steps=("12 * 3 = 36", "36 + 4 = 40", "#### 40"))
        >>> r.step(p, [], "12 * 3 = 37"), r.outcome(p, "12 * 3 = 36\\n36 + 4 = 40\\n#### 40").reward
        (-0.5, 1.0)
    """

    def __init__(
        self,
        correct: float = 1.0,
        wrong: float = 0.0,
        no_answer: float = 0.0,
        process: str = "none",
        step_correct: float = 0.1,
        step_wrong: float = -0.5,
        step_unverifiable: float = 0.0,
        outcome_weight: float = 1.0,
        process_weight: float = 1.0,
        prm_path: str | None = None,
        prm_aggregate: str = "product",
        prm_device: str = "cpu",
        outcome_source: str = "grader",
        orm_path: str | None = None,
        orm_device: str = "cpu",
        timeout: float = 1.0,
        fallback_last_number: bool = False,
    ) -> None:
        if process not in PROCESS_MODES:
            raise ValueError(f"unknown process reward mode {process!r}; choose one of {PROCESS_MODES}.")
        if prm_aggregate not in AGGREGATES:
            raise ValueError(f"unknown prm_aggregate {prm_aggregate!r}; choose one of {AGGREGATES}.")
        if process == "learned" and not prm_path:
            raise ValueError(
                "process='learned' needs prm_path= (a directory holding a transformers sequence classifier, "
                "e.g. one trained with `lm-envs train-rm rm=prm`)."
            )
        if outcome_source not in OUTCOME_SOURCES:
            raise ValueError(f"unknown outcome_source {outcome_source!r}; choose one of {OUTCOME_SOURCES}.")
        if outcome_source == "orm" and not orm_path:
            raise ValueError(
                "outcome_source='orm' needs orm_path= (a directory holding a transformers sequence classifier, "
                "e.g. one trained with `lm-envs train-rm rm=orm`)."
            )
        if outcome_source == "prm" and not prm_path:
            raise ValueError(
                "outcome_source='prm' needs prm_path= (a directory holding a transformers sequence classifier, "
                "e.g. one trained with `lm-envs train-rm rm=prm`)."
            )
        values = dict(
            correct=correct,
            wrong=wrong,
            no_answer=no_answer,
            step_correct=step_correct,
            step_wrong=step_wrong,
            step_unverifiable=step_unverifiable,
            outcome_weight=outcome_weight,
            process_weight=process_weight,
            timeout=timeout,
        )
        for name, value in values.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"MathReward {name} must be a number, got {value!r}.") from None
            if value != value or abs(value) == float("inf"):
                raise ValueError(f"MathReward {name} must be finite, got {value!r}.")
            setattr(self, name, value)
        if self.timeout <= 0:
            raise ValueError(f"MathReward timeout must be > 0 seconds, got {timeout!r}.")
        self.process_mode = process
        self.process = process != "none" and self.process_weight != 0.0
        self.prm_path, self.prm_aggregate, self.prm_device = prm_path, prm_aggregate, prm_device
        self.fallback_last_number = fallback_last_number
        self.outcome_source, self.orm_path, self.orm_device = outcome_source, orm_path, orm_device
        self._prm: Any = None
        self._orm: Any = None

    @classmethod
    def r3(cls, **overrides: Any) -> MathReward:
        """R3's partial-credit outcome reward: 1 correct, 0.2 answered but wrong, 0 no answer."""
        return cls(**{"correct": 1.0, "wrong": 0.2, "no_answer": 0.0, **overrides})

    # ------------------------------------------------------------------ outcome

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        return self.outcome_batch([problem], [completion])[0]

    def outcome_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        prm_scores: list[float | None] = [None] * len(problems)
        orm_scores: list[float | None] = [None] * len(problems)
        if self.process_mode == "learned" or self.outcome_source == "prm":
            prm_scores = list(self._learned().solution_scores(problems, completions, self.prm_aggregate))
        if self.outcome_source == "orm":
            orm_scores = list(self._learned_orm().solution_probabilities(problems, completions))
        out = []
        for problem, completion, prm_score, orm_score in zip(
            problems, completions, prm_scores, orm_scores, strict=True
        ):
            extracted = extract_answer(completion, fallback_last_number=self.fallback_last_number)
            if extracted is None:
                value, correct, reason = self.no_answer, False, "no answer"
            else:
                verdict = grade(problem.answer, extracted, timeout=self.timeout)
                correct, reason = verdict.equivalent, verdict.reason
                value = self.correct if correct else self.wrong
            steps = [s for s in completion.split("\n") if s.strip()]
            record: dict[str, Any] = {
                "correct": correct,
                "extracted": extracted,
                "reason": reason,
                "num_steps": len(steps),
                "first_error": first_error(steps),
            }
            if prm_score is not None:
                record["prm_score"] = float(prm_score)
            if orm_score is not None:
                record["orm_score"] = float(orm_score)
            learned = {"orm": orm_score, "prm": prm_score}.get(self.outcome_source)
            if learned is not None:  # the verifier's expected outcome reward replaces the grader's
                value = learned * self.correct + (1 - learned) * self.wrong
            out.append(Outcome(self.outcome_weight * value, record))
        return out

    # ------------------------------------------------------------------ process

    def step(self, problem: Problem, history: Sequence[str], step: str) -> float:
        return self.step_batch([problem], [history], [step])[0]

    def step_batch(
        self, problems: Sequence[Problem], histories: Sequence[Sequence[str]], steps: Sequence[str]
    ) -> list[float]:
        if self.process_mode == "none":
            return [0.0] * len(steps)
        if self.process_mode == "learned":
            probs = self._learned().step_probabilities(problems, histories, steps)
            return [self.process_weight * (p * self.step_correct + (1 - p) * self.step_wrong) for p in probs]
        pay = {"correct": self.step_correct, "wrong": self.step_wrong, "unverifiable": self.step_unverifiable}
        return [self.process_weight * pay[check_step(s).verdict] for s in steps]

    def _learned(self) -> Any:
        if self._prm is None:
            from lm_envs.tasks.math.prm import LearnedPRM

            self._prm = LearnedPRM(self.prm_path, device=self.prm_device)
        return self._prm

    def _learned_orm(self) -> Any:
        if self._orm is None:
            from lm_envs.tasks.math.prm import LearnedORM

            self._orm = LearnedORM(self.orm_path, device=self.orm_device)
        return self._orm

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_prm"] = state["_orm"] = None  # reloaded lazily; models do not belong in a pickled env
        return state

    def __repr__(self) -> str:
        return (
            f"MathReward(correct={self.correct}, wrong={self.wrong}, no_answer={self.no_answer}, "
            f"process={self.process_mode!r}"
            + (f", outcome_source={self.outcome_source!r})" if self.outcome_source != "grader" else ")")
        )
