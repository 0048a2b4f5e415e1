"""REINFORCE for language models with a choice of baseline, in one file: moving average, RLOO, GRPO.

Reads top to bottom:

1. A rollout of ``K = group_size`` episodes per problem (consecutive envs share the problem and the
   start state). The score of episode ``i`` is its return ``s_i`` (sum of env rewards: outcome plus
   any process rewards).
2. Optional KL in the reward (``kl_in="reward"``, k1, sequence level as TRL's RLOO):
   ``s_i <- s_i - beta * sum_t (log pi_old(a_t) - log pi_ref(a_t))``.
3. Advantage of every token of episode ``i`` (one number per episode, broadcast to its tokens):

   * ``moving_average``: ``A_i = s_i - b``, ``b <- d * b + (1 - d) * mean(s)`` (Williams 1992);
   * ``rloo``: ``A_i = s_i - mean_{j != i} s_j`` over the group (Kool et al. 2019; Ahmadian et al. 2024);
   * ``grpo``: ``A_i = (s_i - mean_j s_j) / (std_j s_j + eps)`` over the group (Shao et al. 2024).

4. Loss per token: ``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` with ``rho = pi / pi_old`` (GRPO's
   clipped ratio; with one iteration per rollout ``rho = 1`` and this is plain REINFORCE), plus
   ``beta * k3`` per token when ``kl_in="loss"`` (GRPO), averaged over all tokens of the batch.
5. Optional pre-training mix (``ptx_coef = gamma``, InstructGPT's PPO-ptx, Ouyang et al. 2022): plus
   ``gamma`` times the mean next-token NLL of ``ptx_rows`` rows of the task's pre-training documents
   per update, so the policy keeps the facts RL never rewards directly. Without it, pushing down a
   hallucinated answer on an unknown question pushes down the same value where it is a known fact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from agents.learners.base import (
    RunContext,
    collect_iteration,
    curriculum_metrics,
    curriculum_state,
    global_mean,
    load_curriculum_state,
    make_train_venv,
    masked_mean,
    pretraining_mix,
    rollout_metrics,
)
from agents.learners.sft import nll
from agents.policy.actor_critic import Policy
from agents.policy.precision import Precision
from agents.policy.sampling import Rollout
from agents.policy.scoring import policy_logprobs
from agents.run.distributed import Dist

BASELINES = ("moving_average", "rloo", "grpo", "none")


@dataclass
class ReinforceConfig:
    """REINFORCE hyper-parameters (symbols as in the papers)."""

    learner: ClassVar[str] = "ReinforceLearner"
    name: str = "reinforce"
    baseline: str = "grpo"  # moving_average | rloo | grpo | none
    lr: float = 2e-5  # Adam learning rate
    num_envs: int = 64  # episodes per rollout
    group_size: int = 8  # K samples per problem (rloo/grpo need K >= 2)
    iterations: int = 1  # updates per rollout (mu); > 1 makes the ratio clip matter
    num_minibatches: int = 1  # minibatches per update
    clip_eps: float = 0.2  # ratio clip epsilon
    kl_coef: float = 0.0  # beta
    kl_in: str = "loss"  # "loss" (k3 per token, GRPO) or "reward" (k1 per episode, RLOO)
    ema_decay: float = 0.9  # moving-average baseline decay
    grpo_eps: float = 1e-4  # std epsilon of GRPO's normalisation
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    ptx_coef: float = 0.0  # gamma of the pre-training mix (0: off)
    ptx_rows: int = 8  # rows of pre-training documents per update
    ptx_block_size: int = 64  # tokens per row


def group_advantages(scores: torch.Tensor, group_size: int, baseline: str, eps: float = 1e-4) -> torch.Tensor:
    """Per-episode advantages with a group baseline (``rloo``, ``grpo``) or none.

    Example:
        >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, "rloo").tolist()
        [1.0, -0.3333333432674408, -0.3333333432674408, -0.3333333432674408]
    """
    if baseline == "none":
        return scores.clone()
    if baseline not in ("rloo", "grpo"):
        raise ValueError(f"group baseline must be 'rloo', 'grpo' or 'none', got {baseline!r}.")
    if group_size < 2:
        raise ValueError(f"baseline {baseline!r} needs group_size >= 2 samples per problem, got {group_size}.")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} episodes do not split into groups of {group_size}.")
    g = scores.view(-1, group_size)
    mean = g.mean(1, keepdim=True)
    if baseline == "rloo":
        return (g - (g.sum(1, keepdim=True) - g) / (group_size - 1)).view(-1)
    return ((g - mean) / (g.std(1, keepdim=True) + eps)).view(-1)


class MovingAverageBaseline:
    """``b <- d * b + (1 - d) * mean(s)``, started at the first batch's mean."""

    def __init__(self, decay: float) -> None:
        self.decay, self.value = decay, None

    def advantages(self, scores: torch.Tensor, dist: Dist | None = None) -> torch.Tensor:
        """``s - b``, then ``b`` moves towards the batch mean (over every rank's episodes)."""
        mean = float(global_mean(scores, dist or Dist()))
        if self.value is None:
            self.value = mean
        adv = scores - self.value
        self.value = self.decay * self.value + (1 - self.decay) * mean
        return adv

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = state["value"]


