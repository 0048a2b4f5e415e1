"""REINFORCE for language models with a choice of baseline, in one file: moving average, RLOO, GRPO.

Reads top to bottom:

1. A rollout of ``K = group_size`` episodes per problem (consecutive envs share the problem and the
   start state). The score of episode ``i`` is its return ``s_i`` (sum of env rewards: outcome plus
   any process rewards), optionally shaped by DAPO's overlong penalty (``overlong_buffer``).
   With ``dynamic_sampling`` (DAPO), groups whose scores are all equal are dropped and more groups
   are sampled to refill the batch.
2. Optional KL in the reward (``kl_in="reward"``): ``s_i <- s_i - beta * sum_t kl_t`` with the
   estimator ``kl_estimator`` (default k1, as TRL's RLOO), or per token with ``credit="token"``.
3. Advantage of every token of episode ``i``:

   * ``credit="episode"`` (default): one number per episode, broadcast to its tokens.
     ``moving_average``: ``A_i = s_i - b``, ``b <- d * b + (1 - d) * mean(s)`` (Williams 1992);
     ``rloo``: ``A_i = s_i - mean_{j != i} s_j`` over the group (Kool et al. 2019; Ahmadian et al. 2024);
     ``grpo``: ``A_i = (s_i - mean_j s_j) / (std_j s_j + eps)`` over the group (Shao et al. 2024),
     without the division when ``adv_std_norm=false`` (Dr. GRPO, Liu et al. 2025).
   * ``credit="token"``: each token's advantage is the sum of the (group-normalised) rewards paid
     at or after it (process supervision, DeepSeekMath §4.1.3), minus the per-token KL to go when
     the KL is in the reward (REINFORCE++, Hu 2025).
   * ``adv_whiten``: whiten the token advantages over the whole (global) batch (REINFORCE++).

4. Loss per token (``policy_loss``): PPO's clipped ratio ``-min(rho A, clip(rho, 1 - eps_low,
   1 + eps_high) A)`` (``clip``; DAPO's clip-higher when the two differ), GSPO's sequence-level ratio
   (``gspo``) or CISPO's clipped, detached weight times the log-prob (``cispo``); optionally times a
   truncated / masked importance weight between the learner and the sampler (``is_correction``);
   plus ``beta * KL`` per token when ``kl_in="loss"`` (GRPO: k3), minus ``entropy_coef * H``.
   Aggregated by ``loss_agg``: token mean over the batch (DAPO; default), sequence mean then batch
   mean (GRPO) or a constant normaliser (Dr. GRPO).
5. Optional pre-training mix (``ptx_coef = gamma``, InstructGPT's PPO-ptx, Ouyang et al. 2022): plus
   ``gamma`` times the mean next-token NLL of ``ptx_rows`` rows of the task's pre-training documents
   per update, so the policy keeps the facts RL never rewards directly. Without it, pushing down a
   hallucinated answer on an unknown question pushes down the same value where it is a known fact.

**Which KL settings give an unbiased gradient of KL(pi || pi_ref)** (Tang & Munos 2025, "On a few
pitfalls in KL divergence gradient estimation for RL", arXiv 2506.09477; on-policy, one pass):

================  ==================================================================================
``kl_in=reward``  k1: unbiased (score-function gradient of the sequence KL; per token with
                  ``credit="token"`` it is the lower-variance reward-to-go form). k2 / k3: biased
                  (their value estimates KL but ``E[k * grad log pi]`` is not its gradient).
``kl_in=loss``    k1: zero in expectation (``E[grad log pi] = 0``: no regularisation at all).
                  k2: the per-token ("partial") gradient: each token's own KL term, not the effect of
                  a token on the KL of the tokens after it. k3 (GRPO, default): the gradient of the
                  *forward* KL(pi_ref || pi) per token, i.e. biased for the reverse KL.
================  ==================================================================================
"""

from __future__ import annotations

import dataclasses
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
LOSS_AGGS = ("token_mean", "seq_mean", "constant")
POLICY_LOSSES = ("clip", "gspo", "cispo")
KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PLACEMENTS = ("loss", "reward")
CREDITS = ("episode", "token")
IS_CORRECTIONS = ("none", "tis", "mis")
IS_LEVELS = ("token", "sequence")


