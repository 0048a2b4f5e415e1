"""Rejection sampling for language models in one file: best-of-N at test time, RFT / RAFT / ReST-EM training.

Both halves rest on one idea: sample several completions per problem from the policy through the
env, then keep the ones a judge likes. At test time the kept one is the answer; at training time
the kept ones are fine-tuning data.

**Best-of-N** (inference only; TRL's ``BestOfNSampler``, PRM800K's ``eval.py``):

1. Sample ``N`` completions for each test problem, in index order (``group_size=N``: consecutive
   envs share a problem).
2. Pick one per problem with a *selector*:

   * ``env_reward``: the highest env return. With a 0/1 verifiable outcome reward this *is* the
     oracle (the verifier needs the gold answer); it differs with dense, process or learned rewards.
   * ``majority``: self-consistency (Wang et al. 2022): the final answer of each completion is
     extracted (:func:`~lm_envs.tasks.math.grading.extract_answer`), equivalent answers vote
     together (:func:`~lm_envs.tasks.math.grading.grade`, so ``0.5`` and ``1/2`` are one vote),
     the largest class wins, ties go to the class seen first; its first completion is the pick.
   * ``reward_model``: the highest score of a learned scorer ``(prompts, completions) -> scores``:
     an outcome reward model (:class:`ClassifierScorer`) or a process reward model whose step
     probabilities are aggregated by ``product`` (Lightman et al. 2023), ``min`` (Math-Shepherd)
     or ``last`` (Snell et al. 2024) (:class:`PRMScorer`).
   * ``likelihood``: the highest mean per-token log-probability under the sampling distribution
     (Chen et al. 2021 ranked Codex samples this way), read from the rollout: no extra forward and no
     trained verifier. A baseline every learned verifier should beat: the policy's own confidence.
   * ``oracle``: any correct completion (pass@N, the ceiling of every selector).

3. Accuracy of the pick (env ``info["is_success"]``) for ``n = 1, 2, 4, ..., N`` from the same
   samples, using the first ``n`` of each group (nested subsets, so the oracle curve is monotone),
   as a columnar dict for a table or a plot (:func:`best_of_n_curve`).

**Rejection-sampling fine-tuning** (:func:`train_rft`), each round:

1. *Grow*: sample ``K = group_size`` completions for each of ``prompts_per_round`` train
   problems from the current policy through the env.
2. *Filter*: keep the correct ones (RFT, Yuan et al. 2023; ReST-EM's binary filter, Singh et al.
   2023) or the single best per prompt by env return (RAFT, Dong et al. 2023), optionally only those
   with return ``>= min_reward``, and optionally only from prompts the policy solves in at most
   ``max_group_success`` of its K samples (difficulty filtering: the problems it nearly always solves
   teach it little); drop duplicates (RFT dedupes distinct reasoning paths; here: the same prompt and
   the same generated token ids).
3. *Improve*: fine-tune on the kept samples with the SFT loss, on exactly the tokens the env
   received: the prompt ids as the env encoded them, then the generated ids; the loss covers only
   the generated ids. Nothing is decoded and re-tokenized. With ``from_base`` (ReST-EM) the weights
   go back to the initial model before each Improve step, so every round is a fresh fine-tune of
   the base model on data from the latest one.

Two options turn the rounds into *expert iteration* (Anthony et al. 2017; STaR, Zelikman et al. 2022;
Polu et al. 2022; ReST's growing dataset, Gulcehre et al. 2023), the form that pays when gold
demonstrations are few and graded problems are many:

* ``accumulate``: Improve trains on every sample kept so far (a *pool*, deduplicated across rounds),
  not only on this round's; each round's new problems add to what the policy has solved.
* ``demo_fraction``: that share of every Improve batch comes from the gold demonstrations of the SFT
  warm start, so the solutions of the first rounds (mostly the easiest problems) do not crowd out the
  demonstrations. ``demo_fraction=1`` is the control that tells RL's gain from more SFT: the same
  Improve steps, lr and optimizer on the demonstrations alone (samples are still drawn and their
  success logged, but never trained on).

With ``accumulate`` (and without ``from_base``) the Improve steps of all rounds continue one AdamW (its
state is checkpointed by ``lm-envs train``), as one fine-tune on a growing set would; otherwise every
round starts a fresh AdamW. (Continuing one AdamW on RAFT's own few samples per round collapsed the
policy early on ``LMEnv/Digits-v0`` at lr 3e-3.)

A round that keeps nothing (no correct sample yet) logs that and leaves the model unchanged.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.evaluate import pass_at_k
from agents.rollout import Rollout, collect
from agents.sft import collate, encode_demo, nll
from lm_envs import Problem
from lm_envs.tasks.math.grading import extract_answer, grade
from lm_envs.tasks.math.prm import LearnedPRM  # imports neither torch nor transformers until built

#: A learned scorer: one float per (prompt, completion) pair, higher is better.
Scorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
#: An SFT example: prompt token ids (as the env encoded them) and generated token ids.
Example = tuple[list[int], list[int]]

SELECTORS = ("env_reward", "majority", "reward_model", "weighted_majority", "likelihood", "oracle")
KEEP_MODES = ("correct", "best")
PRM_AGGREGATES = ("product", "min", "last")


# ============================================================================================
# Best-of-N at evaluation time
# ============================================================================================


@dataclass
class BestOfNConfig:
    """Settings of a best-of-N evaluation."""

    n: int = 16  # N: samples per problem (the largest n of the curve)
    num_problems: int | None = 200  # first problems of the split (None: the whole split)
    split: str = "test"
    temperature: float = 1.0  # sampling temperature (N > 1 needs diversity: not 0)
    selectors: tuple[str, ...] = ("oracle", "env_reward", "majority", "likelihood")  # + "reward_model" with a scorer
    trials: int = 1  # 1: the first n samples; more: also average over random orders of the N samples
    batch_size: int = 128  # envs per rollout (a multiple of n is best)


@dataclass
class Samples:
    """``N`` sampled completions for each of ``P`` problems; ``(P, N)`` arrays in sampling order.

    Attributes:
        prompts: The text each problem showed the model (prompt plus start-state prefix), ``P``.
        completions: ``P`` lists of ``N`` completion texts.
        returns: ``(P, N)`` env returns.
        success: ``(P, N)`` env ``is_success`` flags (correctness).
        scores: ``(P, N)`` learned scores for the ``reward_model`` selector, or ``None``.
        indices: Problem index of each row in its split (``0 .. P-1`` when not given).
        logprobs: ``(P, N)`` mean per-token log-probability of each completion under the sampling
            distribution (the ``likelihood`` selector), or ``None``.
    """

    prompts: list[str]
    completions: list[list[str]]
    returns: np.ndarray
    success: np.ndarray
    scores: np.ndarray | None = None
    indices: list[int] | None = None
    logprobs: np.ndarray | None = None
    _classes: np.ndarray | None = field(default=None, init=False, repr=False)  # majority-vote answer classes, cached

    def __post_init__(self) -> None:
        self.returns = np.asarray(self.returns, dtype=np.float64)
        self.success = np.asarray(self.success, dtype=bool)
        P = len(self.prompts)
        if self.returns.ndim != 2 or self.returns.shape[0] != P or self.returns.shape[1] < 1:
            raise ValueError(f"returns must be a (P, N) array with P={P} problems and N >= 1 samples.")
        shape = self.returns.shape
        if self.success.shape != shape or [len(c) for c in self.completions] != [shape[1]] * P:
            raise ValueError(f"completions, returns and success must all be {shape} (problems, samples).")
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64)
            if self.scores.shape != shape:
                raise ValueError(f"scores must be {shape} like returns, got {self.scores.shape}.")
        if self.logprobs is not None:
            self.logprobs = np.asarray(self.logprobs, dtype=np.float64)
            if self.logprobs.shape != shape:
                raise ValueError(f"logprobs must be {shape} like returns, got {self.logprobs.shape}.")
        if self.indices is None:
            self.indices = list(range(P))

    @property
    def n(self) -> int:
        """Samples per problem (``N``)."""
        return int(self.returns.shape[1])

    @classmethod
    def from_rollout(cls, rollout: Rollout) -> Samples:
        """Group a rollout's episodes by problem: ``group_size`` consecutive envs make one row."""
        k = rollout.group_size
        n_problems = len(rollout.infos) // k
        mask = rollout.mask.float()
        mean_logp = (rollout.logprobs * mask).sum(1) / mask.sum(1).clamp(min=1)
        return cls(
            prompts=[
                rollout.reset_infos[p * k]["prompt"] + rollout.reset_infos[p * k]["prefix"] for p in range(n_problems)
            ],
            completions=[[rollout.infos[p * k + j].get("completion", "") for j in range(k)] for p in range(n_problems)],
            returns=rollout.returns.view(n_problems, k).numpy(),
            success=rollout.success().view(n_problems, k).bool().numpy(),
            indices=[int(rollout.reset_infos[p * k]["index"]) for p in range(n_problems)],
            logprobs=mean_logp.view(n_problems, k).numpy(),
        )

    @classmethod
    def concat(cls, parts: Sequence[Samples]) -> Samples:
        """Stack the problems of several ``Samples`` with the same ``N``."""
        if not parts:
            raise ValueError("concat needs at least one Samples.")
        scores = None if any(p.scores is None for p in parts) else np.concatenate([p.scores for p in parts])
        logprobs = None if any(p.logprobs is None for p in parts) else np.concatenate([p.logprobs for p in parts])
        return cls(
            prompts=[x for p in parts for x in p.prompts],
            completions=[x for p in parts for x in p.completions],
            returns=np.concatenate([p.returns for p in parts]),
            success=np.concatenate([p.success for p in parts]),
            scores=scores,
            indices=[x for p in parts for x in (p.indices or [])],
            logprobs=logprobs,
        )

    def answer_classes(self) -> np.ndarray:
        """``(P, N)`` majority-vote class of each completion's answer (``-1``: no answer); cached.

        A class is named by the column of its first member (its representative); an answer joins the
        first earlier class whose representative ``grade(representative, answer)`` calls equivalent.
        """
        if self._classes is None:
            self._classes = np.array([answer_classes(row) for row in self.completions], dtype=np.int64)
        return self._classes

    def permuted(self, order: np.ndarray) -> Samples:
        """The same samples with the columns of row ``p`` reordered by ``order[p]`` (answer classes kept)."""
        rows = np.arange(len(self.prompts))[:, None]
        out = Samples(
            prompts=list(self.prompts),
            completions=[[c[j] for j in o] for c, o in zip(self.completions, order)],
            returns=self.returns[rows, order],
            success=self.success[rows, order],
            scores=None if self.scores is None else self.scores[rows, order],
            indices=list(self.indices or []),
            logprobs=None if self.logprobs is None else self.logprobs[rows, order],
        )
        out._classes = self.answer_classes()[rows, order]
        return out


