"""Best-of-N at test time: sample N completions per problem through the env, pick one with a selector.

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

The same samples give the training data of rejection-sampling fine-tuning (:mod:`agents.learners.rft`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.evaluate import pass_at_k
from agents.policy.sampling import Rollout, sample_per_problem
from lm_envs import Problem
from lm_envs.tasks.math.grading import extract_answer, grade
from lm_envs.tasks.math.prm import LearnedPRM  # imports neither torch nor transformers until built

#: A learned scorer: one float per (prompt, completion) pair, higher is better.
Scorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]

SELECTORS = ("env_reward", "majority", "reward_model", "weighted_majority", "likelihood", "oracle")
PRM_AGGREGATES = ("product", "min", "last")


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
        mask = rollout.action_mask.float()  # the policy's tokens (not a multi-turn env's)
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


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) in nats: ``log n - (n - 1) / n`` (Stiennon et al. 2020; Gao et al. 2022).

    Exact for a continuous proxy score without ties; an upper bound otherwise. Gao et al. plot gold and
    proxy against ``sqrt`` of this distance.

    Example:
        >>> best_of_n_kl(1), round(best_of_n_kl(2), 4), round(best_of_n_kl(64), 3)
        (0.0, 0.1931, 3.175)
    """
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}.")
    return math.log(n) - (n - 1) / n


def best_of_n_weights(m: int, n: int) -> np.ndarray:
    """Probability that the sample of rank ``i`` (ascending, ``0 .. m-1``) is the best of a random ``n``-subset.

    ``C(i, n-1) / C(m, n)``: the unbiased best-of-``n`` estimator from ``m >= n`` samples (Nakano et al.
    2021, used by Gao et al. 2022), which averages over all ``C(m, n)`` subsets instead of one draw.

    Example:
        >>> (best_of_n_weights(4, 2) * 6).round(6).tolist()  # ranks 0..3: the best of a random pair is i/6
        [0.0, 1.0, 2.0, 3.0]
    """
    if not 1 <= n <= m:
        raise ValueError(f"best-of-n from m samples needs 1 <= n <= m, got n={n}, m={m}; draw more samples.")
    i = np.arange(m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        log_w = (
            _lgamma(i + 1)
            - _lgamma(n)
            - _lgamma(i - n + 2)
            - (math.lgamma(m + 1) - math.lgamma(n + 1) - math.lgamma(m - n + 1))
        )
    w = np.where(i >= n - 1, np.exp(log_w), 0.0)
    return w / w.sum()  # exact up to rounding; renormalised so the weights sum to one


def _lgamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.lgamma, otypes=[np.float64])(np.maximum(x, 1e-300))


def best_of_n_expectation(proxy: np.ndarray, values: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """Expected ``values`` of the proxy-best of ``n`` samples, per ``n``, averaged over problems.

    Args:
        proxy: ``(P, m)`` proxy scores (what best-of-n maximises) of ``m`` samples for each of ``P`` problems.
        values: ``(P, m)`` what to measure of the same samples (the gold score, or the proxy itself).
        ns: The ``n`` values (each ``<= m``).

    Returns:
        ``(len(ns),)`` means over problems of the unbiased estimate (:func:`best_of_n_weights`); ties in
        the proxy are broken by sample order.

    Example:
        >>> proxy = np.array([[0.1, 0.9, 0.5]]); gold = np.array([[1.0, 0.0, 2.0]])
        >>> best_of_n_expectation(proxy, gold, [1, 3]).tolist()  # mean of all, then gold of the proxy's pick
        [1.0, 0.0]
    """
    proxy, values = np.asarray(proxy, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if proxy.ndim != 2 or proxy.shape != values.shape:
        raise ValueError(
            f"proxy and values must be (problems, samples) arrays of one shape; got {proxy.shape}, {values.shape}."
        )
    order = np.argsort(proxy, axis=1, kind="stable")
    ranked = np.take_along_axis(values, order, axis=1)
    return np.array([float((ranked @ best_of_n_weights(proxy.shape[1], int(n))).mean()) for n in ns])


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
    first: int = 0,
) -> Samples:
    """``n`` completions for each of ``num_problems`` problems of ``split`` from index ``first``, in index order."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"best-of-N needs N >= 1 samples per problem, got {n!r}.")
    kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "curriculum"}  # whole problems
    size = gym.make(env_id, **kwargs).unwrapped.task.size(split)
    if not 0 <= first < size:
        raise ValueError(f"the first problem index must be in [0, {size}) for the {split!r} split, got {first}.")
    num_problems = size - first if num_problems is None else min(num_problems, size - first)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    parts = [
        Samples.from_rollout(rollout)
        for _, rollout in sample_per_problem(
            model,
            env_id,
            n,
            indices=range(first, first + num_problems),
            prefixes="",
            split=split,
            temperature=temperature,
            generator=generator,
            batch_size=batch_size,
            env_kwargs=kwargs,
        )
    ]
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
