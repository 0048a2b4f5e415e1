"""PPO for language models, RLHF-style (Ziegler et al. 2019; Ouyang et al. 2022), in one file.

Reads top to bottom:

1. The rollout (``agents.rollout.collect``) gives, per episode, the generated tokens ``a_t``, their
   sampling log-probs ``log pi_old(a_t)`` and the env's reward on each token (process rewards where
   steps close, the outcome on the last token).
2. One no-grad pass gives the reference log-probs ``log pi_ref(a_t)`` and the values ``V(s_t)``.
3. Per-token reward: ``r_t = env_t - beta * (log pi_old(a_t) - log pi_ref(a_t))`` (KL in reward, k1).
4. GAE: ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``, ``A_t = delta_t + gamma lambda A_{t+1}``,
   ``V(s_{T}) = 0`` after the last token; returns ``R_t = A_t + V(s_t)``; advantages whitened over
   the batch's tokens.
5. Several epochs of minibatches: clipped surrogate ``max(-A rho, -A clip(rho, 1 - eps, 1 + eps))``
   with ``rho = pi / pi_old``, clipped value loss, ``loss = pg + vf_coef * vf - ent_coef * H``,
   gradient clipping.
6. Adaptive KL controller (Ziegler et al.): ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon``.

Defaults follow TRL's PPO (clip 0.2, value clip 0.2, vf_coef 0.1, gamma 1, lambda 0.95, 4 epochs,
kl_coef 0.05) except the learning rate, which suits a tiny model trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents.models import Policy, positions
from agents.rollout import Rollout, response_logprobs, sequence_inputs


@dataclass
class PPOConfig:
    """PPO hyper-parameters (symbols as in the papers)."""

    name: str = "ppo"
    lr: float = 2e-5  # Adam learning rate
    num_envs: int = 64  # episodes per rollout
    group_size: int = 1  # episodes per problem (PPO needs no groups)
    ppo_epochs: int = 4  # passes over each rollout
    num_minibatches: int = 4  # minibatches per pass
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


class KLController:
    """Fixed (``target=None``) or adaptive KL coefficient ``beta``."""

    def __init__(self, beta: float, target: float | None, horizon: int) -> None:
        self.beta, self.target, self.horizon = float(beta), target, horizon

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


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-variance over the masked entries (masked entries are left at 0)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each row's valid tokens; the value after the last valid token is 0.

    Args:
        rewards: ``(N, T)`` per-token rewards.
        values: ``(N, T)`` ``V(s_t)``, the value before emitting token ``t``.
        mask: ``(N, T)`` 1 on valid tokens (a prefix of each row).
        gamma: Discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, zero on invalid tokens.
    """
    mask = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    next_value = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m
        advantages[:, t] = last
        next_value = values[:, t] * m  # invalid tail tokens contribute V = 0
    return advantages, (advantages + values) * mask


@torch.no_grad()
def score_rollout(policy: Policy, ref: torch.nn.Module, rollout: Rollout, temperature: float, chunk: int = 64):
    """Reference log-probs and values for every generated token (no grad), in chunks of rows."""
    P = rollout.prompt_ids.shape[1]
    ref_logp, values = [], []
    for start in range(0, rollout.tokens.shape[0], chunk):
        rows = slice(start, start + chunk)
        ids, att = sequence_inputs(rollout, rows)
        ref_logits = ref(input_ids=ids, attention_mask=att, position_ids=positions(att)).logits
        ref_logp.append(response_logprobs(ref_logits, rollout.tokens[rows], P, temperature)[0])
        _, v = policy(ids, att)
        values.append(v[:, P - 1 : P - 1 + rollout.tokens.shape[1]].float())
    return torch.cat(ref_logp), torch.cat(values)


def ppo_update(
    policy: Policy,
    ref: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOConfig,
    kl_ctl: KLController,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One PPO update on a rollout; returns the metrics to log."""
    mask = rollout.mask.float()
    P = rollout.prompt_ids.shape[1]
    old_logp = rollout.logprobs
    ref_logp, old_values = score_rollout(policy, ref, rollout, cfg.temperature)

    # --- rewards: env reward on its token, minus beta * KL(pi_old || pi_ref) on every token (k1) ---
    kl = (old_logp - ref_logp) * mask
    rewards = rollout.rewards.float() - kl_ctl.beta * kl
    advantages, returns = compute_gae(rewards, old_values, mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        advantages = whiten(advantages, mask)

    n = rollout.tokens.shape[0]
    mb_size = max(1, n // cfg.num_minibatches)
    stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "entropy", "approx_kl", "clipfrac", "ratio")}
    first_ratio_error = None
    policy.train()
    for _epoch in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, mb_size):
            rows = order[start : start + mb_size]
            ids, att = sequence_inputs(rollout, rows)
            logits, values = policy(ids, att)
            logp, entropy = response_logprobs(logits, rollout.tokens[rows], P, cfg.temperature)
            values = values[:, P - 1 : P - 1 + rollout.tokens.shape[1]].float()
            m, adv = mask[rows], advantages[rows]

            # --- clipped surrogate objective ---
            log_ratio = (logp - old_logp[rows]).clamp(-20, 20)
            ratio = log_ratio.exp()
            pg = masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)), m)
            if first_ratio_error is None:  # sampling and training compute the same log-probs
                first_ratio_error = float(((ratio.detach() - 1).abs() * m).max())

            # --- clipped value loss ---
            v_old = old_values[rows]
            v_clipped = v_old + (values - v_old).clamp(-cfg.vf_clip, cfg.vf_clip)
            vf = 0.5 * masked_mean(torch.max((values - returns[rows]) ** 2, (v_clipped - returns[rows]) ** 2), m)

            ent = masked_mean(entropy, m)
            loss = pg + cfg.vf_coef * vf - cfg.ent_coef * ent
            if not torch.isfinite(loss):
                raise FloatingPointError(f"PPO loss became {loss.item()}; lower agent.lr or raise agent.kl_coef.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError("PPO gradient became non-finite; lower agent.lr.")
            optimizer.step()

            with torch.no_grad():
                stats["pg"].append(pg.item())
                stats["vf"].append(vf.item())
                stats["entropy"].append(ent.item())
                stats["approx_kl"].append(masked_mean(0.5 * log_ratio**2, m).item())
                stats["clipfrac"].append(masked_mean(((ratio - 1).abs() > cfg.clip_eps).float(), m).item())
                stats["ratio"].append(masked_mean(ratio, m).item())
    policy.eval()

    kl_per_episode = float(kl.sum(1).mean())
    kl_ctl.update(kl_per_episode, n)
    valid = mask.bool()
    var_r = returns[valid].var()
    explained = float(1 - (returns[valid] - old_values[valid]).var() / var_r) if var_r > 0 else 0.0
    out = {f"ppo/{k}": sum(v) / len(v) for k, v in stats.items()}
    out.update(
        {
            "ppo/kl_ref": kl_per_episode,
            "ppo/beta": kl_ctl.beta,
            "ppo/explained_variance": explained,
            "ppo/first_ratio_max_error": first_ratio_error or 0.0,
            "ppo/value_mean": float(masked_mean(old_values, mask)),
        }
    )
    return out