def answer_classes(completions: Sequence[str]) -> list[int]:
    """Majority-vote class of each completion: the column of the first equivalent answer, ``-1`` if none.

    ``grade`` is not symmetric (gold first) and its tolerance is not transitive, so the class
    representative (the first answer of its kind) always plays the gold side: the result depends
    only on the order of the completions, never on which pairs happened to be compared.

    Example:
        >>> answer_classes(["#### 0.5", "no idea", "#### 1/2", "#### 3", "#### 3"])
        [0, -1, 0, 3, 3]
    """
    answers = [extract_answer(c) for c in completions]
    reps: list[int] = []  # representative column of each class, in order of first appearance
    out: list[int] = []
    for j, a in enumerate(answers):
        if a is None:
            out.append(-1)
            continue
        cls = next((r for r in reps if answers[r] == a or grade(answers[r], a).equivalent), None)
        if cls is None:
            reps.append(j)
            cls = j
        out.append(cls)
    return out


def select(samples: Samples, selector: str, n: int | None = None) -> np.ndarray:
    """Column of the chosen completion for each problem, among the first ``n`` samples of each.

    Args:
        samples: The sampled completions.
        selector: ``env_reward``, ``majority``, ``reward_model`` (the top-scored sample; needs
            ``samples.scores``), ``weighted_majority`` (the answer whose samples' scores sum highest:
            a vote weighted by a verifier, as in DIVERSE and Math-Shepherd's self-consistency + RM;
            ``samples.scores`` must then be probabilities, >= 0), ``likelihood`` (the highest mean
            token log-probability; needs ``samples.logprobs``) or ``oracle``. Like ``reward_model`` it
            looks at every sample; to pick only among samples with a final answer (PRM800K's rule for
            math), set the others' scores to ``-inf`` and select with ``reward_model``.
        n: Look at the first ``n`` samples of each problem (default all ``N``).

    Returns:
        ``(P,)`` int array of columns in ``0 .. n-1``. Ties go to the earliest sample.
    """
    n = samples.n if n is None else n
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= samples.n:
        raise ValueError(f"n must be an int with 1 <= n <= N={samples.n} (samples per problem), got {n!r}.")
    if selector == "env_reward":
        return samples.returns[:, :n].argmax(1)  # argmax returns the first maximum
    if selector == "oracle":
        return samples.success[:, :n].argmax(1)  # the first correct one, else column 0
    if selector == "reward_model":
        if samples.scores is None:
            raise ValueError("selector 'reward_model' needs learned scores: pass a scorer (see score_samples).")
        return samples.scores[:, :n].argmax(1)
    if selector == "majority":
        return np.array([_vote(row[:n]) for row in samples.answer_classes()], dtype=np.int64)
    if selector == "likelihood":
        if samples.logprobs is None:
            raise ValueError("selector 'likelihood' needs samples.logprobs: build Samples with Samples.from_rollout.")
        return samples.logprobs[:, :n].argmax(1)
    if selector == "weighted_majority":
        if samples.scores is None:
            raise ValueError("selector 'weighted_majority' needs verifier probabilities in samples.scores.")
        classes = samples.answer_classes()
        weights = samples.scores[:, :n]
        answered = classes[:, :n] >= 0
        if (weights[answered] < 0).any() or not np.isfinite(weights[answered]).all():
            raise ValueError(
                "selector 'weighted_majority' weighs votes by samples.scores, which must be finite and >= 0 "
                "on answered samples: pass probabilities (e.g. the sigmoid of an ORM's logit), not logits."
            )
        return np.array([_vote(c[:n], w) for c, w in zip(classes, weights, strict=True)], dtype=np.int64)
    raise ValueError(f"unknown selector {selector!r}; choose one of {SELECTORS}.")


