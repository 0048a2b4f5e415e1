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

#: A probe text two tokenizers must split alike to count as one (with the same byte table).
_PROBE = "Q: Tom has 12 apples and buys 3 * 4 = 12 more.\n12 + 12 = 24\n#### 24\n"


def same_tokenizer(a: object, b: object) -> bool:
    """Whether two :class:`~lm_envs.core.tokenizer.TextCodec` s map the same ids to the same bytes and split alike.

    Then a verifier with codec ``a`` can read token ids sampled with codec ``b`` as they are.
    """
    if a is b:
        return True
    return (
        getattr(a, "vocab_size", None) == getattr(b, "vocab_size", None)
        and getattr(a, "eos_token_id", None) == getattr(b, "eos_token_id", None)
        and list(getattr(a, "token_bytes", [])) == list(getattr(b, "token_bytes", []))
        and a.encode(_PROBE) == b.encode(_PROBE)  # type: ignore[attr-defined]
    )


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


#: Backbones whose hidden state at a token depends on the tokens up to it only.
_CAUSAL_TYPES = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox", "gptj", "phi3", "olmo", "smollm3")


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
        self.path = path
        self._codec: object | None = None

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

    def __call__(
        self, problems: Sequence[Problem], histories: Sequence[Sequence[str]], steps: Sequence[str]
    ) -> list[float]:
        """:meth:`step_probabilities`: a PRM is a step scorer of :func:`agents.search.tree.search`."""
        return self.step_probabilities(problems, histories, steps)

    def shares_tokenizer(self, codec: object) -> bool:
        """Whether token ids of ``codec`` (a policy's) can be scored as they are (:meth:`token_step_scores`).

        True when this PRM's tokenizer maps every id to the same bytes and splits text alike, and its
        backbone is causal (a score read at a token depends on the text up to it only).
        """
        config = self.model.config
        causal = getattr(config, "model_type", "") in _CAUSAL_TYPES or bool(getattr(config, "is_decoder", False))
        if not causal or not (self.token_level or hasattr(self.model, "score")):
            return False
        if self._codec is None:
            from lm_envs.core.tokenizer import load_codec

            try:
                self._codec = load_codec(self.path)
            except Exception:  # a hub name without a local tokenizer file, or a tokenizer the codec cannot read
                self._codec = False
        return bool(self._codec) and same_tokenizer(self._codec, codec)

    def token_step_scores(
        self, contexts: Sequence[Sequence[int]], starts: Sequence[int], ends: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """``P(step correct)`` read in ONE forward per context at each step end, from token ids (no text).

        ``contexts[i]`` is a prompt's and a partial solution's token ids (this PRM's tokenizer: check
        :meth:`shares_tokenizer`), ``ends[i]`` the token counts after which a step (closed by its separator)
        ends. With a causal backbone, the score read at token ``e - 1`` of the whole context is the score
        of the prefix ``context[:e]`` on its own, so every step of a row costs one forward, and nothing is
        decoded and re-encoded. A prefix longer than ``max_length`` is cut from the left, as
        :meth:`probabilities` cuts texts. ``starts`` (where the prompt ends) is not needed here.
        """
        torch = self.torch
        del starts
        jobs: list[tuple[list[int], list[tuple[int, int, int]]]] = []  # (ids, [(row, k, read position)])
        out: list[list[float]] = [[float("nan")] * len(e) for e in ends]
        for i, (ids, row_ends) in enumerate(zip(contexts, ends, strict=True)):
            ids = list(ids)
            if not row_ends:
                continue
            if max(row_ends) <= self.max_length:
                jobs.append((ids[: max(row_ends)], [(i, k, e - 1) for k, e in enumerate(row_ends)]))
            else:  # each step on its own window of the last max_length tokens
                for k, e in enumerate(row_ends):
                    window = ids[max(0, e - self.max_length) : e]
                    jobs.append((window, [(i, k, len(window) - 1)]))
        pad = self.tokenizer.pad_token_id
        for s in range(0, len(jobs), self.batch_size):
            chunk = jobs[s : s + self.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            batch = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, (ids, _) in enumerate(chunk):  # right padding: real tokens never see a pad
                batch[j, : len(ids)] = torch.tensor(ids)
                mask[j, : len(ids)] = 1
            batch, mask = batch.to(self.device), mask.to(self.device)
            with torch.no_grad():
                if self.token_level:
                    logits = self.model(input_ids=batch, attention_mask=mask).logits.float()
                else:
                    hidden = self.model.base_model(input_ids=batch, attention_mask=mask).last_hidden_state
                    logits = self.model.score(hidden).float()
            if self.num_labels == 1:
                p = torch.sigmoid(logits[..., 0])
            else:
                p = torch.softmax(logits, dim=-1)[..., 1]
            p = p.cpu()
            for j, (_, reads) in enumerate(chunk):
                for i, k, pos in reads:
                    out[i][k] = float(p[j, pos])
        return out

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
