"""On-policy distillation: ``agent=distill``.

The student samples episodes from the env as any on-policy learner does; a frozen teacher scores the
student's own tokens, and the student minimises the per-token **reverse** KL to the teacher on them,
``KL(pi_s || pi_t) = E_{a ~ pi_s}[log pi_s(a | s) - log pi_t(a | s)]`` (Agarwal et al. 2024, GKD with
student-generated data and the reverse KL; Thinking Machines' "on-policy distillation", 2025). Unlike
SFT on teacher samples, the student learns on the states it actually reaches, so its own mistakes get
the teacher's correction; unlike RL, every token gets a dense signal.

Two estimators (``agent.estimator``):

* ``full`` (default): the exact per-token reverse KL over the whole vocabulary, ``sum_v pi_s(v)
  (log pi_s(v) - log pi_t(v))`` at each state the student reached, differentiated directly (GKD's
  token-level divergence with the reverse KL); needs teacher and student logits of the same width.
* ``sampled`` (Thinking Machines): the per-token advantage is ``A_t = -kl_coef * (log pi_s(a_t) -
  log pi_t(a_t))`` on the sampled token (detached, discount 0: only the token's own KL), and the loss
  is the policy gradient ``-mean_t A_t log pi_s(a_t)``: the score-function estimate of the same
  gradient (unbiased, since ``E[grad log pi_s] = 0``), needing only the teacher's log-prob of the
  sampled token. It is far noisier: on ``LMEnv/Digits-v0`` with a fresh 1x32 student and a sharpened random
  teacher (``bench/distill_estimators.py``, 60 iterations, 3 seeds), ``full`` lowered the per-token KL
  from 0.40 to 0.10 at 16 episodes per iteration and lr 1e-2; ``sampled`` not at all there (0.44 to
  0.45), and from 0.43 to 0.31 at 64 episodes and lr 3e-3 (its gradient's cosine with the exact one is
  about 0.36 at 512 episodes).

The KL is taken at temperature 1 on both sides: sample at ``agent.temperature=1`` (the default) for an
on-policy gradient. The teacher (``agent.teacher``) is a transformers directory, a run directory
(its ``model/``, e.g. a larger embedded model trained first), or a shipped alias (``smollm2``). It must
share the student's tokenizer (the KL compares the same token ids): checked on the run's settings in
``validate`` and again, on the loaded tokenizers, before any training.

Logged: ``distill/reverse_kl`` (mean per-token sampled estimate on the rollout, before the update),
``distill/reverse_kl_full`` (the exact per-token KL, same tokens, when the widths match),
``distill/sequence_reverse_kl`` (summed over each episode's tokens, mean over episodes), plus the
rollout metrics (the env's reward is not trained on, only watched).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from agents.learners.base import (
    RunContext,
    collect_iteration,
    curriculum_metrics,
    curriculum_state,
    load_curriculum_state,
    make_train_venv,
    rollout_metrics,
)
from agents.policy.actor_critic import Policy
from agents.policy.models import frozen_copy, load_model, logits_width
from agents.policy.sampling import Rollout
from agents.policy.scoring import response_outputs
from lm_envs import TextCodec

ESTIMATORS = ("sampled", "full")


@dataclass
class DistillConfig:
    """On-policy distillation hyper-parameters (see the module docstring)."""

    learner: ClassVar[str] = "DistillLearner"
    name: str = "distill"
    teacher: str | None = None  # model dir, run dir (its model/) or shipped alias (smollm2); same tokenizer
    estimator: str = "full"  # full (exact per-token KL over the vocabulary) | sampled (sampled KL as -advantage)
    kl_coef: float = 1.0  # scale of the per-token KL
    lr: float = 2e-5  # Adam learning rate
    num_envs: int = 64  # episodes per rollout
    group_size: int = 1  # samples per prompt
    temperature: float = 1.0  # sampling temperature (1: on-policy)
    num_minibatches: int = 1  # gradient accumulation over row chunks (one optimizer step per iteration)
    max_grad_norm: float = 1.0

    def check(self, run: Any = None) -> None:
        """Fail before any work on a missing teacher, a bad estimator or a teacher with another tokenizer.

        ``run`` is the run's config (``None``: skip the tokenizer check, which the learner repeats on the
        loaded tokenizers).
        """
        if self.teacher is None or not str(self.teacher).strip():
            raise ValueError(
                "agent=distill needs a teacher: set agent.teacher=<model dir, a run directory (its model/) or smollm2>."
            )
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown agent.estimator {self.estimator!r}; choose one of {list(ESTIMATORS)}.")
        if not (isinstance(self.kl_coef, (int, float)) and self.kl_coef > 0):
            raise ValueError(f"agent.kl_coef must be > 0, got {self.kl_coef!r}.")
        local = teacher_dir(self.teacher)
        if run is None or local is None:
            return  # an alias is converted (and then checked) when the learner loads it
        student = run.env.kwargs.get("tokenizer") or run.model.name_or_path
        if student is not None and (Path(str(student)).suffix == ".gguf" or str(student) in _shipped()):
            return
        from lm_envs.core.tokenizer import load_codec

        check_same_tokenizer(load_codec(student), load_codec(local), self.teacher)


def _shipped() -> set[str]:
    from agents.policy.pretrained import SHIPPED

    return set(SHIPPED)


def teacher_dir(teacher: str) -> str | None:
    """The transformers directory of ``agent.teacher``; ``None`` for a shipped alias or ``.gguf`` (converted later).

    Raises:
        ValueError: When it is none of a model directory, a run directory with ``model/``, an alias or a ``.gguf``.
    """
    path = Path(teacher).expanduser()
    if (path / "model" / "config.json").is_file():
        return str(path / "model")
    if (path / "config.json").is_file():
        return str(path)
    if teacher in _shipped() or path.suffix == ".gguf":
        return None
    raise ValueError(
        f"agent.teacher={teacher!r} is not a model directory (config.json), a run directory with model/, a .gguf "
        f"file or a shipped alias ({sorted(_shipped())}); train or export the teacher first."
    )


def check_same_tokenizer(student: TextCodec, teacher: TextCodec, what: str) -> None:
    """Refuse a teacher whose tokenizer is not the student's (same ids, same token bytes, same EOS).

    Raises:
        ValueError: Naming both tokenizers and the first difference.
    """
    reason = None
    if student.vocab_size != teacher.vocab_size:
        reason = f"{student.vocab_size} vs {teacher.vocab_size} tokens"
    elif student.eos_token_id != teacher.eos_token_id:
        reason = f"EOS id {student.eos_token_id} vs {teacher.eos_token_id}"
    elif student.token_bytes != teacher.token_bytes:
        first = next(i for i, (a, b) in enumerate(zip(student.token_bytes, teacher.token_bytes, strict=True)) if a != b)
        reason = f"token {first} is {student.token_bytes[first]!r} vs {teacher.token_bytes[first]!r}"
    if reason is not None:
        raise ValueError(
            f"agent.teacher={what!r} has another tokenizer than the student ({teacher.name!r} vs {student.name!r}: "
            f"{reason}); distillation compares per-token log-probs of the same ids, so choose a teacher trained with "
            "the student's tokenizer (or a student with the teacher's: model.name_or_path / env.kwargs.tokenizer)."
        )


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    estimator: str = "full",
    kl_coef: float = 1.0,
    normalizer: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distillation loss over ``mask``'s tokens (sum over ``normalizer`` tokens; default ``mask.sum()``).

    Returns:
        ``(loss, stats)``; stats hold the per-token sampled KL ``k`` (``(B, T)``, detached) and, when the
        widths match, the exact per-token KL ``full`` (``(B, T)``).

    Example:
        >>> s = torch.log(torch.tensor([[[0.5, 0.5]]]))
        >>> t = torch.log(torch.tensor([[[0.25, 0.75]]]))
        >>> loss, stats = distill_loss(s, t, torch.tensor([[0]]), torch.ones(1, 1), "full")
        >>> round(loss.item(), 4), round(stats["k"].item(), 4)  # 0.5 ln 2 + 0.5 ln(2/3); ln 2
        (0.1438, 0.6931)
    """
    s_all = torch.log_softmax(student_logits.float(), -1)
    t_all = torch.log_softmax(teacher_logits.float(), -1)
    s_lp = s_all.gather(2, tokens[..., None])[..., 0]
    t_lp = t_all.gather(2, tokens[..., None])[..., 0]
    k = (s_lp - t_lp).detach()
    m = mask.float()
    norm = m.sum().clamp(min=1) if normalizer is None else normalizer
    stats: dict[str, torch.Tensor] = {"k": k}
    full = None
    if s_all.shape[-1] == t_all.shape[-1]:
        full = (s_all.exp() * (s_all - t_all)).sum(-1)
        stats["full"] = full.detach()
    if estimator == "sampled":
        loss = -((-kl_coef * k) * s_lp * m).sum() / norm
    elif estimator == "full":
        if full is None:
            raise ValueError(
                f"agent.estimator=full needs teacher and student logits of one width ({t_all.shape[-1]} vs "
                f"{s_all.shape[-1]}); use agent.estimator=sampled."
            )
        loss = kl_coef * (full * m).sum() / norm
    else:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}.")
    return loss, stats