def _vote(classes: np.ndarray, weights: np.ndarray | None = None) -> int:
    """First member of the answer class with the most votes (each ``weights[j]``, default 1).

    Ties go to the class met first; column 0 if nobody answered.
    """
    counts: dict[int, float] = {}
    first: dict[int, int] = {}
    for j, c in enumerate(classes.tolist()):
        if c >= 0:
            counts[c] = counts.get(c, 0) + (1.0 if weights is None else float(weights[j]))
            first.setdefault(c, j)
    if not counts:
        return 0
    winner = max(counts, key=lambda c: (counts[c], -first[c]))
    return first[winner]


def selection_accuracy(samples: Samples, selector: str, n: int | None = None) -> float:
    """Fraction of problems whose chosen completion (among the first ``n``) is correct."""
    chosen = select(samples, selector, n)
    return float(samples.success[np.arange(len(chosen)), chosen].mean())


def default_ns(n_max: int) -> list[int]:
    """``1, 2, 4, ...`` up to ``n_max``, plus ``n_max`` itself.

    Example:
        >>> default_ns(12)
        [1, 2, 4, 8, 12]
    """
    if n_max < 1:
        raise ValueError(f"best-of-N needs N >= 1 samples per problem, got {n_max}.")
    return sorted({2**j for j in range(int(math.log2(n_max)) + 1)} | {n_max})


