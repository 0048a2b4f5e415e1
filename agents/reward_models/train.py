"""Reward-model training in one file: preference RM (Bradley-Terry), outcome RM and process RM for math.

All three are a ``transformers`` sequence classifier with **one** output over a causal LM backbone
(``*ForSequenceClassification``: the score is read at the last real token), saved with
``save_pretrained`` plus its tokenizer, so the chat env (``ChatReward(reward_model=path)``), the math
env's learned PRM (``MathReward(process="learned", prm_path=path)``) and the best-of-N scorers
(:class:`agents.learners.rft.ClassifierScorer`, :class:`agents.learners.rft.PRMScorer`) load it by path.

**Preference RM** (``kind="preference"``; TRL ``RewardTrainer``, OpenRLHF ``PairWiseLoss``):

    L = -mean log sigmoid(r(x, y+) - r(x, y-) - m)  +  c * mean((r(x, y+) + r(x, y-))^2)

with an optional per-pair margin ``m`` and optional reward centering ``c`` (Eisenstein et al. 2023:
keeps scores near zero, since BT only fixes differences). Chosen and rejected go through one forward.
Data: chosen/rejected JSONL (HH-RLHF or prompt/chosen/rejected, see
:mod:`lm_envs.tasks.chat.preferences`) or the seeded synthetic set ordered by a hidden gold rubric.
Reported: held-out pair accuracy (``r+ > r-``), and the held-out score mean/std (saved in the
model config as ``reward_mean``/``reward_std`` for reward normalisation, as OpenRLHF does).

**Outcome RM** (``kind="orm"``; Cobbe et al. 2021, Lightman et al. 2023): sampled math solutions
labelled 1/0 by the grader, binary cross-entropy on ``prompt + solution``.

**Process RM** (``kind="prm"``): one training text per step prefix, ``prompt + step_1\\n ... step_t\\n``
(as the PRM800K authors built theirs, so the model never sees later labels), labelled

* ``labels="rule"``: by the rule-based step verifier (:func:`rule_step_labels`): a step is good while
  no step so far makes a false arithmetic claim; the final ``####`` line is good if, in addition,
  the graded answer is right (supervision "up to the first error", as in PRM800K);
* ``labels="shepherd"``: by completion (Math-Shepherd, :func:`shepherd_step_labels`): ``K`` rollouts
  of the policy continue from each step; *hard* label 1 if any reaches the right answer, *soft*
  label the fraction that does (``soft_labels=true``).

Binary cross-entropy (soft labels welcome) on the logit; ``P(step good) = sigmoid(logit)`` is what
:class:`~lm_envs.tasks.math.prm.LearnedPRM` reads; solution scores aggregate by product, min or last.

**Contrastive generative verifier** (``kind="contrastive"``, :func:`train_contrastive`): not a classifier but
a copy of the policy (``policy=<dir>``, required) fine-tuned on minimal contrastive claim steps of its own
train samples (:func:`contrastive_step_pairs`: the same prefix and claim ``a op b = `` with the true and a
near-miss result; :mod:`agents.reward_models.contrastive`). It scores a solution by its mean token
log-probability (:func:`~agents.reward_models.contrastive.completion_logprobs`; in search,
:class:`~agents.reward_models.contrastive.LikelihoodStepScorer`). Saved as a causal LM with the policy's
tokenizer; reported against the policy's own likelihood, the baseline it must beat within problems.

Math solutions come from a policy (``policy=<dir of a causal LM + tokenizer>``, sampled through the
env: the texts a PRM will later score) or, with ``policy=null``, from seeded perturbations of the gold
solutions (:func:`perturbed_solutions`: one step's result changed, the final answer made wrong or
not), an offline source with both labels present.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
from agents.learners.sft import gradient_step, lr_lambda
from lm_envs import Problem, Task, TextCodec
from lm_envs.core.tokenizer import load_codec, save_codec
from lm_envs.tasks.chat.preferences import PreferencePair, check_pair, load_preference_jsonl, synthetic_preferences
from lm_envs.tasks.chat.reward import check_reward_model, prepare_tokenizer
from lm_envs.tasks.math.grading import extract_answer, grade
from lm_envs.tasks.math.prm import step_text
from lm_envs.tasks.math.steps import check_step, evaluate

KINDS = ("preference", "orm", "prm", "contrastive")
LABELS = ("rule", "shepherd")
FINAL = "####"  # the math tasks' final-answer line


@dataclass
class RewardModelConfig:
    """Everything a reward-model run needs (Hydra: ``conf/reward_model.yaml`` + ``conf/rm/*.yaml``)."""

    kind: str = "preference"  # preference | orm | prm | contrastive
    output_dir: str = "runs/rm"  # where the model, tokenizer and metrics.json go
    seed: int = 0
    threads: int | None = 1  # torch CPU threads (None: torch's default)
    device: str = "cpu"
    # --- the model: a one-output sequence classifier over a causal LM backbone
    # name or path (e.g. an SFT'd policy), a shipped alias (smollm2) or a .gguf file; None: a fresh tiny GPT-2
    model: str | None = None
    tokenizer: str | None = None  # None: the model's own (or the embedded default for model=None)
    n_layer: int = 4  # tiny default config (agents.policy.models.DEFAULT_MODEL)
    n_embd: int = 256
    n_head: int = 4
    max_length: int = 512  # longer texts are cut from the left (the response end matters most)
    # synthetic pairs: render each prompt through the tokenizer's chat template when it has one (as the chat env
    # renders prompts for a policy with that tokenizer); the embedded default has none (plain "User: ... Assistant:")
    chat_template: bool = True
    # train only the one-output head on the frozen backbone's last-token features (a linear probe; each text goes
    # through the backbone once, so a pretrained 135M backbone costs forwards, not backward passes)
    freeze_backbone: bool = False
    # LoRA adapters (rank lora_r, scale lora_alpha / lora_r) on every linear layer of the backbone, the head trained
    # whole; merged into the weights when saved (a plain transformers model). 0: every weight trains
    lora_r: int = 0
    lora_alpha: float = 32.0
    # --- preference data
    data: str | None = None  # chosen/rejected JSONL; None: the synthetic set (hidden gold rubric)
    num_pairs: int = 2000  # synthetic pairs for training
    heldout: float = 0.1  # JSONL: fraction held out; synthetic: pairs from the test split (count = heldout * num_pairs)
    # --- math data (orm / prm)
    env_id: str = "LMEnv/Math-v0"
    policy: str | None = None  # causal LM dir sampling the solutions; None: perturbed gold solutions
    num_problems: int = 200  # train problems whose solutions are labelled
    # the first of them: e.g. 2048 to label problems a policy SFT'd on the first 2,048 gold solutions never saw
    first_problem: int = 0
    samples_per_problem: int = 4
    heldout_problems: int = 50  # test problems for held-out metrics
    temperature: float = 1.0  # sampling temperature of the policy
    labels: str = "rule"  # prm: rule | shepherd
    shepherd_rollouts: int = 8  # K completions per step (Math-Shepherd uses 8)
    soft_labels: bool = False  # shepherd: the fraction of successful completions instead of any-success
    balance: bool = True  # orm / prm: draw positive and negative texts equally often (rare wrong answers matter)
    # orm: "bce" (right/wrong per solution) or "pairwise" (Bradley-Terry between a right and a wrong solution of
    # the SAME problem: only what tells one problem's solutions apart is learnt, not which problems are easy)
    objective: str = "bce"
    heldout_samples: int | None = None  # solutions per held-out problem (None: samples_per_problem)
    # --- contrastive (a generative verifier: the policy fine-tuned on its own claim steps, right vs near-miss)
    negatives: int = 2  # wrong results per claim step
    bt: float = 1.0  # weight of the Bradley-Terry term between the right and the wrong result (0: SFT only)
    # --- optimisation
    steps: int = 300
    batch_size: int = 16  # pairs (preference) or texts (orm / prm) per step
    lr: float = 1e-4  # TRL's default; a tiny model from scratch likes 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    margin: float = 0.0  # m in -log sigmoid(r+ - r- - m), added to each pair's own margin
    center_coef: float = 0.0  # reward centering c (TRL recommends 0.01)
    eval_every: int = 100  # held-out evaluation every N steps (and at the end)
    # --- weak-to-strong supervision (Burns et al. 2023); held-out metrics stay on the gold labels
    pair_offset: int = 0  # synthetic preferences: the training pairs start at this instruction (disjoint sets)
    label_model: str | None = None  # a reward model dir whose soft judgments replace the training labels
    conf_coef: float = 0.0  # auxiliary confidence loss weight (alpha_max; warmed up over the first 20% of steps)


def check_config(cfg: RewardModelConfig) -> None:
    """Raise a clear ``ValueError`` for settings that cannot work."""
    if cfg.kind not in KINDS:
        raise ValueError(
            f"unknown reward-model kind {cfg.kind!r}; choose one of {KINDS} (rm=preference|orm|prm|contrastive)."
        )
    if cfg.kind == "contrastive":
        if cfg.policy is None:
            raise ValueError(
                "rm=contrastive fine-tunes the policy on its own claim steps: set policy=<dir of a causal LM> "
                "(from a run: lm-envs export RUN -o DIR)."
            )
        if cfg.model is not None and cfg.model != cfg.policy:
            raise ValueError("rm=contrastive starts from the policy itself: leave model unset (or equal to policy).")
        if cfg.negatives < 1 or cfg.bt < 0:
            raise ValueError(f"negatives must be >= 1 and bt >= 0, got {cfg.negatives} and {cfg.bt}.")
        if cfg.label_model is not None or cfg.objective != "bce":
            raise ValueError("rm=contrastive has its own objective: leave label_model and objective unset.")
    if cfg.labels not in LABELS:
        raise ValueError(f"unknown PRM labels {cfg.labels!r}; choose one of {LABELS}.")
    if cfg.kind == "prm" and cfg.labels == "shepherd" and cfg.policy is None:
        raise ValueError("Math-Shepherd labels need a completer: set policy=<dir of a causal LM>, or labels=rule.")
    for name in ("steps", "batch_size", "num_pairs", "samples_per_problem", "shepherd_rollouts", "max_length"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}.")
    if not 0 < cfg.heldout < 1:
        raise ValueError(f"heldout must be a fraction in (0, 1), got {cfg.heldout}.")
    if cfg.objective not in ("bce", "pairwise"):
        raise ValueError(f"unknown objective {cfg.objective!r}; choose 'bce' or 'pairwise'.")
    if cfg.objective == "pairwise" and cfg.kind != "orm":
        raise ValueError("objective=pairwise compares whole solutions of one problem: use it with rm=orm.")
    if cfg.pair_offset < 0:
        raise ValueError(f"pair_offset must be >= 0, got {cfg.pair_offset}.")
    if cfg.lora_r < 0 or cfg.lora_alpha <= 0:
        raise ValueError(f"lora_r must be >= 0 (0: no adapter) and lora_alpha > 0, got {cfg.lora_r}, {cfg.lora_alpha}.")
    if cfg.lora_r and cfg.freeze_backbone:
        raise ValueError("freeze_backbone=true trains the head alone; drop lora_r (adapters) or freeze_backbone.")
    if not 0.0 <= cfg.conf_coef <= 1.0:
        raise ValueError(f"conf_coef is a mixing weight in [0, 1], got {cfg.conf_coef}.")
    if cfg.label_model is not None and (cfg.kind == "prm" or cfg.objective == "pairwise"):
        raise ValueError("label_model (weak labels) works with rm=preference or rm=orm objective=bce only.")
    if cfg.first_problem < 0:
        raise ValueError(f"first_problem must be >= 0 (a train problem index), got {cfg.first_problem}.")
    if cfg.heldout_samples is not None and cfg.heldout_samples < 1:
        raise ValueError(f"heldout_samples must be >= 1 (or null), got {cfg.heldout_samples}.")
    if cfg.policy is not None and (Path(cfg.policy) / "config.yaml").is_file():
        raise ValueError(
            f"policy={cfg.policy} is a run directory; export its trained model first "
            f"(lm-envs export {cfg.policy} -o DIR) and pass policy=DIR."
        )


# ============================================================================================
# The losses
# ============================================================================================


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | float = 0.0,
    center_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Bradley-Terry pairwise loss ``-mean log sigmoid(r+ - r- - m) + c * mean((r+ + r-)^2)``.

    Args:
        r_chosen: ``(B,)`` scores of the chosen texts.
        r_rejected: ``(B,)`` scores of the rejected texts.
        margin: Per-pair (``(B,)``) or global margin ``m``.
        center_coef: Reward-centering coefficient ``c`` (0: off).

    Returns:
        ``(loss, metrics)`` with ``accuracy`` (``r+ > r-``), mean ``margin`` and mean ``reward``.

    Example:
        >>> loss, m = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([1.0]))
        >>> round(loss.item(), 4), m["accuracy"]
        (0.6931, 0.0)
    """
    diff = r_chosen - r_rejected
    # logsigmoid is the numerically stable -log(1 + exp(-x)): no overflow for large |x|.
    loss = -F.logsigmoid(diff - margin).mean()
    if center_coef:
        loss = loss + center_coef * ((r_chosen + r_rejected) ** 2).mean()
    diff = diff.detach()
    metrics = {
        "accuracy": float((diff > 0).float().mean()),
        "margin": float(diff.mean()),
        "reward": float(torch.cat([r_chosen, r_rejected]).detach().mean()),
    }
    return loss, metrics


def classifier_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on one logit per text; ``labels`` in ``[0, 1]`` (soft labels allowed)."""
    return F.binary_cross_entropy_with_logits(logits, labels)


def confidence_loss(
    logits: torch.Tensor, weak: torch.Tensor, alpha: float, threshold: float | None = None
) -> torch.Tensor:
    """Burns et al. (2023)'s auxiliary confidence loss: cross-entropy to a mix of weak labels and own hardened guesses.

    ``CE(sigmoid(logits), (1 - alpha) * weak + alpha * hard)``, where ``hard`` is ``1[logits > t]`` (detached).
    The student is pushed to trust its own confident predictions where they disagree with the weak
    supervisor, instead of imitating the supervisor's errors; ``alpha = 0`` is plain training on weak labels.

    Args:
        logits: ``(B,)`` the student's logits (for a preference pair, ``r(first) - r(second)``).
        weak: ``(B,)`` the weak supervisor's probabilities (soft labels in ``[0, 1]``).
        alpha: Weight of the hardened self-labels (Burns et al. warm it up from 0 to 0.75 or 1).
        threshold: Hardening threshold on the logits; ``None`` (Burns et al.'s adaptive one) takes the batch
            quantile that makes the hardened positive rate equal the weak labels' mean (``0`` suits pairs,
            whose order is arbitrary).

    Example:
        >>> x, w = torch.tensor([2.0, 1.0]), torch.tensor([0.8, 0.4])
        >>> float(confidence_loss(x, w, 0.0)) == float(classifier_loss(x, w))
        True
        >>> round(float(confidence_loss(torch.tensor([2.0, 1.0]), w, 1.0, threshold=0.0)), 4)  # both hardened to 1
        0.2201
    """
    logits = logits.float()
    if threshold is None:
        q = float((1.0 - weak.float().mean()).clamp(0.0, 1.0))
        threshold = float(torch.quantile(logits.detach(), q)) if logits.numel() > 1 else 0.0
    hard = (logits.detach() > threshold).float()
    return F.binary_cross_entropy_with_logits(logits, (1.0 - alpha) * weak.float() + alpha * hard)


def conf_alpha(step: int, steps: int, alpha_max: float, warmup: float = 0.2) -> float:
    """The confidence-loss weight at ``step``: linear from 0 to ``alpha_max`` over the first ``warmup`` of training.

    Example:
        >>> [conf_alpha(s, 10, 0.75) for s in (0, 1, 2, 9)]
        [0.0, 0.375, 0.75, 0.75]
    """
    ramp = max(1, round(warmup * steps))
    return alpha_max * min(1.0, step / ramp)


def performance_gap_recovered(weak: float, weak_to_strong: float, ceiling: float) -> float:
    """PGR = (weak-to-strong - weak) / (ceiling - weak) (Burns et al. 2023); NaN when the ceiling is not above weak.

    1 means the student trained on weak labels is as good as one trained on gold, 0 that it is no better
    than its supervisor.

    Example:
        >>> performance_gap_recovered(0.5, 0.75, 1.0)
        0.5
        >>> performance_gap_recovered(0.5, 0.375, 1.0)  # worse than the supervisor: negative
        -0.25
    """
    gap = ceiling - weak
    if not gap > 0:
        return float("nan")
    return (weak_to_strong - weak) / gap


# ============================================================================================
# The model
# ============================================================================================


def build_reward_model(cfg: RewardModelConfig) -> tuple[torch.nn.Module, Any]:
    """A one-output sequence classifier and its (prepared) ``transformers`` tokenizer.

    ``cfg.model=None`` builds a fresh tiny GPT-2 over the embedded default tokenizer; a name or path
    loads any backbone with a fresh one-output head (``AutoModelForSequenceClassification``).
    """
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GPT2Config,
        GPT2ForSequenceClassification,
    )

    if cfg.model is None:
        codec = load_codec(cfg.tokenizer)
        tok_dir = Path(cfg.output_dir) / "tokenizer-src"
        save_codec(codec, tok_dir)
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        torch.manual_seed(cfg.seed)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_layer=cfg.n_layer,
            n_embd=cfg.n_embd,
            n_head=cfg.n_head,
            n_positions=cfg.max_length,
            num_labels=1,
            bos_token_id=codec.eos_token_id,
            eos_token_id=codec.eos_token_id,
            pad_token_id=codec.pad_token_id,
            resid_pdrop=0.0,  # dropout off: the score must be a function of the text (TRL disable_dropout)
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            summary_first_dropout=0.0,
        )
        model = GPT2ForSequenceClassification(config)
    else:
        from transformers import AutoConfig

        from agents.policy.pretrained import resolve_model

        source = resolve_model(cfg.model)  # a shipped alias or a .gguf file: its converted directory
        try:
            config = AutoConfig.from_pretrained(source)
            if any("ForSequenceClassification" in a for a in config.architectures or []) and config.num_labels != 1:
                raise ValueError(
                    f"the model at {cfg.model!r} is a classifier with {config.num_labels} outputs; a reward model "
                    "needs exactly one (num_labels=1). Start from its causal LM backbone instead, or from a "
                    "one-output reward model."
                )
            tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.tokenizer) or source)
            torch.manual_seed(cfg.seed)  # the fresh head's initialisation
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
        except OSError as e:
            raise ValueError(
                f"cannot load the reward-model backbone {cfg.model!r}: {e}. Give a local directory with a "
                "transformers model and its tokenizer, or model=null for the tiny default."
            ) from e
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    check_reward_model(model, tokenizer, cfg.model or "the tiny default")
    return model.to(cfg.device), prepare_tokenizer(tokenizer, model)


def score_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int) -> torch.Tensor:
    """One scalar per text from one forward (right-padded; ``transformers`` reads the last real token)."""
    device = next(model.parameters()).device
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    return model(**enc.to(device)).logits[:, 0].float()


def classifier_head(model: torch.nn.Module) -> torch.nn.Module:
    """The one-output head of a ``*ForSequenceClassification`` model (``score``: GPT-2, Llama, Qwen, ...).

    Raises:
        ValueError: For a classifier whose head has another name (freeze_backbone and lora_r cannot find it).
    """
    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no `score` head; freeze_backbone=true and lora_r need a causal-LM "
            "backbone's sequence classifier (GPT-2, Llama, Qwen, SmolLM2, ...). Train every weight of this model "
            "(freeze_backbone=false lora_r=0)."
        )
    return head


#: Last-token features of one frozen backbone, by text: ``(backbone, tokenizer, max_length)`` and the rows.
_FEATURES: dict[str, Any] = {"key": None, "rows": {}}


@torch.no_grad()
def head_features(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 32
) -> torch.Tensor:
    """What the classifier head reads for each text: the hidden state at the last real token, ``(len(texts), H)``.

    ``classifier_head(model)(features)`` is the model's score: each batch is checked against the model's own
    logits, so the features are exactly what a frozen-backbone reward model's head trains on. A pretrained
    backbone (``model`` a path) keeps its features for the process (one backbone at a time), so models that
    share it (several heads on the same pairs) run each text through it once.

    Raises:
        ValueError: When the head of the features does not reproduce the model's scores (a classifier that
            pools differently from transformers' last-real-token rule).
    """
    head = classifier_head(model)
    source = getattr(model, "name_or_path", "") or ""
    key = (source, getattr(tokenizer, "name_or_path", ""), max_length) if source else None
    if key is None or _FEATURES["key"] != key:
        _FEATURES.update(key=key, rows={})
    rows: dict[str, torch.Tensor] = _FEATURES["rows"] if key is not None else {}
    todo = sorted(dict.fromkeys(t for t in texts if t not in rows), key=len)  # similar lengths: little padding
    device = next(model.parameters()).device
    seen: dict[str, torch.Tensor] = {}
    hook = head.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            ids = enc["input_ids"].to(device)
            logits = model(**enc.to(device)).logits[:, 0].float()
            x = seen["x"]
            if x.dim() == 3:  # the head ran on every position; transformers then reads the last real token
                real = (ids != model.config.pad_token_id).int() * torch.arange(ids.shape[1], device=device)
                x = x[torch.arange(len(chunk), device=device), real.argmax(-1)]
            if not torch.allclose(head(x)[:, 0].float(), logits, rtol=1e-4, atol=1e-4):
                raise ValueError(
                    f"{type(model).__name__}'s head does not read the last real token's hidden state, so "
                    "freeze_backbone=true cannot cache its features; use freeze_backbone=false for this model."
                )
            rows.update(zip(chunk, x.detach(), strict=True))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.stack([rows[t] for t in texts]) if texts else torch.zeros(0, head.in_features)


def score_function(cfg: RewardModelConfig, model: torch.nn.Module, tokenizer: Any) -> Callable[..., torch.Tensor]:
    """``texts -> scores`` for training: full forwards, or with ``freeze_backbone`` the head on cached features.

    With ``freeze_backbone`` every backbone weight stops training (``requires_grad`` off) and the head is the
    only trainable module; the head of :func:`head_features` is the model's score, so training and held-out
    scores are what the saved model computes. With ``lora_r`` the backbone's linear layers get adapters
    (:func:`agents.policy.lora.add_lora`, everything else frozen) and the head trains whole.
    """
    if cfg.lora_r:
        from agents.policy.lora import LoRASection, add_lora

        head = classifier_head(model)
        add_lora(model, LoRASection(r=cfg.lora_r, alpha=cfg.lora_alpha), seed=cfg.seed)
        for p in head.parameters():  # the fresh head trains whole (peft may have wrapped it too)
            p.requires_grad_(True)
    if not cfg.freeze_backbone:
        return lambda texts: score_texts(model, tokenizer, texts, cfg.max_length)
    head = classifier_head(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    return lambda texts: head(head_features(model, tokenizer, texts, cfg.max_length))[:, 0].float()


# ============================================================================================
# Preference data
# ============================================================================================


def synthetic_heldout_pairs(heldout: float, num_pairs: int) -> int:
    """How many test-split pairs a synthetic-pairs run holds out: ``heldout x num_pairs``, 1 to 200."""
    return min(200, max(1, round(heldout * num_pairs)))


def preference_data(
    cfg: RewardModelConfig, chat_template: str | None = None
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Train and held-out pairs: the JSONL file split by ``heldout``, or the synthetic train/test splits.

    Args:
        cfg: The run's settings.
        chat_template: Synthetic pairs: a tokenizer (name or directory) whose chat template renders each prompt
            (the same pairs, responses and order; only the prompt text changes); ``None``: the plain template.
    """
    if cfg.data is not None:
        pairs = load_preference_jsonl(cfg.data)
        order = random.Random(cfg.seed).sample(range(len(pairs)), len(pairs))
        n_held = max(1, round(cfg.heldout * len(pairs)))
        if len(pairs) - n_held < 1:
            raise ValueError(f"{cfg.data} has {len(pairs)} pair(s); training needs at least 2 (one held out).")
        return [pairs[i] for i in order[n_held:]], [pairs[i] for i in order[:n_held]]
    from lm_envs.tasks.chat.task import SyntheticInstructions

    task = SyntheticInstructions(chat_template=chat_template)
    n_held = synthetic_heldout_pairs(cfg.heldout, cfg.num_pairs)
    return (
        synthetic_preferences(cfg.pair_offset + cfg.num_pairs, seed=cfg.seed, split="train", task=task)[
            cfg.pair_offset :
        ],
        synthetic_preferences(n_held, seed=cfg.seed, split="test", task=task),
    )


def template_source(tokenizer: Any, wanted: bool = True) -> str | None:
    """The tokenizer (name or directory) whose chat template renders synthetic prompts, or ``None`` (plain).

    ``None`` unless ``wanted`` and the tokenizer has a chat template (the embedded default has none).
    """
    if not wanted or not getattr(tokenizer, "chat_template", None):
        return None
    return str(tokenizer.name_or_path)


def load_label_model(cfg: RewardModelConfig) -> tuple[torch.nn.Module, Any]:
    """The label model (``cfg.label_model``) and its tokenizer, ready to score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(cfg.label_model).to(cfg.device).eval()
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(cfg.label_model), model)
    except OSError as e:
        raise ValueError(
            f"cannot load the label model {cfg.label_model!r}: {e}. Give the directory of a reward model trained "
            "with `lm-envs train-rm` (the weak supervisor), or label_model=null for the data's own labels."
        ) from e
    check_reward_model(model, tokenizer, str(cfg.label_model))
    return model, tokenizer


def label_pairs(
    cfg: RewardModelConfig, pairs: list[PreferencePair], model: torch.nn.Module, tokenizer: Any
) -> list[PreferencePair]:
    """The training pairs as the label model saw its own: rendered with its chat template if it trained with one.

    A reward model trained here records ``lm_envs_chat_template`` in its config (older ones: plain prompts), so a
    weak supervisor without a template labels the same pairs a chat-template student trains on.
    """
    if cfg.data is not None:
        return pairs
    source = template_source(tokenizer, bool(getattr(model.config, "lm_envs_chat_template", False)))
    return preference_data(cfg, source)[0]


@torch.no_grad()
def weak_labels(
    cfg: RewardModelConfig, texts: Sequence[str], pairs: bool, labeller: tuple[torch.nn.Module, Any] | None = None
) -> list[float]:
    """The label model's probabilities: ``sigmoid(r(a) - r(b))`` for consecutive text pairs, else ``sigmoid(logit)``.

    Args:
        cfg: Its ``label_model`` (a reward-model directory) and ``max_length``.
        texts: The training texts (``[a_1, b_1, a_2, b_2, ...]`` when ``pairs``).
        pairs: Preference pairs (one label per pair) or classifier texts (one label per text).
        labeller: The label model and its tokenizer when already loaded (:func:`load_label_model`).
    """
    model, tokenizer = labeller or load_label_model(cfg)
    scores = torch.cat(
        [score_texts(model, tokenizer, texts[i : i + 128], cfg.max_length) for i in range(0, len(texts), 128)]
    )
    if pairs:
        scores = scores.view(-1, 2)
        return torch.sigmoid(scores[:, 0] - scores[:, 1]).cpu().tolist()
    return torch.sigmoid(scores).cpu().tolist()


# ============================================================================================
# Math solutions and their labels (ORM / PRM)
# ============================================================================================


@dataclass
class Solution:
    """One math solution: the problem, its steps and whether the graded final answer is right."""

    problem: Problem
    steps: list[str]
    correct: bool
    completion: str | None = None  # the raw sampled text (ORMs score it as sampled); None: the steps joined


def split_steps(completion: str, separator: str = "\n") -> list[str]:
    """The non-empty reasoning steps of a completion (how the env and LearnedPRM split them)."""
    return [s for s in completion.split(separator) if s.strip()]


def is_correct(problem: Problem, text: str) -> bool:
    """Whether the final answer extracted from ``text`` is equivalent to the problem's answer."""
    extracted = extract_answer(text)
    return extracted is not None and grade(problem.answer, extracted).equivalent


def rule_step_labels(problem: Problem, steps: Sequence[str]) -> list[float]:
    """Step labels from the rule-based verifier: 1 while no claim so far is false (0 from the first error on).

    The final-answer line (``#### x``) is good only if, in addition, the graded answer is right.

    Example:
        >>> p = Problem("a", "q", "40")
        >>> rule_step_labels(p, ["12 * 3 = 36", "36 + 4 = 41", "#### 41"])
        [1.0, 0.0, 0.0]
        >>> rule_step_labels(p, ["12 * 3 = 36", "So far so good.", "#### 39"])
        [1.0, 1.0, 0.0]
    """
    labels, ok = [], True
    for step in steps:
        if step.lstrip().startswith(FINAL):
            ok = ok and is_correct(problem, step)
        elif check_step(step).verdict == "wrong":
            ok = False
        labels.append(1.0 if ok else 0.0)
    return labels


#: Completer: ``(problems, prefixes, k) -> k continuation texts per (problem, prefix)``.
Completer = Callable[[Sequence[Problem], Sequence[str], int], list[list[str]]]


def shepherd_step_labels(
    solutions: Sequence[Solution], completer: Completer, k: int, soft: bool = False, separator: str = "\n"
) -> list[list[float]]:
    """Math-Shepherd step labels: how often ``k`` completions from each step reach the right answer.

    Every step prefix of every solution is completed ``k`` times in one ``completer`` call. The hard
    label of step ``t`` is 1 if any completion from ``steps[:t+1]`` is correct, the soft label the
    fraction that is; the final-answer step needs no rollout: its label is the graded answer itself.

    Args:
        solutions: The solutions to label.
        completer: Continues a ``(problem, prefix)`` ``k`` times (e.g. :func:`policy_completer`).
        k: Completions per step (``N`` in the paper, 8 there).
        soft: Soft labels (fraction correct) instead of hard ones (any correct).
        separator: The step separator closing each step of the prefix.
    """
    problems, prefixes, where = [], [], []
    for i, sol in enumerate(solutions):
        for t, step in enumerate(sol.steps):
            if not step.lstrip().startswith(FINAL):
                problems.append(sol.problem)
                prefixes.append("".join(s + separator for s in sol.steps[: t + 1]))
                where.append((i, t))
    completions = completer(problems, prefixes, k) if problems else []
    if len(completions) != len(prefixes) or any(len(c) != k for c in completions):
        raise ValueError(f"the completer must return {k} completions for each of the {len(prefixes)} prefixes.")
    labels = [[0.0] * len(sol.steps) for sol in solutions]
    for (i, t), problem, prefix, conts in zip(where, problems, prefixes, completions, strict=True):
        hits = [is_correct(problem, prefix + c) for c in conts]
        labels[i][t] = sum(hits) / k if soft else float(any(hits))
    for i, sol in enumerate(solutions):
        for t, step in enumerate(sol.steps):
            if step.lstrip().startswith(FINAL):
                labels[i][t] = float(is_correct(sol.problem, "".join(s + separator for s in sol.steps[: t + 1])))
    return labels


def perturbed_solutions(
    task: Task, split: str, num_problems: int, per_problem: int, seed: int, first: int = 0
) -> list[Solution]:
    """Gold solutions, and copies where one step's result is changed (an offline source of errors).

    Problems ``first .. first + num_problems - 1`` of ``split``.

    Copy ``j > 0`` of a problem changes the number after the last ``=`` of a random claim step by
    ``+1 .. +9``. Half the time the final ``####`` answer is made wrong too (the changed value when
    the last claim changed, else a different number): a wrong solution. Otherwise the answer stays
    right: a right answer after a wrong step, which an ORM cannot see and a PRM can.
    """
    out = []
    for i in range(first, first + num_problems):
        problem = task.problem(split, i)
        rng = random.Random(f"perturb/{seed}/{split}/{i}")
        gold = list(problem.steps)
        claims = [t for t, s in enumerate(gold) if not s.startswith(FINAL) and re.search(r"=\s*-?\d+", s)]
        for j in range(per_problem):
            steps = list(gold)
            if j > 0 and claims:
                t = rng.choice(claims)
                m = list(re.finditer(r"(=\s*)(-?\d+)", steps[t]))[-1]
                wrong = int(m.group(2)) + rng.randint(1, 9)
                steps[t] = steps[t][: m.start(2)] + str(wrong) + steps[t][m.end(2) :]
                if rng.random() < 0.5:
                    steps[-1] = f"{FINAL} {wrong}" if t == claims[-1] else f"{FINAL} {problem.answer}1"
            out.append(Solution(problem, steps, is_correct(problem, "\n".join(steps))))
    return out


_FACT = re.compile(r"^\s*(-?\d+)\s*([-+*/x×])\s*(-?\d+)\s*$")


