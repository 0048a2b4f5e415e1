"""PPO for language models, RLHF-style (Ziegler et al. 2019; Ouyang et al. 2022), in one file.

Reads top to bottom:

1. The rollout (``agents.policy.sampling.collect``) gives, per episode, the generated tokens ``a_t``, their
   sampling log-probs ``log pi_old(a_t)`` and the env's reward on each token (process rewards where
   steps close, the outcome on the last token). Given the shared critic's value head, it also records
   the old values ``V(s_t)`` from the same forwards (CleanRL's way: no extra pass for them).
2. One no-grad pass gives the reference log-probs ``log pi_ref(a_t)`` and any values ``V(s_t)`` the
   rollout lacks (a separate critic's). At ``kl_coef = 0`` with no ``kl_target`` the KL term below is 0
   whatever the reference says, so its forward is skipped (``log pi_ref := log pi_old``) and the run
   builds no reference model; with a shared critic there is then no pass at all.
3. Per-token reward: ``r_t = env_t - beta * (log pi_old(a_t) - log pi_ref(a_t))`` (KL in reward, k1).
4. GAE: ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``, ``A_t = delta_t + gamma lambda A_{t+1}``,
   ``V(s_{T}) = 0`` after the last token; returns ``R_t = A_t + V(s_t)``; advantages whitened over
   the batch's tokens.
5. Several epochs of minibatches: clipped surrogate ``max(-A rho, -A clip(rho, 1 - eps, 1 + eps))``
   with ``rho = pi / pi_old``, clipped value loss, ``loss = pg + vf_coef * vf - ent_coef * H``,
   gradient clipping.
6. Adaptive KL controller (Ziegler et al.): ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon``.

PPO needs no groups, but sampling ``K = group_size > 1`` completions per prompt makes it cheaper:
``K`` consecutive episodes then share a prompt, every forward of steps 2 and 5 runs each group's
prompt once and repeats its KV cache for the group's completions
(:func:`agents.policy.sampling.response_outputs`), and minibatches are whole groups. The numbers are the
same as a full forward per episode (up to float rounding; tested).

Defaults follow TRL's PPO (clip 0.2, value clip 0.2, vf_coef 0.1, gamma 1, lambda 0.95, 4 epochs,
kl_coef 0.05) except the learning rate, which suits a tiny model trained from scratch.
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
from agents.learners.reinforce import kl_estimate
from agents.learners.sft import nll
from agents.policy.actor_critic import Policy
from agents.policy.precision import Precision
from agents.policy.sampling import Rollout
from agents.policy.scoring import policy_logprobs
from agents.run.distributed import Dist


@dataclass
class PPOConfig:
    """PPO hyper-parameters (symbols as in the papers)."""

    learner: ClassVar[str] = "PPOLearner"
    name: str = "ppo"
    lr: float = 2e-5  # Adam learning rate
    num_envs: int = 64  # episodes per rollout
    group_size: int = 1  # episodes per problem (PPO needs no groups; K > 1 runs each shared prompt once)
    ppo_epochs: int = 4  # passes over each rollout
    num_minibatches: int = 4  # minibatches per pass, one Adam step each (unlike REINFORCE's accumulation chunks)
    clip_eps: float = 0.2  # policy ratio clip epsilon
    vf_clip: float = 0.2  # value clip range around the old values
    vf_coef: float = 0.1  # weight of the value loss (shared backbone)
    ent_coef: float = 0.0  # entropy bonus
    gamma: float = 1.0  # discount
    gae_lambda: float = 0.95  # GAE lambda
    kl_coef: float = 0.05  # initial beta of the per-token KL penalty
    kl_target: float | None = None  # set to adapt beta towards this KL per episode (Ziegler et al.)
    kl_horizon: int = 10000  # adaptive controller horizon (in episodes)
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    temperature: float = 1.0  # sampling temperature (the loss uses the same)
    critic: str = "shared"  # "shared" value head on the policy backbone, or "separate" backbone
    # Adam lr of the critic's own weights (the value head, and the separate backbone); None: lr. A fresh
    # zero-initialised head at the actor's small lr can stay near a constant for many updates (OpenRLHF and
    # veRL give the critic its own, larger lr).
    value_lr: float | None = None
    ptx_coef: float = 0.0  # gamma of InstructGPT's pre-training mix (PPO-ptx; 0: off)
    ptx_rows: int = 8  # rows of pre-training documents per update
    ptx_block_size: int = 64  # tokens per row
    # --- the REINFORCE learner's switches, where they apply to PPO (defaults: today's PPO)
    clip_eps_low: float | None = None  # DAPO's clip-higher (Yu et al. 2025): lower clip 1 - eps_low (None: clip_eps)
    clip_eps_high: float | None = None  # upper clip 1 + eps_high (None: clip_eps)
    kl_in: str = "reward"  # "reward" (per token, before GAE; RLHF's) or "loss" (beta * KL per token in the loss)
    kl_estimator: str | None = None  # k1 | k2 | k3 (None: k1 in the reward, k3 in the loss); see reinforce.py

    def check(self) -> None:
        """Refuse values and combinations that cannot work, naming the keys (called by ``validate``)."""
        from agents.learners.reinforce import KL_ESTIMATORS, KL_PLACEMENTS

        if self.kl_in not in KL_PLACEMENTS:
            raise ValueError(f"unknown agent.kl_in {self.kl_in!r}; choose one of {list(KL_PLACEMENTS)}.")
        if self.kl_estimator is not None and self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"unknown agent.kl_estimator {self.kl_estimator!r}; choose one of {list(KL_ESTIMATORS)} (or null)."
            )
        for key in ("clip_eps_low", "clip_eps_high"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"agent.{key} must be > 0 (or null for agent.clip_eps), got {value!r}.")
        if self.clip_eps_low is not None and self.clip_eps_low > 1:
            raise ValueError(
                f"agent.clip_eps_low must be <= 1 (the lower clip is 1 - eps_low; 1: none), got {self.clip_eps_low}."
            )
        if self.kl_in == "loss" and self.kl_target is not None:
            raise ValueError("agent.kl_target adapts the KL in the reward; it needs agent.kl_in=reward.")


def optimizer_groups(policy: Policy, cfg: PPOConfig) -> list[dict[str, Any]]:
    """Adam parameter groups: the actor's weights at ``cfg.lr``, the critic's own at ``cfg.value_lr``.

    One group when ``value_lr`` is unset. The critic's own weights are the value head and, with
    ``critic="separate"``, its backbone; a shared backbone belongs to the actor group.
    """
    if cfg.value_lr is None:
        return [{"params": list(policy.parameters())}]
    if not cfg.value_lr > 0:
        raise ValueError(f"agent.value_lr must be > 0 (or null for agent.lr), got {cfg.value_lr!r}.")
    if policy.value_head is None:
        raise ValueError("agent.value_lr needs a critic; set agent.critic=shared or separate, or drop value_lr.")
    critic = list(policy.value_head.parameters())
    if policy.critic_lm is not None:
        critic += list(policy.critic_lm.parameters())
    ids = {id(p) for p in critic}
    actor = [p for p in policy.parameters() if id(p) not in ids]
    return [{"params": actor}, {"params": critic, "lr": cfg.value_lr}]


class KLController:
    """Fixed (``target=None``) or adaptive KL coefficient ``beta``."""

    def __init__(self, beta: float, target: float | None, horizon: int) -> None:
        self.beta, self.target, self.horizon = float(beta), target, horizon

    @property
    def needs_reference(self) -> bool:
        """Whether the reference model matters: a non-zero ``beta``, or a target (adapting measures the KL)."""
        return self.beta != 0 or self.target is not None

    def update(self, kl: float, n_episodes: int) -> None:
        """Move ``beta`` towards the target KL (no-op for a fixed controller)."""
        if self.target is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_episodes / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, dist: Dist | None = None) -> torch.Tensor:
    """Zero-mean, unit-variance over the masked entries of every rank (masked entries are left at 0)."""
    dist = dist or Dist()
    mean = global_mean(x, dist, mask)
    var = global_mean((x - mean) ** 2, dist, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each row's valid tokens; the value after the last valid token is 0.

    Args:
        rewards: ``(N, T)`` per-token rewards.
        values: ``(N, T)`` ``V(s_t)``, the value before emitting token ``t``.
        mask: ``(N, T)`` 1 on the policy's tokens: a prefix of each row, or with a multi-turn env's
            tokens in between (masked out: the recursion skips them, so the value and advantage of a
            turn's last token bootstrap from the next turn's first policy token).
        gamma: Discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, zero on invalid tokens.
    """
    mask = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        valid = m.bool()
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # on a masked token (the tail after the episode, or an env token) carry the recursion through
        last = torch.where(valid, delta + gamma * lam * last, last)
        advantages[:, t] = last * m
        next_value = torch.where(valid, values[:, t], next_value)  # after the episode's end V = 0
    return advantages, (advantages + values) * mask


