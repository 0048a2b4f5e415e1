"""Learned verifiers behind the math reward: a process reward model (PRM) and an outcome reward model (ORM).

:class:`LearnedPRM` serves ``process="learned"`` (and ``outcome_source="prm"``), :class:`LearnedORM`
serves ``outcome_source="orm"``.

Any ``transformers`` sequence classifier (or token classifier) with one output (a logit,
``P(correct) = sigmoid``) or two outputs (``P(correct) = softmax[1]``) saved in a local directory
with its tokenizer. A step is scored on the text ``prompt + steps[0..t]`` joined by the separator
and closed by it, i.e. at the step separator, the way PRM800K-style PRMs are trained. Importing
this module imports neither torch nor transformers; building a :class:`LearnedPRM` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lm_envs.core.problem import Problem


def step_text(problem: Problem, history: Sequence[str], step: str, separator: str = "\n") -> str:
    """The text a PRM scores for ``step`` after ``history``: prompt, steps so far, separator."""
    return problem.prompt + "".join(s + separator for s in (*history, step))


def aggregate(probabilities: Sequence[float], how: str) -> float:
    """Solution-level score from step probabilities: ``product``, ``min`` or ``last`` (1.0 if none).

    Example:
        >>> aggregate([0.9, 0.5], "product"), aggregate([0.9, 0.5], "min"), aggregate([0.9, 0.5], "last")
        (0.45, 0.5, 0.5)
    """
    if not probabilities:
        return 1.0
    if how == "product":
        return math.prod(probabilities)
    if how == "min":
        return min(probabilities)
    if how == "last":
        return probabilities[-1]
    raise ValueError(f"unknown aggregate {how!r}; choose 'product', 'min' or 'last'.")


class LearnedPRM:
    """Scores reasoning steps with a ``transformers`` classifier loaded from ``path``.

    Args:
        path: Local directory (or hub name) of the classifier and its tokenizer.
        device: Torch device.
        batch_size: Texts per forward pass.
        max_length: Longer texts are cut from the left (the newest steps matter most).
        separator: Step separator used to build the scored text.
    """

    def __init__(
        self, path: str, device: str = "cpu", batch_size: int = 64, max_length: int = 1024, separator: str = "\n"
    ) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        try:
            config = AutoConfig.from_pretrained(path)
        except OSError as e:
            raise ValueError(f"cannot load the learned PRM from {path!r}: {e}") from e
        token_level = any("TokenClassification" in a for a in (config.architectures or []))
        cls = AutoModelForTokenClassification if token_level else AutoModelForSequenceClassification
        self.model = cls.from_pretrained(path).to(device).eval()
        self.num_labels = int(self.model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise ValueError(
                f"the PRM at {path!r} has {self.num_labels} outputs; a PRM needs 1 (a logit) or 2 (bad/good)."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.truncation_side = "left"
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.token_level, self.device, self.torch = token_level, device, torch
        self.batch_size, self.max_length, self.separator = batch_size, max_length, separator

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        """``P(last step correct)`` for each text, in batches of ``batch_size``."""
        torch = self.torch
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            enc = self.tokenizer(
                chunk, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
            ).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            if self.token_level:  # read the prediction at each text's last real token
                last = enc["attention_mask"].sum(1) - 1
                logits = logits[torch.arange(len(chunk), device=logits.device), last]
            if self.num_labels == 1:
                p = torch.sigmoid(logits[:, 0])
            else:
                p = torch.softmax(logits, dim=-1)[:, 1]
            out.extend(p.cpu().tolist())
        return out

    def step_probabilities(
        self, problems: Sequence[Problem], histories: Sequence[Sequence[str]], steps: Sequence[str]
    ) -> list[float]:
        """One probability per closed step, scored in batched forwards."""
        texts = [step_text(p, h, s, self.separator) for p, h, s in zip(problems, histories, steps, strict=True)]
        return self.probabilities(texts)

    def solution_scores(self, problems: Sequence[Problem], completions: Sequence[str], how: str) -> list[float]:
        """Solution-level scores: every step prefix of every completion scored, then aggregated."""
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        for problem, completion in zip(problems, completions, strict=True):
            steps = [s for s in completion.split(self.separator) if s.strip()]
            start = len(texts)
            texts.extend(step_text(problem, steps[:k], steps[k], self.separator) for k in range(len(steps)))
            spans.append((start, len(texts)))
        probs = self.probabilities(texts) if texts else []
        return [aggregate(probs[a:b], how) for a, b in spans]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.config.name_or_path!r}, labels={self.num_labels})"


class LearnedORM(LearnedPRM):
    """A learned outcome reward model: ``P(solution correct)`` scored on ``prompt + completion``.

    The same classifiers as :class:`LearnedPRM` (one logit or two outputs), read on the whole solution, as
    ``lm-envs train-rm rm=orm`` trains them (:mod:`agents.reward_models.train`). The arguments are
    :class:`LearnedPRM`'s (``separator`` is unused).
    """

    def solution_probabilities(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        """``P(correct)`` of each completion, scored in batched forwards."""
        return self.probabilities([p.prompt + c for p, c in zip(problems, completions, strict=True)])