def wrong_results(claim_lhs: str, value: int, rng: random.Random, k: int) -> list[int]:
    """``k`` distinct wrong results for the claim ``claim_lhs = value``, the errors a small policy makes.

    Drawn from: off by 1 .. 9 either way, off by 10, two digits swapped, and the result of a neighbouring
    fact (``(a +- 1) op b``, ``a op (b +- 1)``). Never negative when ``value`` is not.

    Example:
        >>> r = wrong_results("12 * 6", 72, random.Random(0), 3)
        >>> len(r), 72 in r, len(set(r))
        (3, False, 3)
    """
    pool = {value + d for d in (*range(-9, 0), *range(1, 10), -10, 10)}
    digits = str(abs(value))
    for i in range(len(digits) - 1):
        swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
        if not swapped.startswith("0"):
            pool.add(int(swapped) * (1 if value >= 0 else -1))
    m = _FACT.match(claim_lhs)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        for a2, b2 in ((a - 1, b), (a + 1, b), (a, b - 1), (a, b + 1)):
            with contextlib.suppress(Exception):
                v = evaluate(f"{a2} {op} {b2}")
                if v.denominator == 1:
                    pool.add(int(v))
    pool.discard(value)
    if value >= 0:
        pool = {v for v in pool if v >= 0}
    return rng.sample(sorted(pool), min(k, len(pool)))