def best_of_n_curve(
    samples: Samples,
    selectors: Sequence[str] = ("oracle", "env_reward", "majority"),
    ns: Sequence[int] | None = None,
    trials: int = 1,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Accuracy of each selector's pick for each ``n``, from one set of samples.

    Trial 0 uses the first ``n`` samples of every problem; trials ``1 ..`` use the first ``n`` of a
    random order of the ``N`` samples (PRM800K averages 400 such draws), and the curve is their mean.
    Subsets within a trial are nested, so the oracle curve never decreases.

    Returns:
        Columns of equal length: ``{"n": [...], "pass@n": [...], "<selector>": [...], ...}``;
        ``pass@n`` is the unbiased estimate from all ``N`` samples (Chen et al. 2021), to compare
        with the oracle's single draw.
    """
    ns = default_ns(samples.n) if ns is None else [int(n) for n in ns]
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}.")
    for s in selectors:
        if s not in SELECTORS:
            raise ValueError(f"unknown selector {s!r}; choose from {SELECTORS}.")
    scored = [s for s in selectors if s in ("reward_model", "weighted_majority")]
    if scored and samples.scores is None:
        raise ValueError(f"selector {scored[0]!r} needs learned scores: pass a scorer (see score_samples).")
    if "likelihood" in selectors and samples.logprobs is None:
        raise ValueError("selector 'likelihood' needs samples.logprobs: build Samples with Samples.from_rollout.")
    if "majority" in selectors or "weighted_majority" in selectors:
        samples.answer_classes()  # extract and grade once; permuted copies reuse the classes
    rng = np.random.default_rng(seed)
    views = [samples]
    for _ in range(trials - 1):
        order = np.argsort(rng.random(samples.returns.shape), axis=1)
        views.append(samples.permuted(order))
    correct = samples.success.sum(1)
    curve: dict[str, list[float]] = {"n": list(ns)}
    curve["pass@n"] = [float(np.mean([pass_at_k(samples.n, int(c), n) for c in correct])) for n in ns]
    for s in selectors:
        curve[s] = [float(np.mean([selection_accuracy(v, s, n) for v in views])) for n in ns]
    return curve


@torch.no_grad()
def sample_groups(
    model: torch.nn.Module,
    env_id: str,
    n: int,
    num_problems: int | None = None,
    split: str = "test",
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 128,
    env_kwargs: dict[str, Any] | None = None,
) -> Samples:
    """``n`` completions for each of the first ``num_problems`` problems of ``split``, in index order."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"best-of-N needs N >= 1 samples per problem, got {n!r}.")
    kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "curriculum"}  # whole problems
    size = gym.make(env_id, **kwargs).unwrapped.task.size(split)
    num_problems = size if num_problems is None else min(num_problems, size)
    per_batch = max(1, batch_size // n)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    parts, venv = [], None
    for start in range(0, num_problems, per_batch):
        idx = list(range(start, min(start + per_batch, num_problems)))
        if venv is None or venv.num_envs != len(idx) * n:
            venv = gym.make_vec(env_id, num_envs=len(idx) * n, autoreset_mode="Disabled", split=split, **kwargs)
        options = {"index": [i for i in idx for _ in range(n)], "split": split, "prefix": "", "group_size": n}
        parts.append(
            Samples.from_rollout(collect(model, venv, options=options, temperature=temperature, generator=generator))
        )
    return Samples.concat(parts)


def score_samples(samples: Samples, scorer: Scorer) -> Samples:
    """Fill ``samples.scores`` with ``scorer(prompts, completions)`` over all ``P * N`` samples in one call."""
    prompts = [p for p in samples.prompts for _ in range(samples.n)]
    completions = [c for row in samples.completions for c in row]
    scores = list(scorer(prompts, completions))
    if len(scores) != len(completions):
        raise ValueError(f"the scorer returned {len(scores)} scores for {len(completions)} completions.")
    samples.scores = np.asarray(scores, dtype=np.float64).reshape(samples.returns.shape)
    return samples


def best_of_n(
    model: torch.nn.Module,
    env_id: str,
    cfg: BestOfNConfig,
    seed: int = 0,
    scorer: Scorer | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Sample ``cfg.n`` completions per test problem and return :func:`best_of_n_curve` of them."""
    if "reward_model" in cfg.selectors and scorer is None:
        raise ValueError("selector 'reward_model' needs a scorer, e.g. ClassifierScorer(path) or PRMScorer(path).")
    for s in cfg.selectors:
        if s not in SELECTORS:
            raise ValueError(f"unknown selector {s!r}; choose from {SELECTORS}.")
    if cfg.n > 1 and cfg.temperature == 0:
        raise ValueError("best-of-N with temperature 0 draws N identical greedy samples; use temperature > 0.")
    samples = sample_groups(
        model, env_id, cfg.n, cfg.num_problems, cfg.split, cfg.temperature, seed, cfg.batch_size, env_kwargs
    )
    if scorer is not None:
        score_samples(samples, scorer)
    return best_of_n_curve(samples, cfg.selectors, trials=cfg.trials, seed=seed)


class ClassifierScorer:
    """An outcome reward model: a ``transformers`` sequence classifier with one output, as a :data:`Scorer`.

    The score of a completion is the classifier's logit on ``prompt + completion`` (read by
    ``transformers`` at the last non-pad token), the Bradley-Terry reward of TRL's ``RewardTrainer``.

    Args:
        path: Local directory (or hub name) of the classifier and its tokenizer.
        device: Torch device.
        batch_size: Texts per forward.
        max_length: Longer texts are cut from the left (the final answer is at the end).
    """

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 32, max_length: int = 1024) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        except OSError as e:
            raise ValueError(f"cannot load a reward model from {path!r}: {e}") from e
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"the reward model at {path!r} has {self.model.config.num_labels} outputs; a scorer needs 1 (a logit)."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # transformers finds the last token through the pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side, self.tokenizer.truncation_side = "right", "left"
        self.path, self.device, self.batch_size, self.max_length = path, device, batch_size, max_length

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(self.device)
            out.extend(self.model(**enc).logits[:, 0].float().cpu().tolist())
        return out

    def __repr__(self) -> str:
        return f"ClassifierScorer({self.path!r})"


class PRMScorer:
    """A process reward model as a :data:`Scorer`: step probabilities aggregated per solution.

    Every step prefix of a completion (steps split at the separator) is scored by a
    :class:`~lm_envs.tasks.math.prm.LearnedPRM`, then aggregated: ``product`` = P(all steps correct)
    (Lightman et al. 2023), ``min`` (Math-Shepherd), ``last`` (Snell et al. 2024).

    Args:
        prm: A ``LearnedPRM`` or the directory to load one from.
        how: ``product``, ``min`` or ``last``.
    """

    def __init__(self, prm: LearnedPRM | str, how: str = "product") -> None:
        if how not in PRM_AGGREGATES:
            raise ValueError(f"unknown PRM aggregate {how!r}; choose one of {PRM_AGGREGATES}.")
        self.prm = LearnedPRM(prm) if isinstance(prm, str) else prm
        self.how = how

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        problems = [Problem(id=f"bon/{i}", prompt=p) for i, p in enumerate(prompts)]
        return self.prm.solution_scores(problems, list(completions), self.how)

    def __repr__(self) -> str:
        return f"PRMScorer({self.prm!r}, how={self.how!r})"


# ============================================================================================
# Rejection-sampling fine-tuning: RFT / RAFT / ReST-EM
# ============================================================================================


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning hyper-parameters (one round = Grow, Filter, Improve)."""

    name: str = "rft"
    group_size: int = 8  # K completions per prompt
    prompts_per_round: int = 64  # train problems sampled per round (with replacement if the split is smaller)
    temperature: float = 1.0  # sampling temperature (K > 1 needs diversity)
    keep: str = "correct"  # "correct" (RFT, ReST-EM: env is_success) | "best" (RAFT: top-1 return per prompt)
    min_reward: float | None = None  # drop samples with a lower return (set it for "best": a top-1 may be a failure)
    dedupe: bool = True  # keep one copy of identical (prompt, completion) token sequences
    from_base: bool = False  # ReST-EM: every Improve step starts again from the initial weights
    max_group_success: float = 1.0  # keep samples only of prompts solved by at most this share of their K samples
    accumulate: bool = False  # expert iteration / STaR: fine-tune on every sample kept so far, not just this round's
    demo_fraction: float = 0.0  # share of each Improve batch from the SFT warm start's demos (1: demos only, a control)
    sft_steps: int = 50  # optimizer steps per round on the kept samples
    batch_size: int = 32  # kept samples per step (fewer if fewer were kept)
    lr: float = 1e-4  # AdamW learning rate (constant within a round)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    split: str = "train"
    num_envs: int = 256  # envs per rollout


def check_rft_config(cfg: RFTConfig) -> None:
    """Raise ``ValueError`` with a fix for settings that cannot work."""
    for name in ("group_size", "prompts_per_round", "batch_size", "num_envs"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"rft.{name} must be a positive int, got {value!r}.")
    if cfg.keep not in KEEP_MODES:
        raise ValueError(f"unknown rft.keep {cfg.keep!r}; choose 'correct' (RFT/ReST-EM) or 'best' (RAFT).")
    if cfg.temperature < 0:
        raise ValueError(f"rft.temperature must be >= 0, got {cfg.temperature}.")
    if cfg.temperature == 0 and cfg.group_size > 1:
        raise ValueError("rft.temperature=0 draws K identical greedy samples per prompt; use temperature > 0 or K=1.")
    if cfg.sft_steps < 0 or cfg.lr <= 0:
        raise ValueError(f"rft.sft_steps must be >= 0 and rft.lr > 0, got {cfg.sft_steps} and {cfg.lr}.")
    if not 0 < cfg.max_group_success <= 1:
        raise ValueError(
            f"rft.max_group_success must be in (0, 1] (1 keeps every prompt's samples), got {cfg.max_group_success}."
        )
    if not 0 <= cfg.demo_fraction <= 1:
        raise ValueError(
            f"rft.demo_fraction must be in [0, 1] (a share of each batch; the rest are kept samples; 1 trains on "
            f"the demonstrations only), got {cfg.demo_fraction}."
        )


def build_examples(
    rollouts: Rollout | Sequence[Rollout],
    keep: str = "correct",
    min_reward: float | None = None,
    dedupe: bool = True,
    max_group_success: float = 1.0,
) -> tuple[list[Example], dict[str, float]]:
    """Filter sampled episodes into SFT examples made of exactly the tokens the env received.

    Args:
        rollouts: Rollouts whose ``group_size`` consecutive episodes share a prompt.
        keep: ``correct``: every episode with ``is_success``; ``best``: the highest-return episode of
            each group (the first on ties).
        min_reward: Drop kept episodes whose return is below this.
        dedupe: Keep one copy of identical (prompt ids, generated ids) pairs across all rollouts.
        max_group_success: Keep nothing from a group whose share of ``is_success`` samples is above
            this: the problems the policy already solves almost always teach it little (difficulty
            filtering; DAPO drops the all-correct groups, which is ``1 - 1/K``).

    Returns:
        ``(examples, stats)``: each example is ``(prompt_ids, generated_ids)``, the prompt as the env
        encoded it (left padding removed) and the generated ids up to the episode's end; stats count
        ``samples``, ``kept`` (after dedupe), ``duplicates``, ``groups``, ``groups_kept`` and the sum of
        kept returns ``kept_return_sum``.
    """
    if keep not in KEEP_MODES:
        raise ValueError(f"unknown keep mode {keep!r}; choose 'correct' (RFT/ReST-EM) or 'best' (RAFT).")
    rollouts = [rollouts] if isinstance(rollouts, Rollout) else list(rollouts)
    examples: list[Example] = []
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    stats = dict.fromkeys(("samples", "kept", "duplicates", "groups", "groups_kept", "kept_return_sum"), 0.0)
    for r in rollouts:
        if keep == "correct" and not any("is_success" in info for info in r.infos):
            raise ValueError("keep='correct' needs env info 'is_success' (this env reports none); use keep='best'.")
        returns, success, k = r.returns, r.success().bool(), r.group_size
        if keep == "correct":
            chosen = success.clone()
        else:  # RAFT: top-1 of each prompt's K samples
            chosen = torch.zeros_like(success)
            chosen[torch.arange(0, len(returns), k) + returns.view(-1, k).argmax(1)] = True
        if min_reward is not None:
            chosen &= returns >= min_reward
        if max_group_success < 1:
            if not any("is_success" in info for info in r.infos):
                raise ValueError("max_group_success needs env info 'is_success' (this env reports none); leave it 1.")
            rate = success.float().view(-1, k).mean(1, keepdim=True).expand(-1, k).reshape(-1)
            chosen &= rate <= max_group_success + 1e-9
        stats["samples"] += len(returns)
        stats["groups"] += len(returns) // k
        stats["groups_kept"] += int(chosen.view(-1, k).any(1).sum())
        for i in chosen.nonzero()[:, 0].tolist():
            prompt = r.prompt_ids[i][r.prompt_mask[i].bool()].tolist()
            generated = r.tokens[i][r.mask[i]].tolist()
            key = (tuple(prompt), tuple(generated))
            if dedupe and key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            examples.append((prompt, generated))
            stats["kept"] += 1
            stats["kept_return_sum"] += float(returns[i])
    return examples, stats


def finetune(
    model: torch.nn.Module,
    examples: list[Example],
    cfg: RFTConfig,
    pad_id: int,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    demos: Callable[[int], list[Example]] | None = None,
) -> list[float]:
    """``cfg.sft_steps`` AdamW steps of the SFT loss on ``examples`` (shuffled epochs); returns the losses.

    Args:
        model: Trained in place.
        examples: The kept samples.
        cfg: ``sft_steps``, ``batch_size``, ``lr``, ``weight_decay``, ``max_grad_norm``, ``demo_fraction``.
        pad_id: Padding token id.
        rng: Shuffles the epochs.
        optimizer: An optimizer to continue (its state carries across rounds); ``None``: a fresh AdamW.
        demos: ``demos(n)`` draws ``n`` gold demonstrations; with ``cfg.demo_fraction`` > 0 that share of
            every batch (rounded) comes from it; below 1 at least one row of each batch is a kept sample.
    """
    device = next(model.parameters()).device
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_demo = round(cfg.batch_size * cfg.demo_fraction) if demos is not None else 0
    if demos is not None and cfg.demo_fraction < 1:
        n_demo = min(n_demo, cfg.batch_size - 1)
    bs = min(cfg.batch_size - n_demo, len(examples))
    order: list[int] = []
    losses: list[float] = []
    model.train()
    for _ in range(cfg.sft_steps):
        if len(order) < bs:  # next epoch
            order += rng.permutation(len(examples)).tolist()
        rows, order = order[:bs], order[bs:]
        batch_examples = [examples[i] for i in rows] + (demos(n_demo) if n_demo else [])
        batch = {k: v.to(device) for k, v in collate(batch_examples, pad_id).items()}
        loss = nll(model, batch)  # mean NLL of the generated tokens (labels -100 on prompt and padding)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"RFT loss became {loss.item()}; lower rft.lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train_rft(
    model: torch.nn.Module,
    env_id: str,
    cfg: RFTConfig,
    rounds: int,
    seed: int = 0,
    log: Callable[[int, dict[str, Any]], None] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    demo_problems: int | None = None,
) -> torch.nn.Module:
    """Run ``rounds`` rounds of rejection-sampling fine-tuning on ``model`` (in place); ``log(round, metrics)``.

    ``lm-envs train agent=rft`` runs the same rounds (one per ``train.iterations``) with checkpoints,
    evaluation and resume. ``demo_problems``: see :func:`rft_round`.

    Returns:
        The model (the same object, trained).
    """
    check_rft_config(cfg)
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a non-negative int, got {rounds!r}.")
    base = copy.deepcopy(model.state_dict()) if cfg.from_base else None
    optimizer = rft_optimizer(model, cfg) if continues_optimizer(cfg) else None  # None: a fresh AdamW per round
    venvs: dict[int, Any] = {}
    pool: list[Example] = []
    for rnd in range(rounds):
        metrics = rft_round(
            model,
            env_id,
            cfg,
            rnd,
            seed=seed,
            env_kwargs=env_kwargs,
            venvs=venvs,
            base=base,
            pool=pool,
            optimizer=optimizer,
            demo_problems=demo_problems,
        )
        if log is not None:
            log(rnd, metrics)
    return model