def policy_outputs(
    policy: torch.nn.Module, rollout: Rollout, rows: torch.Tensor, temperature: float, actor: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """``(log pi(a_t), entropy, V(s_t))`` for the generated tokens of ``rows`` (``actor=False``: values only).

    ``policy`` is a :class:`~agents.policy.actor_critic.Policy` with a critic, or the DDP wrapper of one
    (whose forward hooks all-reduce the gradients).
    """
    return policy(rollout, rows, temperature=temperature, actor=actor)


@torch.no_grad()
def score_rollout(
    policy: Policy | None, ref: torch.nn.Module | None, rollout: Rollout, temperature: float, chunk: int = 64
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Reference log-probs (``None`` without ``ref``) and values (``None`` without ``policy``), no grad.

    In chunks of about ``chunk`` rows, whole groups each, so grouped prompts are run once.
    """
    if policy is None and ref is None:
        return None, None
    n, K = rollout.tokens.shape[0], rollout.group_size
    step = max(K, chunk // K * K)
    ref_logp, values = [], []
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=rollout.tokens.device)
        if ref is not None:
            ref_logp.append(policy_logprobs(ref, rollout, rows, temperature)[0])
        if policy is not None:
            values.append(policy_outputs(policy, rollout, rows, temperature, actor=False)[2])
    return (torch.cat(ref_logp) if ref_logp else None), (torch.cat(values) if values else None)


def ppo_update(
    policy: Policy,
    ref: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOConfig,
    kl_ctl: KLController,
    generator: torch.Generator | None = None,
    ptx_batch: dict[str, torch.Tensor] | None = None,
    precision: Precision | None = None,
    dist: Dist | None = None,
    ddp: torch.nn.Module | None = None,
) -> dict[str, float]:
    """One PPO update on a rollout; returns the metrics to log.

    Data parallel (``dist``): ``rollout`` is this rank's whole groups and ``ddp`` wraps ``policy`` in
    DDP. Advantages are whitened over every rank's tokens, each minibatch's loss is its tokens' sum over
    the minibatch's *global* token count times the world size (DDP averages), so with one minibatch the
    update is the one-process update of the whole batch; with several, each step sees every rank's share.

    ``ptx_batch`` (pre-training rows, see :func:`agents.learners.pretrain.replay_batches`) adds
    ``cfg.ptx_coef`` times its NLL to every minibatch's loss (InstructGPT's PPO-ptx).

    ``ref`` may be ``None`` when the KL cannot matter (``kl_ctl.beta == 0``, no target). With a shared
    critic, a rollout's ``values`` are taken as the old values: collect it with this policy's value head.
    """
    precision, dist = precision or Precision(), dist or Dist()
    train = ddp if ddp is not None else policy  # the forward whose backward is all-reduced
    mask = rollout.action_mask.float()  # the policy's tokens (not a multi-turn env's)
    n, K = rollout.tokens.shape[0], rollout.group_size
    if n % K:
        raise ValueError(f"{n} episodes do not split into groups of {K}.")
    old_logp = rollout.logprobs
    # --- old values (recorded while sampling, for a shared critic) and reference log-probs ---
    # a fixed beta of 0 zeroes the KL term whatever pi_ref says: skip the reference forward then
    if kl_ctl.needs_reference and ref is None:
        raise ValueError("PPO with a KL penalty (kl_coef != 0 or a kl_target) needs a reference model.")
    recorded = rollout.values if policy.critic == "shared" else None
    with precision.autocast():
        ref_logp, old_values = score_rollout(
            policy if recorded is None else None, ref if kl_ctl.needs_reference else None, rollout, cfg.temperature
        )
    ref_logp = old_logp if ref_logp is None else ref_logp  # no reference: KL 0
    old_values = recorded if old_values is None else old_values

    # --- rewards: env reward on its token, minus beta * KL(pi_old || pi_ref) on every token (k1) ---
    kl = (old_logp - ref_logp) * mask
    if cfg.kl_in == "loss":  # the KL goes into the loss below instead
        rewards = rollout.rewards.float()
    elif cfg.kl_estimator in (None, "k1"):
        rewards = rollout.rewards.float() - kl_ctl.beta * kl
    else:
        rewards = rollout.rewards.float() - kl_ctl.beta * kl_estimate(old_logp, ref_logp, cfg.kl_estimator) * mask
    advantages, returns = compute_gae(rewards, old_values, mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        advantages = whiten(advantages, mask, dist=dist)

    # minibatches of whole groups, so each group's shared prompt is run once (K = 1: single rows)
    mb_size = max(K, n // cfg.num_minibatches // K * K)
    stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "entropy", "approx_kl", "clipfrac", "ratio")}
    first_ratio_error = None
    gap = {"sum": 0.0, "n": 0.0, "kl": 0.0, "max": 0.0}
    low = cfg.clip_eps if cfg.clip_eps_low is None else cfg.clip_eps_low
    high = cfg.clip_eps if cfg.clip_eps_high is None else cfg.clip_eps_high
    policy.train()
    for _epoch in range(cfg.ppo_epochs):
        groups = torch.randperm(n // K, generator=generator, device=generator.device if generator else "cpu")
        order = (groups[:, None] * K + torch.arange(K, device=groups.device)).reshape(-1).to(mask.device)
        for start in range(0, n, mb_size):
            rows = order[start : start + mb_size]
            with precision.autocast():
                logp, entropy, values = policy_outputs(train, rollout, rows, cfg.temperature)
            m, adv = mask[rows], advantages[rows]
            # this minibatch's token count over every rank, per rank (DDP averages the ranks' gradients)
            count = dist.sum_(m.sum()).clamp(min=1) / dist.world_size

            def mean(x: torch.Tensor, m: torch.Tensor = m, count: torch.Tensor = count) -> torch.Tensor:
                return (x * m).sum() / count

            # --- clipped surrogate objective ---
            log_ratio = (logp - old_logp[rows]).clamp(-20, 20)
            ratio = log_ratio.exp()
            pg = mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - low, 1 + high)))
            if first_ratio_error is None:  # sampling and training compute the same log-probs
                first_ratio_error = float(((ratio.detach() - 1).abs() * m).max())
                with torch.no_grad():  # the first minibatch runs at the sampler's weights: the sampler-learner gap
                    d = log_ratio.detach().abs() * m
                    gap = dist.sum_floats(
                        {"sum": float(d.sum()), "n": float(m.sum()), "kl": float(((ratio - 1 - log_ratio) * m).sum())}
                    )
                    gap["max"] = max(dist.gather_objects(float(d.max()) if d.numel() else 0.0))

            # --- clipped value loss ---
            v_old = old_values[rows]
            v_clipped = v_old + (values - v_old).clamp(-cfg.vf_clip, cfg.vf_clip)
            vf = 0.5 * mean(torch.max((values - returns[rows]) ** 2, (v_clipped - returns[rows]) ** 2))

            ent = mean(entropy)
            loss = pg + cfg.vf_coef * vf - cfg.ent_coef * ent
            if cfg.kl_in == "loss" and kl_ctl.beta != 0:  # GRPO-style KL term on the current log-probs
                kl_loss = mean(kl_estimate(logp, ref_logp[rows], cfg.kl_estimator or "k3"))
                loss = loss + kl_ctl.beta * kl_loss
                stats.setdefault("kl_loss", []).append(kl_loss.item())
            if ptx_batch is not None and cfg.ptx_coef > 0:  # PPO-ptx: keep the pre-training distribution
                with precision.autocast():  # the same rows on every rank: their gradient needs no all-reduce
                    ptx = nll(policy.lm, ptx_batch)
                loss = loss + cfg.ptx_coef * ptx
                stats.setdefault("ptx_nll", []).append(ptx.item())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"PPO loss became {loss.item()}; lower agent.lr or raise agent.kl_coef.")
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(optimizer, policy.parameters(), cfg.max_grad_norm, "the PPO gradient")

            with torch.no_grad():
                stats["pg"].append(pg.item())
                stats["vf"].append(vf.item())
                stats["entropy"].append(ent.item())
                stats["approx_kl"].append(masked_mean(0.5 * log_ratio**2, m).item())
                stats["clipfrac"].append(masked_mean(((ratio < 1 - low) | (ratio > 1 + high)).float(), m).item())
                stats["ratio"].append(masked_mean(ratio, m).item())
    policy.eval()

    kl_per_episode = float(global_mean(kl.sum(1), dist))
    kl_ctl.update(kl_per_episode, n * dist.world_size)
    explained = explained_variance(returns, old_values, mask, dist)
    out = {f"ppo/{k}": sum(v) / len(v) for k, v in stats.items()}
    if dist.distributed:  # per-minibatch figures of each rank, averaged over ranks
        out = {k: v / dist.world_size for k, v in dist.sum_floats(out).items()}
    out.update(
        {
            "ppo/kl_ref": kl_per_episode,
            "ppo/beta": kl_ctl.beta,
            "ppo/explained_variance": explained,
            "ppo/first_ratio_max_error": first_ratio_error or 0.0,
            "ppo/value_mean": float(global_mean(old_values, dist, mask)),
            # over the first minibatch (the only one at the sampler's weights)
            "offpolicy/logp_abs_diff_max": gap["max"],
            "offpolicy/logp_abs_diff_mean": gap["sum"] / max(gap["n"], 1.0),
            "offpolicy/mismatch_kl": gap["kl"] / max(gap["n"], 1.0),
        }
    )
    return out


def explained_variance(returns: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, dist: Dist) -> float:
    """``1 - Var(R - V) / Var(R)`` over the valid tokens of every rank (0 when ``Var(R)`` is 0)."""
    valid = mask.bool()
    r, e = returns[valid].double(), (returns[valid] - values[valid]).double()
    if not dist.distributed:
        var_r = r.var()
        return float(1 - e.var() / var_r) if var_r > 0 else 0.0
    s = dist.sum_(torch.stack([r.new_tensor(len(r)), r.sum(), (r**2).sum(), e.sum(), (e**2).sum()]))
    n = s[0].clamp(min=2)
    var_r = (s[2] - s[1] ** 2 / n) / (n - 1)
    var_e = (s[4] - s[3] ** 2 / n) / (n - 1)
    return float(1 - var_e / var_r) if var_r > 0 else 0.0


class PPOLearner:
    """PPO as a :class:`~agents.learners.base.Learner`: one rollout, then ``ppo_epochs`` passes of minibatches.

    The rollout records the shared critic's old values; the KL controller (and a curriculum) is its state.
    """

    def __init__(self, cfg: PPOConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.policy = Policy(lm, critic=cfg.critic).to(ctx.device)
        if self.policy.value_head is None:
            raise ValueError("PPO needs a critic; set agent.critic=shared or separate.")
        self.ddp = ctx.dist.wrap(self.policy) if ctx.dist.distributed else None
        self.venv = make_train_venv(cfg, ctx)
        self.optimizer = torch.optim.Adam(optimizer_groups(self.policy, cfg), lr=cfg.lr, eps=1e-5)
        self.kl_ctl = KLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        self.ptx = pretraining_mix(cfg, ctx)

    def uses_reference(self) -> bool:
        # a resumed run continues with its saved beta, whatever kl_coef says
        return self.kl_ctl.needs_reference

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        t0 = time.time()
        generator = self.ctx.generator(it)  # samples the rollout, then shuffles its minibatches
        shared = self.policy.value_head if self.policy.critic == "shared" else None  # PPO's old values
        rollout, t_rollout = collect_iteration(self.policy.lm, self.venv, self.cfg, self.ctx, it, generator, shared)
        metrics = ppo_update(
            self.policy,
            ref,
            self.optimizer,
            rollout,
            self.cfg,
            self.kl_ctl,
            generator=generator,
            ptx_batch=self.ptx.batch(it) if self.ptx is not None else None,
            precision=self.ctx.precision,
            dist=self.ctx.dist,
            ddp=self.ddp,
        )
        metrics.update(rollout_metrics(rollout, t_rollout, self.venv.episodes.reward, self.ctx.dist))
        metrics.update(curriculum_metrics(self.venv))
        metrics["time/iteration_s"] = time.time() - t0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"kl_ctl": self.kl_ctl.state_dict()}
        return {**state, **curriculum_state(self.venv)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "kl_ctl" in state:
            self.kl_ctl.load_state_dict(state["kl_ctl"])
        load_curriculum_state(self.venv, state)