def contrastive_step_pairs(solutions: Sequence[Solution], negatives: int = 2, seed: int = 0) -> list[tuple[str, str]]:
    """Minimal contrastive PRM texts: ``(right, wrong)`` step prefixes that differ in ONE number only.

    For every checkable claim step ``a op b = c`` of every solution (usually the policy's own samples, so the
    prefixes are what the PRM will judge), the prefix ``prompt + steps[:t]`` is kept as sampled and the step is
    written once with the true result of ``a op b`` and ``negatives`` times with a wrong one
    (:func:`wrong_results`, plus the policy's own wrong result when it made one); the step is cut after the
    claim. Nothing but ``c`` tells the two texts apart, so a PRM trained on them must compare ``c`` with
    ``a op b`` instead of rating how hard the problem is.

    Example:
        >>> p = Problem("a", "Q?\\n", "72")
        >>> pairs = contrastive_step_pairs([Solution(p, ["4 * 3 = 12", "12 * 6 = 84", "#### 84"], False)], 1)
        >>> pairs[1]  # the second step: its true result beside the policy's own wrong one
        ('Q?\\n4 * 3 = 12\\n12 * 6 = 72\\n', 'Q?\\n4 * 3 = 12\\n12 * 6 = 84\\n')
    """
    rng = random.Random(f"contrastive/{seed}")
    pairs: list[tuple[str, str]] = []
    for sol in solutions:
        for t, step in enumerate(sol.steps):
            check = check_step(step)
            if check.verdict == "unverifiable" or check.lhs_value is None or check.lhs_value.denominator != 1:
                continue
            where = step.find(check.claim)
            lhs, _, rhs = check.claim.rpartition("=")
            if where < 0 or not lhs.strip() or not re.fullmatch(r"\s*-?\d+\s*", rhs):
                continue
            head = step[:where] + lhs.rstrip() + " = "
            value = int(check.lhs_value)
            wrong = wrong_results(lhs.strip(), value, rng, negatives)
            if check.verdict == "wrong" and int(rhs) not in wrong:
                wrong = [int(rhs), *wrong[: max(0, negatives - 1)]]
            right_text = step_text(sol.problem, sol.steps[:t], f"{head}{value}")
            pairs.extend((right_text, step_text(sol.problem, sol.steps[:t], f"{head}{w}")) for w in wrong)
    return pairs