def rft_optimizer(model: torch.nn.Module, cfg: RFTConfig) -> torch.optim.AdamW:
    """The AdamW of the Improve steps: one per round, or one for all rounds (:func:`continues_optimizer`)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def continues_optimizer(cfg: RFTConfig) -> bool:
    """Whether the rounds continue one AdamW: expert iteration (``accumulate``), unless ReST-EM's ``from_base``."""
    return cfg.accumulate and not cfg.from_base


def rft_round(
    model: torch.nn.Module,
    env_id: str,
    cfg: RFTConfig,
    round_index: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    venvs: dict[int, Any] | None = None,
    base: dict[str, torch.Tensor] | None = None,
    pool: list[Example] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    demo_problems: int | None = None,
) -> dict[str, Any]:
    """One Grow / Filter / Improve round on ``model`` (in place); returns its metrics.

    Every random choice is seeded from ``(seed, round_index)``, so a resumed run draws the rounds an
    uninterrupted one would have.

    Args:
        model: The policy, trained in place.
        env_id: A registered token env (its ``is_success`` or return decides what is kept).
        cfg: The round's settings.
        round_index: Which round this is (seeds the prompts, samples and minibatch order).
        seed: The run's seed.
        env_kwargs: ``gym.make`` overrides of the env.
        venvs: A cache of vector envs by size, reused across rounds (pass the same dict each round).
        base: Initial weights to fine-tune from in every round (ReST-EM, ``cfg.from_base``).
        pool: With ``cfg.accumulate``, the samples kept in earlier rounds (pass the same list each
            round): this round's new ones are appended, and Improve trains on all of it.
        optimizer: The optimizer to continue (``None``: a fresh AdamW for this round).
        demo_problems: The gold demonstrations of ``cfg.demo_fraction`` are the split's first this many
            problems (the SFT warm start's ``sft.num_examples``); ``None``: the whole split.
    """
    check_rft_config(cfg)
    if cfg.accumulate and pool is None:
        raise ValueError("rft.accumulate needs the pool of earlier rounds: pass the same list as pool= every round.")
    kwargs = dict(env_kwargs or {})
    venvs = {} if venvs is None else venvs
    K = cfg.group_size
    probe = gym.make(env_id, **kwargs).unwrapped
    size, pad_id = probe.task.size(cfg.split), int(probe.codec.pad_token_id)
    per_batch = max(1, cfg.num_envs // K)  # prompts per rollout
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + round_index)
    rng = np.random.default_rng([seed, 23, round_index])
    model.eval()

    # --- 1. Grow: K samples per prompt from the current policy, through the env ---
    t0 = time.perf_counter()
    idx = rng.choice(size, size=cfg.prompts_per_round, replace=cfg.prompts_per_round > size).tolist()
    rollouts = []
    for start in range(0, len(idx), per_batch):
        chunk = idx[start : start + per_batch]
        n_envs = len(chunk) * K
        if n_envs not in venvs:
            venvs[n_envs] = gym.make_vec(env_id, num_envs=n_envs, autoreset_mode="Disabled", split=cfg.split, **kwargs)
        options = {"index": [i for i in chunk for _ in range(K)], "split": cfg.split, "group_size": K}
        rollouts.append(
            collect(model, venvs[n_envs], options=options, temperature=cfg.temperature, generator=generator)
        )
    t1 = time.perf_counter()

    # --- 2. Filter: correct (RFT / ReST-EM) or top-1 per prompt (RAFT), then dedupe ---
    examples, stats = build_examples(rollouts, cfg.keep, cfg.min_reward, cfg.dedupe, cfg.max_group_success)
    returns = torch.cat([r.returns for r in rollouts])
    metrics: dict[str, Any] = {
        "rft/sample_return": float(returns.mean()),
        "rft/sample_success": float(torch.cat([r.success() for r in rollouts]).mean()),
        "rft/kept": int(stats["kept"]),
        "rft/kept_fraction": stats["kept"] / stats["samples"],
        "rft/prompts_kept_fraction": stats["groups_kept"] / stats["groups"],
        "rft/duplicates": int(stats["duplicates"]),
        "rft/sample_seconds": t1 - t0,
        "rft/generated_tokens": sum(r.num_tokens for r in rollouts),
    }
    if examples:
        metrics["rft/kept_return"] = stats["kept_return_sum"] / stats["kept"]
        metrics["rft/kept_tokens"] = sum(len(t) for _, t in examples)
    if cfg.accumulate:  # expert iteration: the pool grows by this round's samples not already in it
        assert pool is not None
        if cfg.dedupe:
            known = {(tuple(p), tuple(t)) for p, t in pool}
            examples = [e for e in examples if (tuple(e[0]), tuple(e[1])) not in known]
        pool.extend(examples)
        metrics["rft/pool_new"] = len(examples)
        metrics["rft/pool"] = len(pool)
        examples = pool
    if not examples and cfg.demo_fraction < 1:  # nothing passed the filter (e.g. no correct sample yet)
        metrics["rft/sft_steps"] = 0
        return metrics

    # --- 3. Improve: SFT on the kept samples' exact tokens (from the base weights for ReST-EM) ---
    demos = None
    if cfg.demo_fraction > 0:  # gold demonstrations mixed into every batch, drawn from this round's rng
        n_demos = size if demo_problems is None else min(size, demo_problems)
        task, codec = probe.task, probe.codec

        def demos(n: int) -> list[Example]:
            return [encode_demo(codec, task.problem(cfg.split, int(i))) for i in rng.integers(n_demos, size=n)]

    if base is not None:
        model.load_state_dict(base)
    losses = finetune(model, examples, cfg, pad_id, rng, optimizer=optimizer, demos=demos)
    metrics.update(
        {
            "rft/sft_steps": len(losses),
            "rft/loss": float(np.mean(losses)) if losses else 0.0,
            "rft/loss_first": losses[0] if losses else 0.0,
            "rft/loss_last": losses[-1] if losses else 0.0,
            "rft/train_seconds": time.perf_counter() - t1,
        }
    )
    return metrics