@dataclass
class ReinforceConfig:
    """REINFORCE hyper-parameters (symbols as in the papers).

    Every option below the first block defaults to today's behaviour (token-mean GRPO with PPO's
    symmetric clip, k3 KL in the loss or k1 KL in the reward, no entropy bonus, no IS correction).
    """

    learner: ClassVar[str] = "ReinforceLearner"
    name: str = "reinforce"
    baseline: str = "grpo"  # moving_average | rloo | grpo | none
    lr: float = 2e-5  # Adam learning rate
    num_envs: int = 64  # episodes per rollout
    group_size: int = 8  # K samples per problem (rloo/grpo need K >= 2)
    iterations: int = 1  # passes over each rollout, one Adam step each (GRPO's mu); > 1 makes the ratio clip matter
    num_minibatches: int = 1  # gradient-accumulation chunks per pass: bounds memory only, still one step per pass
    clip_eps: float = 0.2  # ratio clip epsilon
    kl_coef: float = 0.0  # beta
    kl_in: str = "loss"  # where the KL goes: "loss" (per token, GRPO) or "reward" (RLOO, REINFORCE++)
    ema_decay: float = 0.9  # moving-average baseline decay
    grpo_eps: float = 1e-4  # std epsilon of GRPO's normalisation
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    ptx_coef: float = 0.0  # gamma of the pre-training mix (0: off)
    ptx_rows: int = 8  # rows of pre-training documents per update
    ptx_block_size: int = 64  # tokens per row

    # --- loss aggregation (Dr. GRPO, Liu et al. 2025, arXiv 2503.20783; DAPO, Yu et al. 2025, arXiv 2503.14476)
    # token_mean: sum over every token of the batch / token count (DAPO; no length bias between episodes);
    # seq_mean: mean over each episode's tokens, then over episodes (original GRPO; favours short correct and
    # long wrong answers); constant: sum / (episodes * loss_norm_tokens) (Dr. GRPO).
    loss_agg: str = "token_mean"
    loss_norm_tokens: int | None = None  # the constant of loss_agg=constant (None: the env's max_new_tokens)
    adv_std_norm: bool = True  # grpo: divide by the group's reward std (false: Dr. GRPO's unbiased form)
    # --- DAPO (Yu et al. 2025): clip-higher, dynamic sampling, overlong reward shaping
    clip_eps_low: float | None = None  # lower clip 1 - eps_low (None: clip_eps)
    clip_eps_high: float | None = None  # upper clip 1 + eps_high (None: clip_eps; DAPO uses 0.28 with 0.2 low)
    dynamic_sampling: bool = False  # drop groups whose rewards are all equal and sample more to refill the batch
    dynamic_max_rollouts: int = 4  # at most this many extra rollouts of num_envs episodes per iteration
    overlong_buffer: int = 0  # L_cache: tokens before the max over which the length penalty ramps (0: off)
    overlong_penalty: float = 1.0  # the penalty at the max length (DAPO: 1)
    overlong_max_tokens: int | None = None  # L_max (None: the env's max_new_tokens)
    # --- the surrogate: clip (PPO/GRPO), gspo (Zheng et al. 2025, arXiv 2507.18071: sequence-level ratio
    # exp(mean_t log rho_t), needs loss_agg=seq_mean), cispo (MiniMax-M1, arXiv 2506.13585: -sg(clip(rho)) A log pi)
    policy_loss: str = "clip"
    # --- advantages: episode (one per episode) or token (reward-to-go of the normalised per-token rewards:
    # DeepSeekMath's process supervision, arXiv 2402.03300 §4.1.3; with kl_in=reward the per-token KL too)
    credit: str = "episode"
    adv_whiten: bool = False  # whiten token advantages over the global batch (REINFORCE++, Hu 2025, arXiv 2501.03262)
    # --- KL estimator (Schulman 2020): None keeps today's pairing, k3 in the loss and k1 in the reward
    kl_estimator: str | None = None  # k1 | k2 | k3; see the module docstring for which give unbiased gradients
    entropy_coef: float = 0.0  # entropy bonus: minus this times the aggregated per-token entropy
    # --- off-policy correction between the sampler's and the learner's log-probs (Yao et al. 2025, "Your
    # efficient RL framework secretly brings you off-policy RL training"; IcePop / MIS, Zheng et al. 2025):
    # tis multiplies the loss by min(pi_learner / pi_sampler, is_cap); mis zeroes it outside [is_low, is_cap]
    is_correction: str = "none"  # none | tis | mis
    is_level: str = "token"  # token | sequence (the product of the episode's ratios)
    is_cap: float = 2.0
    is_low: float = 0.0  # mis only

    def check(self) -> None:
        """Refuse values and combinations that cannot work, naming the keys (called by ``validate``)."""
        choices = {
            "baseline": BASELINES,
            "loss_agg": LOSS_AGGS,
            "policy_loss": POLICY_LOSSES,
            "kl_in": KL_PLACEMENTS,
            "credit": CREDITS,
            "is_correction": IS_CORRECTIONS,
            "is_level": IS_LEVELS,
        }
        for key, options in choices.items():
            if getattr(self, key) not in options:
                raise ValueError(f"unknown agent.{key} {getattr(self, key)!r}; choose one of {list(options)}.")
        if self.kl_estimator is not None and self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"unknown agent.kl_estimator {self.kl_estimator!r}; choose one of {list(KL_ESTIMATORS)} (or null)."
            )
        for key in ("clip_eps", "clip_eps_low", "clip_eps_high", "is_cap", "overlong_penalty", "grpo_eps"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"agent.{key} must be > 0, got {value!r}.")
        if self.clip_eps_low is not None and self.clip_eps_low > 1:
            raise ValueError(
                f"agent.clip_eps_low must be <= 1 (the lower clip is 1 - eps_low; 1: none), got {self.clip_eps_low}."
            )
        for key in ("kl_coef", "entropy_coef", "is_low", "overlong_buffer", "dynamic_max_rollouts"):
            if getattr(self, key) < 0:
                raise ValueError(f"agent.{key} must be >= 0, got {getattr(self, key)!r}.")
        for key in ("loss_norm_tokens", "overlong_max_tokens"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"agent.{key} must be >= 1 (or null for the env's max_new_tokens).")
        group = self.baseline in ("rloo", "grpo")
        if self.policy_loss == "gspo" and self.loss_agg != "seq_mean":
            raise ValueError(
                f"agent.policy_loss=gspo is a sequence-level objective; agent.loss_agg={self.loss_agg} is token-level. "
                "Set agent.loss_agg=seq_mean."
            )
        if self.dynamic_sampling and (not group or self.group_size < 2):
            raise ValueError(
                f"agent.dynamic_sampling drops groups whose rewards are all equal: it needs agent.group_size >= 2 "
                f"and agent.baseline rloo or grpo (got group_size={self.group_size}, baseline={self.baseline})."
            )
        if self.credit == "token" and self.baseline == "moving_average":
            raise ValueError("agent.credit=token supports agent.baseline rloo, grpo or none, not moving_average.")
        if not self.adv_std_norm and self.baseline != "grpo":
            raise ValueError(f"agent.adv_std_norm=false only applies to agent.baseline=grpo (got {self.baseline}).")
        if self.is_correction == "mis" and self.is_low >= self.is_cap:
            raise ValueError(f"agent.is_low ({self.is_low}) must be below agent.is_cap ({self.is_cap}) for mis.")
        if self.is_correction == "none" and (self.is_level != "token" or self.is_low != 0.0):
            raise ValueError("agent.is_level / agent.is_low set without agent.is_correction=tis or mis.")
        if self.overlong_max_tokens is not None and self.overlong_buffer == 0:
            raise ValueError("agent.overlong_max_tokens is set but agent.overlong_buffer=0 (off); set the buffer.")
        if self.loss_norm_tokens is not None and self.loss_agg != "constant":
            raise ValueError("agent.loss_norm_tokens only applies to agent.loss_agg=constant.")
        if self.kl_estimator is not None and self.kl_coef == 0:
            raise ValueError("agent.kl_estimator is set but agent.kl_coef=0 (no KL); set agent.kl_coef > 0.")

    @property
    def clip_low(self) -> float:
        return self.clip_eps if self.clip_eps_low is None else self.clip_eps_low

    @property
    def clip_high(self) -> float:
        return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (Schulman 2020, "Approximating KL divergence").

    k1 ``= log pi - log pi_ref``; k2 ``= (log pi - log pi_ref)^2 / 2``; k3 ``= exp(u) - 1 - u`` with
    ``u = log pi_ref - log pi`` (clamped to [-20, 20]; >= 0).

    Example:
        >>> kl_estimate(torch.tensor([0.0]), torch.tensor([-1.0]), "k2").tolist()
        [0.5]
    """
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if estimator == "k3":
        u = (ref_logp - logp).clamp(-20, 20)
        return u.exp() - 1 - u
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}.")


def group_advantages(
    scores: torch.Tensor, group_size: int, baseline: str, eps: float = 1e-4, std_norm: bool = True
) -> torch.Tensor:
    """Per-episode advantages with a group baseline (``rloo``, ``grpo``) or none.

    ``std_norm=False`` (grpo only) leaves out the division by the group's std (Dr. GRPO).

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
    if not std_norm:
        return (g - mean).view(-1)
    return ((g - mean) / (g.std(1, keepdim=True) + eps)).view(-1)