def _load_policy(path: str, device: str) -> tuple[torch.nn.Module, TextCodec]:
    from agents.policy.models import load_model

    codec = load_codec(path)
    return load_model(path, codec).to(device), codec


def policy_solutions(
    cfg: RewardModelConfig, split: str, num_problems: int, model: torch.nn.Module | None = None, first: int = 0
) -> list[Solution]:
    """``samples_per_problem`` solutions for problems ``first ..`` of ``split``, sampled from the policy via the env."""
    from agents.search.best_of_n import sample_groups

    if model is None:
        model, _ = _load_policy(str(cfg.policy), cfg.device)
    samples = sample_groups(
        model,
        cfg.env_id,
        cfg.samples_per_problem,
        num_problems,
        split,
        cfg.temperature,
        cfg.seed,
        env_kwargs={"tokenizer": cfg.policy},
        first=first,
    )
    task = gym.make(cfg.env_id, tokenizer=cfg.policy).unwrapped.task
    out = []
    for p, index in enumerate(samples.indices or []):
        problem = task.problem(split, index)
        for j, completion in enumerate(samples.completions[p]):
            out.append(Solution(problem, split_steps(completion), bool(samples.success[p, j]), completion))
    return out


def policy_completer(
    model: torch.nn.Module,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
) -> Completer:
    """A :data:`Completer` that rolls the policy through the env from each prefix (the env's ``prefix`` option)."""
    from agents.policy.sampling import sample_per_problem

    kwargs = dict(env_kwargs or {})
    # The prefix (up to a whole sampled solution) sits in the prompt buffer: give it the room.
    kwargs.setdefault("max_prompt_tokens", 256)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)

    venvs: dict[int, Any] = {}

    def complete(problems: Sequence[Problem], prefixes: Sequence[str], k: int) -> list[list[str]]:
        out: list[list[str]] = []
        for chunk, rollout in sample_per_problem(
            model,
            env_id,
            k,
            problems=problems,
            prefixes=prefixes,
            temperature=temperature,
            generator=generator,
            batch_size=batch_size,
            env_kwargs=kwargs,
            venvs=venvs,
        ):
            texts = [info.get("completion", "") for info in rollout.infos]
            out.extend(texts[j * k : (j + 1) * k] for j in range(len(chunk)))
        return out

    return complete