def reinforce_update(
    model: torch.nn.Module,
    ref: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: ReinforceConfig,
    moving_average: MovingAverageBaseline | None = None,
    generator: torch.Generator | None = None,
    ptx_batch: dict[str, torch.Tensor] | None = None,
    precision: Precision | None = None,
    dist: Dist | None = None,
) -> dict[str, float]:
    """One REINFORCE update (``cfg.iterations`` passes) on a rollout; returns metrics.

    ``ptx_batch`` (pre-training rows, see :func:`agents.learners.pretrain.replay_batches`) adds
    ``cfg.ptx_coef`` times its NLL to every pass's loss.

    Data parallel (``dist``): ``rollout`` is this rank's whole groups and ``model`` is wrapped in DDP.
    Every pass accumulates the gradient of the whole batch before its one optimizer step, so the
    result does not depend on how the batch is split into minibatches or ranks: each rank's loss is
    its tokens' sum over the *global* token count, times the world size (DDP averages).
    """
    precision = precision or Precision()
    dist = dist or Dist()
    if cfg.baseline not in BASELINES:
        raise ValueError(f"unknown baseline {cfg.baseline!r}; choose one of {BASELINES}.")
    mask = rollout.action_mask.float()  # the policy's tokens (not a multi-turn env's)
    T = rollout.tokens.shape[1]
    old_logp = rollout.logprobs
    use_kl = cfg.kl_coef > 0 and ref is not None
    ref_logp = None
    n, K = rollout.tokens.shape[0], rollout.group_size
    if use_kl:
        with torch.no_grad(), precision.autocast():
            ref_logp = policy_logprobs(ref, rollout, torch.arange(n, device=mask.device), cfg.temperature)[0]

    # --- scores and advantages (one per episode) ---
    scores = rollout.returns.float()
    kl_seq = ((old_logp - ref_logp) * mask).sum(1) if ref_logp is not None else torch.zeros_like(scores)
    if use_kl and cfg.kl_in == "reward":
        scores = scores - cfg.kl_coef * kl_seq
    if cfg.baseline == "moving_average":
        assert moving_average is not None, "pass a MovingAverageBaseline for baseline='moving_average'"
        adv = moving_average.advantages(scores, dist)
    else:
        adv = group_advantages(scores, rollout.group_size, cfg.baseline, cfg.grpo_eps)
    adv_tok = adv[:, None] * mask

    # minibatches of whole groups, so each group's shared prompt is run once (see policy_logprobs)
    mb_size = max(K, n // cfg.num_minibatches // K * K)
    total_tokens = dist.sum_(mask.sum()).clamp(min=1) / dist.world_size  # DDP averages the ranks' gradients
    stats: dict[str, list[float]] = {k: [] for k in ("pg", "kl_loss", "entropy", "clipfrac")}
    first_ratio_error = None
    model.train()
    for _ in range(cfg.iterations):
        groups = torch.randperm(n // K, generator=generator, device=generator.device if generator else "cpu")
        order = (groups[:, None] * K + torch.arange(K, device=groups.device)).reshape(-1).to(mask.device)
        optimizer.zero_grad(set_to_none=True)
        starts = list(range(0, n, mb_size))
        ptx_last = ptx_batch is not None and cfg.ptx_coef > 0
        for start in starts:
            rows = order[start : start + mb_size]
            last = start == starts[-1] and not ptx_last  # gradients are all-reduced on the last backward only
            with dist.no_sync(model, skip=not last), precision.autocast():
                logp, entropy = policy_logprobs(model, rollout, rows, cfg.temperature)
            m, a = mask[rows], adv_tok[rows]
            ratio = (logp - old_logp[rows]).clamp(-20, 20).exp()
            if first_ratio_error is None:
                first_ratio_error = float(((ratio.detach() - 1).abs() * m).max())
            per_token = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * a)
            kl_term = torch.zeros_like(per_token)
            if use_kl and cfg.kl_in == "loss":  # k3 = exp(u) - 1 - u, u = log pi_ref - log pi (>= 0)
                u = (ref_logp[rows] - logp).clamp(-20, 20)
                kl_term = u.exp() - 1 - u
            # token-level aggregation over the whole batch (no length bias between episodes)
            loss = ((per_token + cfg.kl_coef * kl_term) * m).sum() / total_tokens
            if not torch.isfinite(loss):
                raise FloatingPointError(f"REINFORCE loss became {loss.item()}; lower agent.lr.")
            with dist.no_sync(model, skip=not last):
                precision.backward(loss)
            with torch.no_grad():
                stats["pg"].append(float((per_token * m).sum() / total_tokens))
                stats["kl_loss"].append(float((kl_term * m).sum() / m.sum().clamp(min=1)))
                stats["entropy"].append(float(masked_mean(entropy, m)))
                stats["clipfrac"].append(float(masked_mean(((ratio - 1).abs() > cfg.clip_eps).float(), m)))
        if ptx_last:  # every rank draws the same rows: DDP's average is their gradient
            with precision.autocast():
                ptx = nll(model, ptx_batch)
            if not torch.isfinite(ptx):
                raise FloatingPointError(f"pre-training mix loss became {ptx.item()}; lower agent.lr.")
            precision.backward(cfg.ptx_coef * ptx)
            stats.setdefault("ptx_nll", []).append(ptx.item())
        precision.step(optimizer, model.parameters(), cfg.max_grad_norm, "the REINFORCE gradient")
    model.eval()
    out = {f"reinforce/{k}": sum(v) / len(v) for k, v in stats.items()}
    if dist.distributed:  # per-minibatch means of each rank, averaged over ranks
        out = {k: v / dist.world_size for k, v in dist.sum_floats(out).items()}
    out.update(
        {
            "reinforce/kl_ref": float(global_mean(kl_seq, dist)),
            "reinforce/adv_abs_mean": float(global_mean(adv.abs(), dist)),
            "reinforce/first_ratio_max_error": first_ratio_error or 0.0,
            "reinforce/zero_adv_fraction": float(global_mean((adv.abs() < 1e-8).float(), dist)),
            "reinforce/T": float(T),
        }
    )
    return out


class ReinforceLearner:
    """REINFORCE / RLOO / GRPO as a :class:`~agents.learners.base.Learner`: collect one rollout, one update."""

    def __init__(self, cfg: ReinforceConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        if cfg.baseline not in BASELINES:
            raise ValueError(f"unknown agent.baseline {cfg.baseline!r}; choose one of {BASELINES}.")
        self.cfg, self.ctx = cfg, ctx
        self.policy = Policy(lm, critic="none")  # checkpoints hold "lm.*", as every learner's
        self.lm = ctx.dist.wrap(lm)  # DDP under torchrun: its forward hooks all-reduce the gradients
        self.venv = make_train_venv(cfg, ctx)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, eps=1e-5)
        self.moving_average = MovingAverageBaseline(cfg.ema_decay) if cfg.baseline == "moving_average" else None
        self.ptx = pretraining_mix(cfg, ctx)

    def uses_reference(self) -> bool:
        return self.cfg.kl_coef > 0

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        t0 = time.time()
        generator = self.ctx.generator(it)  # samples the rollout, then shuffles its minibatches
        rollout, t_rollout = collect_iteration(self.policy.lm, self.venv, self.cfg, self.ctx, it, generator)
        metrics = reinforce_update(
            self.lm,
            ref,
            self.optimizer,
            rollout,
            self.cfg,
            self.moving_average,
            generator=generator,
            ptx_batch=self.ptx.batch(it) if self.ptx is not None else None,
            precision=self.ctx.precision,
            dist=self.ctx.dist,
        )
        metrics.update(rollout_metrics(rollout, t_rollout, self.venv.episodes.reward, self.ctx.dist))
        metrics.update(curriculum_metrics(self.venv))
        metrics["time/iteration_s"] = time.time() - t0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.moving_average is not None:
            state["baseline"] = self.moving_average.state_dict()
        return {**state, **curriculum_state(self.venv)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.moving_average is not None and "baseline" in state:
            self.moving_average.load_state_dict(state["baseline"])
        load_curriculum_state(self.venv, state)