class DistillLearner:
    """On-policy distillation as a :class:`~agents.learners.base.Learner` (see the module docstring)."""

    def __init__(self, cfg: DistillConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        from agents.policy.pretrained import resolve_model
        from lm_envs.core.tokenizer import load_codec

        cfg.check(None)
        self.cfg, self.ctx = cfg, ctx
        path = teacher_dir(cfg.teacher) or resolve_model(cfg.teacher, progress=ctx.dist.is_main)
        check_same_tokenizer(ctx.codec, load_codec(path), cfg.teacher)
        self.teacher = frozen_copy(load_model(path, ctx.codec).to(ctx.device))
        if cfg.estimator == "full" and logits_width(self.teacher) != logits_width(lm):
            raise ValueError(
                f"agent.estimator=full needs teacher and student logits of one width ({logits_width(self.teacher)} vs "
                f"{logits_width(lm)}); use agent.estimator=sampled."
            )
        self.policy = Policy(lm, critic="none")
        self.lm = ctx.dist.wrap(lm)
        self.venv = make_train_venv(cfg, ctx)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, eps=1e-5)

    def uses_reference(self) -> bool:
        return False

    def update(self, rollout: Rollout, generator: torch.Generator | None = None) -> dict[str, float]:
        """One optimizer step of the distillation loss on ``rollout``; returns its metrics (pre-update KL)."""
        mask = rollout.action_mask
        n, K = rollout.tokens.shape[0], rollout.group_size
        dist = self.ctx.dist
        total = dist.sum_(mask.float().sum()).clamp(min=1) / dist.world_size  # DDP averages the ranks' gradients
        mb = max(K, n // self.cfg.num_minibatches // K * K)
        sums = {"k": 0.0, "full": 0.0, "seq": 0.0, "tokens": 0.0}
        has_full = True
        self.lm.train()
        self.optimizer.zero_grad(set_to_none=True)
        starts = list(range(0, n, mb))
        for start in starts:
            rows = torch.arange(start, min(start + mb, n), device=mask.device)
            with torch.no_grad(), self.ctx.precision.autocast():
                t_logits, _ = response_outputs(self.teacher, rollout, rows)
            with dist.no_sync(self.lm, skip=start != starts[-1]), self.ctx.precision.autocast():
                s_logits, _ = response_outputs(self.lm, rollout, rows)
            m = mask[rows]
            loss, stats = distill_loss(
                s_logits, t_logits, rollout.tokens[rows], m, self.cfg.estimator, self.cfg.kl_coef, total
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"distillation loss became {loss.item()}; lower agent.lr.")
            with dist.no_sync(self.lm, skip=start != starts[-1]):
                self.ctx.precision.backward(loss)
            mf = m.float()
            sums["k"] += float((stats["k"] * mf).sum())
            sums["seq"] += float((stats["k"] * mf).sum())
            sums["tokens"] += float(mf.sum())
            if "full" in stats:
                sums["full"] += float((stats["full"] * mf).sum())
            else:
                has_full = False
        self.ctx.precision.step(
            self.optimizer, self.policy.parameters(), self.cfg.max_grad_norm, "the distill gradient"
        )
        self.lm.eval()
        sums["n"] = float(n)
        sums = dist.sum_floats(sums)
        out = {
            "distill/reverse_kl": sums["k"] / max(sums["tokens"], 1.0),
            "distill/sequence_reverse_kl": sums["seq"] / max(sums["n"], 1.0),
        }
        if has_full:
            out["distill/reverse_kl_full"] = sums["full"] / max(sums["tokens"], 1.0)
        return out

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        t0 = time.time()
        generator = self.ctx.generator(it)
        rollout, t_rollout = collect_iteration(self.policy.lm, self.venv, self.cfg, self.ctx, it, generator)
        metrics = self.update(rollout, generator)
        metrics.update(rollout_metrics(rollout, t_rollout, self.venv.episodes.reward, self.ctx.dist))
        metrics.update(curriculum_metrics(self.venv))
        metrics["time/iteration_s"] = time.time() - t0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return curriculum_state(self.venv)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_curriculum_state(self.venv, state)