def math_examples(cfg: RewardModelConfig, solutions: Sequence[Solution], completer: Completer | None = None):
    """``(text, label)`` training texts: one per solution (ORM) or one per step prefix (PRM)."""
    texts: list[str] = []
    labels: list[float] = []
    if cfg.kind == "orm":
        for sol in solutions:
            texts.append(sol.problem.prompt + (sol.completion if sol.completion is not None else "\n".join(sol.steps)))
            labels.append(float(sol.correct))
        return texts, labels
    if cfg.labels == "shepherd":
        if completer is None:
            raise ValueError("Math-Shepherd labels need a completer (a policy); set policy=<dir>.")
        step_labels = shepherd_step_labels(solutions, completer, cfg.shepherd_rollouts, cfg.soft_labels)
    else:
        step_labels = [rule_step_labels(sol.problem, sol.steps) for sol in solutions]
    for sol, ys in zip(solutions, step_labels, strict=True):
        for t, y in enumerate(ys):
            texts.append(step_text(sol.problem, sol.steps[:t], sol.steps[t]))
            labels.append(y)
    return texts, labels


# ============================================================================================
# Training
# ============================================================================================


@torch.no_grad()
@torch.no_grad()
def evaluate_pairs(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    max_length: int,
    batch_size: int = 64,
    score: Callable[[Sequence[str]], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Held-out pair accuracy and the score mean/std over both sides of every pair (``score``: texts -> scores)."""
    model.eval()
    score = score or (lambda texts: score_texts(model, tokenizer, texts, max_length))
    rc, rr = [], []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        r = score([t for p in chunk for t in p.texts()]).view(-1, 2)
        rc.append(r[:, 0])
        rr.append(r[:, 1])
    c, r = torch.cat(rc), torch.cat(rr)
    both = torch.cat([c, r])
    return {
        "accuracy": float((c > r).float().mean()),
        "reward_mean": float(both.mean()),
        "reward_std": float(both.std().clamp_min(1e-6)) if len(both) > 1 else 1.0,
    }


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(a random positive outscores a random negative), ties half (NaN if one class).

    Accuracy at a 0.5 threshold says little when positives are rare; best-of-N only needs the ranking.

    Example:
        >>> auc([0.9, 0.2, 0.5, 0.5], [True, False, True, False])
        0.875
    """
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return float("nan")
    ranks = np.argsort(np.argsort(np.asarray([*pos, *neg]), kind="stable"), kind="stable") + 1.0
    values = np.asarray([*pos, *neg])
    for v in np.unique(values):  # average ranks over ties
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def balanced_draws(labels: Sequence[float]) -> np.ndarray | None:
    """Sampling probabilities under which each class (``label > 0.5`` or not) is drawn half the time.

    The wrong answers of a good policy (or the right ones of a weak one) are then seen as often as the
    other class; ``None`` when one class is missing (uniform draws).

    Example:
        >>> balanced_draws([1.0, 0.0, 0.0, 0.0]).round(3).tolist()
        [0.5, 0.167, 0.167, 0.167]
    """
    positive = np.asarray(labels, dtype=np.float64) > 0.5
    if not 0 < positive.sum() < len(positive):
        return None
    draw = np.where(positive, 0.5 / positive.sum(), 0.5 / (~positive).sum())
    return draw / draw.sum()


def within_problem(scores: Sequence[float], correct: Sequence[bool], groups: Sequence[Any]) -> dict[str, float]:
    """What selection needs from a verifier, over solutions grouped by problem.

    ``within_problem_auc``: the mean over problems with right and wrong solutions of the AUC among that
    problem's solutions (a verifier that only learned which problems are easy scores 0.5 here);
    ``selection_accuracy``: the fraction of problems whose top-scored solution is right, beside
    ``random_pick_accuracy`` (the mean correctness: what picking blindly gets) and ``oracle_accuracy``
    (some solution is right).

    Example:
        >>> m = within_problem([0.9, 0.1, 0.2, 0.8], [True, False, True, False], ["a", "a", "b", "b"])
        >>> m["within_problem_auc"], m["selection_accuracy"], m["random_pick_accuracy"]
        (0.5, 0.5, 0.5)
    """
    by: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    aucs, picks, oracle = [], [], []
    for members in by.values():
        s = [scores[i] for i in members]
        c = [bool(correct[i]) for i in members]
        picks.append(c[int(np.argmax(s))])
        oracle.append(any(c))
        if 0 < sum(c) < len(c):
            aucs.append(auc(s, c))
    return {
        "within_problem_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "problems_with_both": float(len(aucs)),
        "selection_accuracy": float(np.mean(picks)) if picks else float("nan"),
        "random_pick_accuracy": float(np.mean([bool(c) for c in correct])) if len(correct) else float("nan"),
        "oracle_accuracy": float(np.mean(oracle)) if oracle else float("nan"),
    }


@torch.no_grad()
def selection_metrics(
    model: torch.nn.Module, tokenizer: Any, cfg: RewardModelConfig, solutions: Sequence[Solution]
) -> dict[str, float]:
    """:func:`within_problem` of the verifier's solution scores on held-out solutions.

    ORM: its score on the whole text; PRM: the minimum over the step probabilities, and ``*_last`` /
    ``*_product`` beside it.
    """
    model.eval()
    groups = [sol.problem.id for sol in solutions]
    correct = [sol.correct for sol in solutions]
    if cfg.kind == "orm":
        texts = [
            s.problem.prompt + (s.completion if s.completion is not None else "\n".join(s.steps)) for s in solutions
        ]
        scores = torch.cat(
            [score_texts(model, tokenizer, texts[i : i + 64], cfg.max_length) for i in range(0, len(texts), 64)]
        )
        return within_problem(scores.cpu().tolist(), correct, groups)
    texts, spans = [], []
    for sol in solutions:
        start = len(texts)
        texts.extend(step_text(sol.problem, sol.steps[:t], sol.steps[t]) for t in range(len(sol.steps)))
        spans.append((start, len(texts)))
    logits = [score_texts(model, tokenizer, texts[i : i + 64], cfg.max_length) for i in range(0, len(texts), 64)]
    probs = torch.sigmoid(torch.cat(logits)).cpu().tolist() if logits else []
    out: dict[str, float] = {}
    for how in ("min", "last", "product"):
        from lm_envs.tasks.math.prm import aggregate

        scores = [aggregate(probs[a:b], how) for a, b in spans]
        metrics = within_problem(scores, correct, groups)
        out.update(
            metrics
            if how == "min"
            else {f"{k}_{how}": v for k, v in metrics.items() if "pick" not in k and "oracle" not in k}
        )
    return out


@torch.no_grad()
def evaluate_classifier(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], labels: Sequence[float], max_length: int
) -> dict[str, float]:
    """Held-out classification metrics of a one-logit classifier.

    Accuracy (``sigmoid > 0.5`` vs ``label > 0.5``) beside the majority-class rate it must beat, the balanced
    accuracy (mean of the two classes' recalls), AUC, loss and the positive rate.
    """
    model.eval()
    logits = torch.cat([score_texts(model, tokenizer, texts[s : s + 64], max_length) for s in range(0, len(texts), 64)])
    y = torch.tensor(list(labels), dtype=torch.float32, device=logits.device)
    return {
        "accuracy": float(((logits > 0) == (y > 0.5)).float().mean()),
        "majority_class_rate": float(max((y > 0.5).float().mean(), (y <= 0.5).float().mean())),
        "balanced_accuracy": float(
            np.nanmean([((logits > 0) == cls)[(y > 0.5) == cls].float().mean().item() for cls in (True, False)])
        ),
        "auc": auc(logits.cpu().tolist(), (y > 0.5).cpu().tolist()),
        "loss": float(classifier_loss(logits, y)),
        "positive_rate": float((y > 0.5).float().mean()),
        "reward_mean": float(logits.mean()),
        "reward_std": float(logits.std().clamp_min(1e-6)) if len(logits) > 1 else 1.0,
    }


def write_result(
    out: Path, cfg: RewardModelConfig, held: dict[str, Any], history: Any, data_info: Any, started: float
) -> dict[str, Any]:
    """The run's result (held-out metrics, history, data, config, wall time), also written to ``metrics.json``."""
    result = {
        "kind": cfg.kind,
        "heldout": held,
        "history": history,
        "data": data_info,
        "config": asdict(cfg),
        "wall_time_s": round(time.time() - started, 2),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def train_contrastive(
    cfg: RewardModelConfig,
    log: Callable[[int, dict[str, float]], None] | None = None,
    policy: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """``kind="contrastive"``: fine-tune a copy of the policy on contrastive claim steps of its own samples.

    Train data: ``samples_per_problem`` samples of train problems ``first_problem ..`` turned into
    ``(right, wrong)`` claim-step pairs (:func:`contrastive_step_pairs`, ``negatives`` per step). A policy whose
    samples hold no checkable claim (barely trained) gets its train problems' gold claim steps instead
    (``data.pair_source = "gold"``). Held out: ``heldout_problems`` test problems' samples, scored by the policy's
    mean token log-probability before training and by the verifier's after (:func:`within_problem`), and the
    pair accuracy (right result more likely than the wrong one) on their claim steps, before and after.

    Args:
        cfg: The run's settings (``kind="contrastive"``, ``policy`` set).
        log: Called as ``log(step, metrics)``.
        policy: Unused (the policy is loaded from ``cfg.policy`` and fine-tuned as a copy).
    """
    from agents.reward_models.contrastive import completion_logprobs, result_logprobs, train_contrastive_verifier

    del policy
    check_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.time()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm, codec = _load_policy(str(cfg.policy), cfg.device)
    train_sol = policy_solutions(cfg, "train", cfg.num_problems, lm, cfg.first_problem)
    held_cfg = RewardModelConfig(
        **{**asdict(cfg), "samples_per_problem": cfg.heldout_samples or cfg.samples_per_problem}
    )
    held_sol = policy_solutions(held_cfg, "test", cfg.heldout_problems, lm)
    pairs, source = contrastive_step_pairs(train_sol, cfg.negatives, cfg.seed), "policy"
    if not pairs:
        task = gym.make(cfg.env_id).unwrapped.task
        gold = perturbed_solutions(task, "train", cfg.num_problems, 1, cfg.seed, cfg.first_problem)
        pairs, source = contrastive_step_pairs(gold, cfg.negatives, cfg.seed), "gold"
    held_pairs = contrastive_step_pairs(held_sol, 1, cfg.seed + 1)
    groups = [sol.problem.id for sol in held_sol]
    correct = [sol.correct for sol in held_sol]
    prompts = [sol.problem.prompt for sol in held_sol]
    completions = [sol.completion if sol.completion is not None else "\n".join(sol.steps) for sol in held_sol]

    @torch.no_grad()
    def pair_accuracy() -> float:
        if not held_pairs:
            return float("nan")
        lm.eval()
        r = torch.cat([result_logprobs(lm, codec, [t for p in held_pairs[i : i + 64] for t in p]) for i in
                       range(0, len(held_pairs), 64)]).view(-1, 2)  # fmt: skip
        return float((r[:, 0] > r[:, 1]).float().mean())

    before_pairs = pair_accuracy()
    before = within_problem(completion_logprobs(lm, codec, prompts, completions)[0].tolist(), correct, groups)
    data_info: dict[str, Any] = {
        "train_solutions": len(train_sol),
        "train_solution_accuracy": float(np.mean([s.correct for s in train_sol])) if train_sol else float("nan"),
        "train_pairs": len(pairs),
        "pair_source": source,
        "heldout_solutions": len(held_sol),
        "heldout_pairs": len(held_pairs),
    }
    if log is not None:
        log(0, {f"data/{k}": float(v) for k, v in data_info.items() if not isinstance(v, str)})
    history = train_contrastive_verifier(
        lm, codec, pairs, cfg.steps, cfg.batch_size, cfg.lr, cfg.bt, cfg.seed, log_every=cfg.eval_every
    )
    if log is not None:
        for entry in history:
            log(entry["step"], {f"rm/{k}": v for k, v in entry.items() if k != "step"})
    after = within_problem(completion_logprobs(lm, codec, prompts, completions)[0].tolist(), correct, groups)
    held = {
        "accuracy": pair_accuracy(),  # held-out claim steps: the right result more likely than a near miss
        "policy_pair_accuracy": before_pairs,
        **after,
        "policy_within_problem_auc": before["within_problem_auc"],
        "policy_selection_accuracy": before["selection_accuracy"],
    }
    if log is not None:
        log(cfg.steps, {f"heldout/{k}": v for k, v in held.items()})
    lm.config.lm_envs_kind = "contrastive"
    lm.save_pretrained(out)
    save_codec(codec, out)
    return write_result(out, cfg, held, history, data_info, started)


def train_reward_model(
    cfg: RewardModelConfig,
    log: Callable[[int, dict[str, float]], None] | None = None,
    policy: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Train a reward model as ``cfg`` says and save it in ``cfg.output_dir``; returns the metrics.

    Args:
        cfg: The run's settings.
        log: Called as ``log(step, metrics)`` every 10 steps and at each held-out evaluation.
        policy: An already loaded policy for sampling math solutions (default: load ``cfg.policy``).
    """
    check_config(cfg)
    if cfg.kind == "contrastive":
        return train_contrastive(cfg, log, policy)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.time()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_reward_model(cfg)
    rng = np.random.default_rng([cfg.seed, 11])

    # --- data -------------------------------------------------------------------------------------
    if cfg.kind == "preference":
        rendered = template_source(tokenizer, cfg.chat_template)
        train_pairs, held_pairs = preference_data(cfg, rendered)
        for i, p in enumerate(train_pairs):
            check_pair(p, where=f"training pair {i}")
        n_train = len(train_pairs)
        data_info: dict[str, Any] = {
            "train_pairs": n_train,
            "heldout_pairs": len(held_pairs),
            "chat_template": rendered is not None and cfg.data is None,
        }
        pair_labels = None  # weak supervision: P(chosen beats rejected) by the label model
        if cfg.label_model is not None:
            labeller = load_label_model(cfg)
            seen = label_pairs(cfg, train_pairs, *labeller)  # the same pairs, rendered as the label model trained
            pair_labels = weak_labels(cfg, [t for p in seen for t in p.texts()], pairs=True, labeller=labeller)
            data_info["label_agreement"] = float(np.mean(np.asarray(pair_labels) > 0.5))
    else:
        task = gym.make(cfg.env_id).unwrapped.task
        completer = None
        if cfg.policy is not None:
            if policy is None:
                policy, _ = _load_policy(cfg.policy, cfg.device)
            train_sol = policy_solutions(cfg, "train", cfg.num_problems, policy, cfg.first_problem)
            held_cfg = RewardModelConfig(
                **{**asdict(cfg), "samples_per_problem": cfg.heldout_samples or cfg.samples_per_problem}
            )
            held_sol = policy_solutions(held_cfg, "test", cfg.heldout_problems, policy)
            completer = policy_completer(policy, cfg.env_id, {"tokenizer": cfg.policy}, cfg.temperature, cfg.seed)
        else:
            train_sol = perturbed_solutions(
                task, "train", cfg.num_problems, cfg.samples_per_problem, cfg.seed, cfg.first_problem
            )
            held_n = cfg.heldout_samples or cfg.samples_per_problem
            held_sol = perturbed_solutions(task, "test", cfg.heldout_problems, held_n, cfg.seed)
        train_texts, train_labels = math_examples(cfg, train_sol, completer)
        if cfg.label_model is not None:  # weak supervision: the label model's probabilities replace the grader's
            weak = weak_labels(cfg, train_texts, pairs=False)
            data_info_weak = {
                "label_agreement": float(np.mean((np.asarray(weak) > 0.5) == (np.asarray(train_labels) > 0.5)))
            }
            train_labels = weak
        else:
            data_info_weak = {}
        held_cfg = RewardModelConfig(**{**asdict(cfg), "labels": "rule" if cfg.kind == "prm" else cfg.labels})
        # Held-out labels: rule-based for PRMs (cheap and exact on arithmetic), so label methods compare alike.
        held_texts, held_labels = math_examples(held_cfg, held_sol)
        n_train = len(train_texts)
        data_info = {
            "train_solutions": len(train_sol),
            "train_solution_accuracy": float(np.mean([s.correct for s in train_sol])),
            "train_texts": n_train,
            "train_positive_rate": float(np.mean(np.asarray(train_labels) > 0.5)),
            "heldout_texts": len(held_texts),
            **data_info_weak,
        }
    if log is not None:
        log(0, {f"data/{k}": float(v) for k, v in data_info.items()})

    # --- optimisation -----------------------------------------------------------------------------
    score = score_function(cfg, model, tokenizer)  # texts -> (len,) scores, with grad where the model trains
    if cfg.freeze_backbone:  # the head alone trains, on features computed once per text
        texts = [t for p in train_pairs for t in p.texts()] if cfg.kind == "preference" else train_texts
        head_features(model, tokenizer, texts, cfg.max_length)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))  # warm-up, cosine to 10%

    def evaluate() -> dict[str, float]:
        if cfg.kind == "preference":
            return evaluate_pairs(model, tokenizer, held_pairs, cfg.max_length, score=score)
        metrics = evaluate_classifier(model, tokenizer, held_texts, held_labels, cfg.max_length)
        return {**metrics, **selection_metrics(model, tokenizer, cfg, held_sol)}

    draw = balanced_draws(train_labels) if cfg.kind != "preference" and cfg.balance else None
    pairs: list[tuple[list[int], list[int]]] = []  # objective=pairwise: per problem, its right and wrong solutions
    if cfg.objective == "pairwise":
        by_problem: dict[str, tuple[list[int], list[int]]] = {}
        for i, sol in enumerate(train_sol):
            by_problem.setdefault(sol.problem.id, ([], []))[0 if sol.correct else 1].append(i)
        pairs = [(right, wrong) for right, wrong in by_problem.values() if right and wrong]
        if not pairs:
            raise ValueError(
                "objective=pairwise needs problems with both right and wrong sampled solutions, and there are none; "
                "raise samples_per_problem or the temperature, or use objective=bce."
            )
        data_info["pairwise_problems"] = len(pairs)
    history = []
    for step in range(cfg.steps):
        model.train()
        idx = (
            rng.integers(n_train, size=cfg.batch_size) if draw is None else rng.choice(n_train, cfg.batch_size, p=draw)
        )
        if cfg.kind == "preference":
            batch = [train_pairs[i] for i in idx]
            # Chosen and rejected in one forward: [c_1, r_1, c_2, r_2, ...].
            r = score([t for p in batch for t in p.texts()]).view(-1, 2)
            margins = torch.tensor([p.margin for p in batch], device=r.device) + cfg.margin
            loss, metrics = bradley_terry_loss(r[:, 0], r[:, 1], margins, cfg.center_coef)
            if pair_labels is not None or cfg.conf_coef:  # soft (weak) labels and the confidence loss, on r+ - r-
                y = torch.tensor([1.0 if pair_labels is None else pair_labels[i] for i in idx], device=r.device)
                alpha = conf_alpha(step, cfg.steps, cfg.conf_coef)
                loss = confidence_loss(r[:, 0] - r[:, 1] - margins, y, alpha, threshold=0.0)
                if cfg.center_coef:
                    loss = loss + cfg.center_coef * ((r[:, 0] + r[:, 1]) ** 2).mean()
        elif pairs:  # a right and a wrong solution of one problem in each pair: [r_1, w_1, r_2, w_2, ...]
            chosen = [pairs[k] for k in rng.integers(len(pairs), size=max(1, cfg.batch_size // 2))]
            texts = [train_texts[int(rng.choice(side))] for right, wrong in chosen for side in (right, wrong)]
            r = score(texts).view(-1, 2)
            loss, metrics = bradley_terry_loss(r[:, 0], r[:, 1], cfg.margin, cfg.center_coef)
        else:
            logits = score([train_texts[i] for i in idx])
            y = torch.tensor([train_labels[i] for i in idx], device=logits.device)
            loss = confidence_loss(logits, y, conf_alpha(step, cfg.steps, cfg.conf_coef))
            metrics = {"accuracy": float(((logits > 0) == (y > 0.5)).float().mean())}
        grad_norm = gradient_step(
            model, optimizer, schedule, loss, cfg.max_grad_norm, f"reward-model loss at step {step}", "lr"
        )
        if log is not None and (step % 10 == 0 or step == cfg.steps - 1):
            metrics = {"loss": loss.item(), "grad_norm": float(grad_norm), **metrics}
            log(step + 1, {f"rm/{k}": v for k, v in metrics.items()})
        if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) and step + 1 < cfg.steps:
            held = evaluate()
            history.append({"step": step + 1, **held})
            if log is not None:
                log(step + 1, {f"heldout/{k}": v for k, v in held.items()})
    held = evaluate()
    history.append({"step": cfg.steps, **held})
    if log is not None:
        log(cfg.steps, {f"heldout/{k}": v for k, v in held.items()})

    # --- save in transformers format: loads by path in ChatReward, MathReward(process="learned"), scorers ---
    model.config.reward_mean, model.config.reward_std = held["reward_mean"], held["reward_std"]
    model.config.heldout_accuracy = held["accuracy"]
    model.config.lm_envs_kind = cfg.kind
    model.config.lm_envs_chat_template = bool(data_info.get("chat_template", False))  # how its prompts looked
    model.eval()
    if cfg.lora_r:
        from agents.policy.lora import merge_lora

        model = merge_lora(model)  # a plain transformers classifier computing what the adapted one computed
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return write_result(out, cfg, held, history, data_info, started)