def reward_events(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N, T)`` True where the env paid a reward: every non-zero reward, and each episode's last policy token.

    The last token always counts (the outcome is paid there, even when it is 0). A process step paid
    exactly 0 leaves no trace in the per-token rewards, so it is not an event (it neither enters the
    group statistics nor shifts an advantage).
    """
    mask = mask.bool()
    events = (rewards != 0) & mask
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, idx, -1).max(1).values
    has = last >= 0
    events[has, last[has]] = True
    return events


def process_advantages(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    group_size: int,
    baseline: str,
    eps: float = 1e-4,
    std_norm: bool = True,
) -> torch.Tensor:
    """Token advantages from per-step rewards: the sum of the normalised rewards paid at or after each token.

    DeepSeekMath (Shao et al. 2024, §4.1.3, process supervision): the rewards of all steps of a
    group's episodes are normalised with the group's mean and std (``grpo``), then
    ``A_t = sum_{events j >= t} r~_j``. ``rloo`` subtracts from each reward the mean of the other
    episodes' rewards in the group (leave-one-out over their events); ``none`` keeps raw rewards
    (plain reward-to-go). Events are :func:`reward_events`.

    Example:
        >>> r = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.0, 0.0]])
        >>> process_advantages(r, torch.ones(2, 3), 2, "none").tolist()
        [[1.5, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    mask_f = mask.to(rewards.dtype)
    events = reward_events(rewards, mask)
    ev = events.to(rewards.dtype)
    r = rewards * ev
    if baseline in ("rloo", "grpo"):
        n, T = rewards.shape
        if n % group_size or group_size < 2:
            raise ValueError(f"{n} episodes do not split into groups of {group_size} >= 2.")
        rg, eg = r.view(-1, group_size, T), ev.view(-1, group_size, T)
        tot_r, tot_n = rg.sum((1, 2), keepdim=True), eg.sum((1, 2), keepdim=True)
        if baseline == "grpo":
            mean = tot_r / tot_n.clamp(min=1)
            norm = (rg - mean) * eg
            if std_norm:  # unbiased std over the group's events (as torch.std, GRPO's outcome case)
                var = (((rg - mean) * eg) ** 2).sum((1, 2), keepdim=True) / (tot_n - 1).clamp(min=1)
                norm = norm / (var.sqrt() + eps)
        else:
            own_r, own_n = rg.sum(2, keepdim=True), eg.sum(2, keepdim=True)
            others = (tot_r - own_r) / (tot_n - own_n).clamp(min=1)
            norm = (rg - others) * eg
        r = norm.reshape(n, T)
    elif baseline != "none":
        raise ValueError(f"process advantages need baseline rloo, grpo or none, got {baseline!r}.")
    return reverse_cumsum(r) * mask_f


def reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``out[:, t] = sum_{k >= t} x[:, k]``."""
    return x.flip(1).cumsum(1).flip(1)


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), per episode of ``lengths`` policy tokens.

    ``0`` up to ``L_max - L_cache`` tokens, then falling linearly to ``-penalty`` at ``L_max``
    (and ``-penalty`` beyond it).

    Example:
        >>> overlong_penalty(torch.tensor([4, 8, 9, 10, 12]), 10, 4).tolist()
        [0.0, -0.5, -0.75, -1.0, -1.0]
    """
    expected = max_tokens - buffer
    over = (lengths.double() - expected).clamp(min=0, max=buffer)
    return over * (-penalty / buffer) + 0.0  # + 0.0: no negative zeros


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


def advantages(
    rollout: Rollout,
    cfg: ReinforceConfig,
    ref_logp: torch.Tensor | None,
    moving_average: MovingAverageBaseline | None,
    dist: Dist,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(token advantages (N, T), episode advantages (N,), sequence KL (N,))`` of a rollout (steps 1-3)."""
    mask = rollout.action_mask.float()
    old_logp = rollout.logprobs
    use_kl = cfg.kl_coef > 0 and ref_logp is not None
    rewards = rollout.rewards
    if cfg.overlong_buffer > 0:  # DAPO: the length penalty joins the outcome on the last policy token
        l_max = cfg.overlong_max_tokens or max_tokens or rollout.tokens.shape[1]
        pen = overlong_penalty(rollout.action_mask.sum(1), l_max, cfg.overlong_buffer, cfg.overlong_penalty)
        last = reward_events(torch.zeros_like(rewards), rollout.action_mask)
        rewards = rewards + last.to(rewards.dtype) * pen.to(rewards.dtype)[:, None]
    scores = rewards.sum(1).float() if rewards is not rollout.rewards else rollout.returns.float()
    kl_seq = ((old_logp - ref_logp) * mask).sum(1) if ref_logp is not None else torch.zeros_like(scores)
    kl_tok = None
    if use_kl and cfg.kl_in == "reward":
        kl_tok = kl_estimate(old_logp, ref_logp, cfg.kl_estimator or "k1") * mask
    if cfg.credit == "episode":
        if kl_tok is not None:
            scores = scores - cfg.kl_coef * (kl_seq if cfg.kl_estimator in (None, "k1") else kl_tok.sum(1))
        if cfg.baseline == "moving_average":
            assert moving_average is not None, "pass a MovingAverageBaseline for baseline='moving_average'"
            adv = moving_average.advantages(scores, dist)
        else:
            adv = group_advantages(scores, rollout.group_size, cfg.baseline, cfg.grpo_eps, cfg.adv_std_norm)
        adv_tok = adv[:, None] * mask
    else:
        adv_tok = process_advantages(
            rewards.float(), rollout.action_mask, rollout.group_size, cfg.baseline, cfg.grpo_eps, cfg.adv_std_norm
        )
        if kl_tok is not None:  # REINFORCE++: the KL to go, per token, after the rewards' normalisation
            adv_tok = adv_tok - cfg.kl_coef * reverse_cumsum(kl_tok) * mask
        first = reward_events(torch.zeros_like(mask), rollout.action_mask.flip(1)).flip(1)  # first policy token
        adv = (adv_tok * first).sum(1)
    if cfg.adv_whiten:
        from agents.learners.ppo import whiten

        adv_tok = whiten(adv_tok, mask, dist=dist)
    return adv_tok, adv, kl_seq


def surrogate(
    logp: torch.Tensor, behaviour: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, cfg: ReinforceConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-token policy loss, ratio)`` of ``cfg.policy_loss`` (step 4), before aggregation.

    * ``clip``: ``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)``, ``rho = pi / pi_behaviour``
      per token (PPO, GRPO; DAPO's clip-higher when ``clip_eps_high > clip_eps_low``);
    * ``gspo``: the same with one ratio per episode, ``s_i = exp(mean_t log rho_t)`` (GSPO, Zheng et al. 2025);
    * ``cispo``: ``-sg(clip(rho, 1 - eps_low, 1 + eps_high)) A log pi`` (CISPO, MiniMax-M1 2025): every
      token keeps a gradient, clipping only bounds its weight.

    Example:
        >>> cfg = ReinforceConfig(clip_eps_low=0.2, clip_eps_high=0.28)
        >>> lp = torch.log(torch.tensor([[1.5, 0.5]]))
        >>> surrogate(lp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), cfg)[0].tolist()
        [[-1.2799999713897705, -0.5]]
    """
    log_ratio = (logp - behaviour).clamp(-20, 20)
    low, high = cfg.clip_low, cfg.clip_high
    if cfg.policy_loss == "gspo":  # one ratio per episode: exp of the mean token log-ratio
        seq = (log_ratio * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
        ratio = seq.exp().expand_as(logp)
    else:
        ratio = log_ratio.exp()
    if cfg.policy_loss == "cispo":
        return -ratio.clamp(1 - low, 1 + high).detach() * adv * logp, ratio
    return -torch.min(ratio * adv, ratio.clamp(1 - low, 1 + high) * adv), ratio


def aggregate(x: torch.Tensor, mask: torch.Tensor, loss_agg: str, denom: torch.Tensor | float) -> torch.Tensor:
    """Sum of the per-token ``x`` over ``mask`` by ``loss_agg``, over ``denom`` (step 4).

    ``token_mean``: ``sum x / denom`` with ``denom`` the batch's token count (DAPO);
    ``seq_mean``: ``sum_i mean_t x_it / denom`` with ``denom`` the episode count (GRPO);
    ``constant``: ``sum x / denom`` with ``denom = episodes * max tokens`` (Dr. GRPO).
    The caller passes the *global* count over every rank (divided by the world size, as DDP averages).

    Example:
        >>> x, m = torch.tensor([[1.0, 3.0], [2.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        >>> [aggregate(x, m, "token_mean", 3).item(), aggregate(x, m, "seq_mean", 2).item()]
        [2.0, 2.0]
    """
    if loss_agg == "seq_mean":
        return ((x * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / denom
    return (x * mask).sum() / denom


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
    max_tokens: int | None = None,
) -> dict[str, float]:
    """One REINFORCE update (``cfg.iterations`` passes) on a rollout; returns metrics.

    ``ptx_batch`` (pre-training rows, see :func:`agents.learners.pretrain.replay_batches`) adds
    ``cfg.ptx_coef`` times its NLL to every pass's loss. ``max_tokens`` is the env's
    ``max_new_tokens`` (Dr. GRPO's constant and DAPO's ``L_max``; ``None``: the rollout's width).

    Data parallel (``dist``): ``rollout`` is this rank's whole groups and ``model`` is wrapped in DDP.
    Every pass accumulates the gradient of the whole batch before its one optimizer step, so the
    result does not depend on how the batch is split into minibatches or ranks: each rank's loss is
    its tokens' sum over the *global* token (or episode) count, times the world size (DDP averages).

    The first pass runs at the sampler's weights, so it also measures how far the learner's
    log-probs are from the sampler's (``offpolicy/*``: max and mean absolute difference per token,
    and the k3 estimate of KL(pi_sampler || pi_learner)); with ``is_correction`` those pre-update
    learner log-probs are the ratio's denominator and the weight ``pi_learner / pi_sampler`` is
    truncated (tis) or masked (mis).
    """
    precision = precision or Precision()
    dist = dist or Dist()
    cfg.check()
    mask = rollout.action_mask.float()  # the policy's tokens (not a multi-turn env's)
    T = rollout.tokens.shape[1]
    old_logp = rollout.logprobs
    use_kl = cfg.kl_coef > 0 and ref is not None
    ref_logp = None
    n, K = rollout.tokens.shape[0], rollout.group_size
    if use_kl:
        with torch.no_grad(), precision.autocast():
            ref_logp = policy_logprobs(ref, rollout, torch.arange(n, device=mask.device), cfg.temperature)[0]

    adv_tok, adv, kl_seq = advantages(rollout, cfg, ref_logp, moving_average, dist, max_tokens)

    # minibatches of whole groups, so each group's shared prompt is run once (see policy_logprobs)
    mb_size = max(K, n // cfg.num_minibatches // K * K)
    total_tokens = dist.sum_(mask.sum()).clamp(min=1) / dist.world_size  # DDP averages the ranks' gradients
    if cfg.loss_agg == "token_mean":
        denom = total_tokens
    else:  # per episode: episodes of every rank, per rank
        episodes = dist.sum_(torch.tensor(float(n), device=mask.device)).clamp(min=1) / dist.world_size
        norm_tokens = cfg.loss_norm_tokens or max_tokens or T
        denom = episodes if cfg.loss_agg == "seq_mean" else episodes * norm_tokens
    low, high = cfg.clip_low, cfg.clip_high
    correct = cfg.is_correction != "none"
    learner_old = torch.zeros_like(old_logp) if correct else None  # pre-update learner log-probs
    stats: dict[str, list[float]] = {k: [] for k in ("pg", "kl_loss", "entropy", "clipfrac")}
    gap = {"sum": 0.0, "max": 0.0, "kl": 0.0, "n": 0.0, "is_w": 0.0, "is_kept": 0.0}
    first_ratio_error = None
    model.train()
    for it in range(cfg.iterations):
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
            if it == 0:  # the weights the rollout was sampled with: measure the sampler-learner gap
                with torch.no_grad():
                    d = (logp.detach() - old_logp[rows]).clamp(-20, 20)
                    gap["sum"] += float((d.abs() * m).sum())
                    gap["max"] = max(gap["max"], float((d.abs() * m).max()) if m.numel() else 0.0)
                    gap["kl"] += float(((d.exp() - 1 - d) * m).sum())  # k3 of KL(sampler || learner)
                    gap["n"] += float(m.sum())
                if correct:
                    learner_old[rows] = logp.detach()
            behaviour = learner_old[rows] if correct else old_logp[rows]
            per_token, ratio = surrogate(logp, behaviour, a, m, cfg)
            if first_ratio_error is None:
                first_ratio_error = float(((ratio.detach() - 1).abs() * m).max())
            if correct:
                w = is_weight(learner_old[rows], old_logp[rows], m, cfg)  # detached
                per_token = per_token * w
                with torch.no_grad():
                    gap["is_w"] += float((w * m).sum())
                    gap["is_kept"] += float(((w > 0).float() * m).sum())
            kl_term = torch.zeros_like(per_token)
            if use_kl and cfg.kl_in == "loss":  # default k3 = exp(u) - 1 - u, u = log pi_ref - log pi (>= 0)
                kl_term = kl_estimate(logp, ref_logp[rows], cfg.kl_estimator or "k3")
            term = per_token + cfg.kl_coef * kl_term
            if cfg.entropy_coef:
                term = term - cfg.entropy_coef * entropy
            loss = aggregate(term, m, cfg.loss_agg, denom)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"REINFORCE loss became {loss.item()}; lower agent.lr.")
            with dist.no_sync(model, skip=not last):
                precision.backward(loss)
            with torch.no_grad():
                stats["pg"].append(float(aggregate(per_token, m, cfg.loss_agg, denom)))
                stats["kl_loss"].append(float((kl_term * m).sum() / m.sum().clamp(min=1)))
                stats["entropy"].append(float(masked_mean(entropy, m)))
                clipped = (ratio < 1 - low) | (ratio > 1 + high)
                stats["clipfrac"].append(float(masked_mean(clipped.float(), m)))
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
    gap_max = max(dist.gather_objects(gap["max"]))
    sums = dist.sum_floats({k: v for k, v in gap.items() if k != "max"})
    tokens = max(sums["n"], 1.0)
    out.update(
        {
            "reinforce/kl_ref": float(global_mean(kl_seq, dist)),
            "reinforce/adv_abs_mean": float(global_mean(adv.abs(), dist)),
            "reinforce/first_ratio_max_error": first_ratio_error or 0.0,
            "reinforce/zero_adv_fraction": float(global_mean((adv.abs() < 1e-8).float(), dist)),
            "reinforce/T": float(T),
            "offpolicy/logp_abs_diff_max": gap_max,
            "offpolicy/logp_abs_diff_mean": sums["sum"] / tokens,
            "offpolicy/mismatch_kl": sums["kl"] / tokens,
        }
    )
    if correct:
        out["offpolicy/is_weight_mean"] = sums["is_w"] / tokens
        out["offpolicy/is_kept_fraction"] = sums["is_kept"] / tokens
    return out


def is_weight(learner_logp: torch.Tensor, sampler_logp: torch.Tensor, m: torch.Tensor, cfg: ReinforceConfig):
    """The detached importance weight ``pi_learner / pi_sampler``, truncated (tis) or masked (mis).

    Per token, or per episode (``is_level="sequence"``: the product of its tokens' ratios, broadcast).
    TIS: Yao et al. 2025 (``min(w, C)``); MIS: keep the loss only where ``is_low <= w <= is_cap``
    (IcePop, and TRL's ``sequence_mask``), zero elsewhere.

    Example:
        >>> cfg = ReinforceConfig(is_correction="tis", is_cap=2.0)
        >>> is_weight(torch.tensor([[0.0, 0.0]]), torch.log(torch.tensor([[0.25, 2.0]])), torch.ones(1, 2), cfg)
        tensor([[2.0000, 0.5000]])
    """
    log_w = (learner_logp - sampler_logp).detach()
    if cfg.is_level == "sequence":
        log_w = (log_w * m).sum(1, keepdim=True).expand_as(log_w)
    w = log_w.clamp(-20, 20).exp()
    if cfg.is_correction == "tis":
        return w.clamp(max=cfg.is_cap)
    return ((w >= cfg.is_low) & (w <= cfg.is_cap)).to(w.dtype)


def varied_groups(rollout: Rollout) -> torch.Tensor:
    """Indices of the groups whose returns are not all equal (DAPO's dynamic sampling keeps these)."""
    g = rollout.returns.view(-1, rollout.group_size)
    return (g != g[:, :1]).any(1).nonzero()[:, 0]


def select_groups(rollout: Rollout, groups: torch.Tensor) -> Rollout:
    """The rollout restricted to whole groups ``groups`` (in that order)."""
    K = rollout.group_size
    rows = (groups[:, None] * K + torch.arange(K, device=groups.device)).reshape(-1)
    pick = {}
    for f in dataclasses.fields(rollout):
        value = getattr(rollout, f.name)
        if isinstance(value, torch.Tensor):
            pick[f.name] = value[rows.to(value.device)]
        elif isinstance(value, list):
            pick[f.name] = [value[int(i)] for i in rows]
    return dataclasses.replace(rollout, **pick)


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """One rollout of ``parts``' episodes: prompts left-padded and completions right-padded to common widths."""
    if len(parts) == 1:
        return parts[0]
    P = max(r.prompt_ids.shape[1] for r in parts)
    T = max(r.tokens.shape[1] for r in parts)

    def left(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

    def right(x: torch.Tensor | None, value: Any) -> torch.Tensor | None:
        return None if x is None else torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)

    out: dict[str, Any] = {
        "prompt_ids": torch.cat([left(r.prompt_ids, P, pad_id) for r in parts]),
        "prompt_mask": torch.cat([left(r.prompt_mask, P, 0) for r in parts]),
        "tokens": torch.cat([right(r.tokens, pad_id) for r in parts]),
        "mask": torch.cat([right(r.mask, False) for r in parts]),
        "logprobs": torch.cat([right(r.logprobs, 0.0) for r in parts]),
        "rewards": torch.cat([right(r.rewards, 0.0) for r in parts]),
        "infos": [i for r in parts for i in r.infos],
        "reset_infos": [i for r in parts for i in r.reset_infos],
    }
    for name in ("values", "policy_mask"):
        if getattr(parts[0], name) is not None:
            fill = False if name == "policy_mask" else 0.0
            out[name] = torch.cat([right(getattr(r, name), fill) for r in parts])
    return dataclasses.replace(parts[0], **out)


class ReinforceLearner:
    """REINFORCE / RLOO / GRPO as a :class:`~agents.learners.base.Learner`: collect one rollout, one update."""

    def __init__(self, cfg: ReinforceConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        cfg.check()
        self.cfg, self.ctx = cfg, ctx
        self.policy = Policy(lm, critic="none")  # checkpoints hold "lm.*", as every learner's
        self.lm = ctx.dist.wrap(lm)  # DDP under torchrun: its forward hooks all-reduce the gradients
        self.venv = make_train_venv(cfg, ctx)
        reward = getattr(getattr(self.venv, "episodes", None), "reward", None)
        if cfg.credit == "token" and cfg.baseline != "none" and reward is not None and not reward.process:
            raise ValueError(
                f"agent.credit=token with agent.baseline={cfg.baseline} builds advantages from per-step rewards, "
                f"but {ctx.env_id}'s reward pays none (reward.process is off): use an env with process rewards "
                "(e.g. env=math_process) or agent.credit=episode."
            )
        self.max_tokens = int(self.venv.episodes.config.max_new_tokens)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, eps=1e-5)
        self.moving_average = MovingAverageBaseline(cfg.ema_decay) if cfg.baseline == "moving_average" else None
        self.ptx = pretraining_mix(cfg, ctx)

    def uses_reference(self) -> bool:
        return self.cfg.kl_coef > 0

    def collect(self, it: int, generator: torch.Generator) -> tuple[Rollout, float, Rollout, dict[str, float]]:
        """``(training batch, first rollout's seconds, first rollout, metrics)``; DAPO's dynamic sampling refills it.

        Without dynamic sampling the batch is the iteration's rollout. With it, groups whose returns
        are all equal (no gradient with a group baseline) are dropped and up to
        ``dynamic_max_rollouts`` further rollouts are drawn until ``num_envs / group_size`` varied
        groups are kept; the batch is then those groups (fewer when the cap is reached).

        Under torchrun every rank keeps the varied groups the one process would keep (the first ones
        in global row order, counts exchanged after each draw), all ranks stop after the same draw,
        and the kept groups are then shared out equally (:meth:`share_kept_groups`): the batch is the
        one-process batch, split over the ranks.
        """
        rollout, seconds = collect_iteration(self.policy.lm, self.venv, self.cfg, self.ctx, it, generator)
        if not self.cfg.dynamic_sampling:
            return rollout, seconds, rollout, {}
        target = self.cfg.num_envs // self.cfg.group_size
        dist = self.ctx.dist
        parts: list[tuple[int, Rollout]] = []  # (draw, this rank's kept groups of that draw)
        kept, draws, seen, tied, extra_s = 0, 0, 0, 0, 0.0
        current = rollout
        while True:
            varied = varied_groups(current)
            # every rank's (groups, varied groups) of this draw: the global count and this rank's place in it
            counts = dist.gather_objects((current.tokens.shape[0] // current.group_size, len(varied)))
            before = sum(v for _, v in counts[: dist.rank])  # varied groups of the ranks before this one
            groups, n_varied = sum(g for g, _ in counts), sum(v for _, v in counts)
            seen, tied = seen + groups, tied + groups - n_varied
            keep = varied[: max(0, target - kept - before)]  # the first varied groups, in global row order
            if len(keep):
                parts.append((draws, select_groups(current, keep)))
            kept += min(n_varied, target - kept)
            if kept >= target or draws >= self.cfg.dynamic_max_rollouts:
                break
            draws += 1
            current, more = collect_iteration(self.policy.lm, self.venv, self.cfg, self.ctx, it, generator, draw=draws)
            extra_s += more
        metrics = {
            "dynamic/kept_groups": float(kept),
            "dynamic/extra_rollouts": float(draws),
            "dynamic/sampled_groups": float(seen),
            "dynamic/tied_fraction": tied / max(seen, 1),  # groups dropped for equal rewards, of those sampled
            "time/dynamic_extra_rollouts_s": extra_s,  # the first rollout's time stays time/rollout_s
        }
        if not dist.distributed:
            batch = concat_rollouts([p for _, p in parts], self.ctx.codec.pad_token_id) if parts else None
            return batch, seconds, rollout, metrics
        batch, dropped = self.share_kept_groups(parts)
        metrics["dynamic/dropped_for_split"] = float(dropped)
        return batch, seconds, rollout, metrics

    def share_kept_groups(self, parts: list[tuple[int, Rollout]]) -> tuple[Rollout | None, int]:
        """Under torch.distributed: this rank's equal share of every rank's kept groups, and how many were left out.

        The kept groups of all ranks, in the one-process order (draw by draw, global rows within a
        draw), are gathered on every rank; rank ``r`` of ``W`` trains on the ``r``-th of ``W`` equal
        contiguous shares, so every rank runs the same number of forwards and backwards (DDP's
        collectives) and the union is the one-process batch. When the refill cap stops with a number
        ``G`` of kept groups that ``W`` does not divide, the last ``G mod W`` are left out (logged as
        ``dynamic/dropped_for_split``); with the full ``num_envs / group_size`` groups nothing is.
        """
        dist = self.ctx.dist
        mine = [(draw, dist.rank, part.to("cpu")) for draw, part in parts]
        every = sorted((x for rank_parts in dist.gather_objects(mine) for x in rank_parts), key=lambda x: x[:2])
        if not every:
            return None, 0
        whole = concat_rollouts([part for _, _, part in every], self.ctx.codec.pad_token_id)
        G = whole.tokens.shape[0] // whole.group_size
        share = G // dist.world_size
        if share == 0:
            return None, G
        groups = torch.arange(dist.rank * share, (dist.rank + 1) * share)
        return select_groups(whole, groups).to(self.ctx.device), G - share * dist.world_size

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        t0 = time.time()
        generator = self.ctx.generator(it)  # samples the rollout, then shuffles its minibatches
        batch, t_rollout, rollout, metrics = self.collect(it, generator)
        if batch is not None:
            metrics.update(
                reinforce_update(
                    self.lm,
                    ref,
                    self.optimizer,
                    batch,
                    self.cfg,
                    self.moving_average,
                    generator=generator,
                    ptx_batch=self.ptx.batch(it) if self.ptx is not None else None,
                    precision=self.ctx.precision,
                    dist=self.ctx.dist,
                    max_tokens=self.max_tokens,
                )
            )
        # the iteration's first rollout: the policy's own samples, unfiltered (comparable across options)
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
