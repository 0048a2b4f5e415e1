"""The policy-gradient options of the REINFORCE/RLOO/GRPO learner (#22) against hand-computed values.

Each option is checked on a tiny tensor whose answer is worked out in the test; the defaults are
checked to give today's update bit for bit (against a frozen copy of the update before the options).
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import pytest
import torch

import lm_envs  # noqa: F401
from agents.learners.ppo import KLController, PPOConfig, ppo_update
from agents.learners.reinforce import (
    MovingAverageBaseline,
    ReinforceConfig,
    advantages,
    aggregate,
    concat_rollouts,
    group_advantages,
    is_weight,
    kl_estimate,
    overlong_penalty,
    process_advantages,
    reinforce_update,
    select_groups,
    surrogate,
    varied_groups,
)
from agents.learners.sft import nll  # noqa: F401  (the frozen copy below mirrors the module's imports)
from agents.policy.actor_critic import Policy
from agents.policy.models import build_default_model, frozen_copy
from agents.policy.sampling import Rollout, collect
from agents.policy.scoring import policy_logprobs
from agents.run.distributed import Dist


@pytest.fixture(scope="module")
def math_rollout():
    venv = gym.make_vec("LMEnv/Math-v0", num_envs=8, autoreset_mode="Disabled", max_new_tokens=12)
    model = build_default_model(venv.codec, seed=0, n_layer=2, n_embd=64)
    rollout = collect(model, venv, seed=0, options={"group_size": 4}, generator=torch.Generator().manual_seed(0))
    rollout.rewards[0, 0] += 1.0  # no group with zero variance
    rollout.rewards[5, 1] += 0.5
    return rollout


def tiny_rollout(rewards: list[list[float]], mask: list[list[int]], group_size: int, logprobs=None) -> Rollout:
    r = torch.tensor(rewards, dtype=torch.float64)
    m = torch.tensor(mask, dtype=torch.bool)
    n, T = r.shape
    lp = torch.zeros(n, T) if logprobs is None else torch.tensor(logprobs)
    return Rollout(
        prompt_ids=torch.zeros(n, 1, dtype=torch.long),
        prompt_mask=torch.ones(n, 1, dtype=torch.long),
        tokens=torch.zeros(n, T, dtype=torch.long),
        mask=m,
        logprobs=lp,
        rewards=r,
        infos=[{} for _ in range(n)],
        reset_infos=[{} for _ in range(n)],
        group_size=group_size,
    )


def close(x: torch.Tensor, expected: list, atol: float = 1e-5) -> bool:
    return torch.allclose(x.float(), torch.tensor(expected, dtype=torch.float32), atol=atol)


# --------------------------------------------------------------------------------------------
# Defaults: today's update, bit for bit
# --------------------------------------------------------------------------------------------


def update_before_the_options(model, ref, optimizer, rollout, cfg, moving_average=None, generator=None):
    """The REINFORCE update as it was before #22's options (ptx and DDP parts left out), for comparison."""
    mask = rollout.action_mask.float()
    old_logp = rollout.logprobs
    use_kl = cfg.kl_coef > 0 and ref is not None
    n, K = rollout.tokens.shape[0], rollout.group_size
    ref_logp = None
    if use_kl:
        with torch.no_grad():
            ref_logp = policy_logprobs(ref, rollout, torch.arange(n), cfg.temperature)[0]
    scores = rollout.returns.float()
    kl_seq = ((old_logp - ref_logp) * mask).sum(1) if ref_logp is not None else torch.zeros_like(scores)
    if use_kl and cfg.kl_in == "reward":
        scores = scores - cfg.kl_coef * kl_seq
    if cfg.baseline == "moving_average":
        adv = moving_average.advantages(scores, Dist())
    else:
        adv = group_advantages(scores, rollout.group_size, cfg.baseline, cfg.grpo_eps)
    adv_tok = adv[:, None] * mask
    mb_size = max(K, n // cfg.num_minibatches // K * K)
    total_tokens = mask.sum().clamp(min=1)
    model.train()
    for _ in range(cfg.iterations):
        groups = torch.randperm(n // K, generator=generator, device="cpu")
        order = (groups[:, None] * K + torch.arange(K)).reshape(-1)
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, n, mb_size):
            rows = order[start : start + mb_size]
            logp, _ = policy_logprobs(model, rollout, rows, cfg.temperature)
            m, a = mask[rows], adv_tok[rows]
            ratio = (logp - old_logp[rows]).clamp(-20, 20).exp()
            per_token = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * a)
            kl_term = torch.zeros_like(per_token)
            if use_kl and cfg.kl_in == "loss":
                u = (ref_logp[rows] - logp).clamp(-20, 20)
                kl_term = u.exp() - 1 - u
            loss = ((per_token + cfg.kl_coef * kl_term) * m).sum() / total_tokens
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
    model.eval()


@pytest.mark.parametrize(
    "baseline, kl_in", [("grpo", "loss"), ("rloo", "reward"), ("moving_average", "loss"), ("none", "reward")]
)
def test_defaults_give_the_update_before_the_options_bit_for_bit(math_rollout, baseline, kl_in):
    cfg = ReinforceConfig(baseline=baseline, group_size=4, kl_coef=0.1, kl_in=kl_in, iterations=2, num_minibatches=2)
    weights = []
    for update in (update_before_the_options, reinforce_update):
        model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
        ref = frozen_copy(model)
        with torch.no_grad():  # a reference that differs from the policy, so the KL terms matter
            for p in ref.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
        update(
            model, ref, opt, math_rollout, cfg, MovingAverageBaseline(0.9), generator=torch.Generator().manual_seed(3)
        )
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


# --------------------------------------------------------------------------------------------
# 1. Loss aggregation and Dr. GRPO's advantages
# --------------------------------------------------------------------------------------------


def test_loss_aggregations_against_hand_computation():
    # episode 0: tokens 1, 3 (2 tokens); episode 1: token 2 (1 token)
    x = torch.tensor([[1.0, 3.0, 7.0], [2.0, 9.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(x, m, "token_mean", 3).item() == pytest.approx((1 + 3 + 2) / 3)  # DAPO
    assert aggregate(x, m, "seq_mean", 2).item() == pytest.approx((2.0 + 2.0) / 2)  # GRPO: (1+3)/2, 2/1
    assert aggregate(x, m, "constant", 2 * 4).item() == pytest.approx(6 / 8)  # Dr. GRPO: 2 episodes * 4 tokens


def test_loss_agg_changes_the_update_as_its_normaliser_says(math_rollout):
    """seq_mean weighs each episode's tokens by 1/length; constant = token_mean * tokens / (episodes * T)."""
    grads = {}
    T = 12
    for agg in ("token_mean", "constant"):
        model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
        cfg = ReinforceConfig(group_size=4, loss_agg=agg, max_grad_norm=1e9)
        reinforce_update(model, None, torch.optim.SGD(model.parameters(), lr=0.0), math_rollout, cfg, max_tokens=T)
        grads[agg] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    tokens, episodes = float(math_rollout.action_mask.sum()), math_rollout.tokens.shape[0]
    assert torch.allclose(grads["constant"], grads["token_mean"] * tokens / (episodes * T), atol=1e-7)


def test_dr_grpo_advantages_skip_the_std():
    s = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert group_advantages(s, 4, "grpo", std_norm=False).tolist() == [0.75, -0.25, -0.25, -0.25]
    std = math.sqrt((0.75**2 + 3 * 0.25**2) / 3)
    assert group_advantages(s, 4, "grpo", eps=0.0).tolist() == pytest.approx([0.75 / std] + [-0.25 / std] * 3)


# --------------------------------------------------------------------------------------------
# 2. DAPO: clip-higher, overlong shaping, dynamic sampling
# --------------------------------------------------------------------------------------------


def test_clip_higher_clips_each_side_at_its_own_epsilon():
    cfg = ReinforceConfig(clip_eps_low=0.2, clip_eps_high=0.28)
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    loss, _ = surrogate(ratio.log(), torch.zeros(1, 4), adv, torch.ones(1, 4), cfg)
    # A > 0: min(1.5, 1.28) = 1.28; A < 0: min(-0.5, -0.8) = -0.8; inside: 1.1; A > 0 and low ratio: min(0.5, 0.8)
    assert close(loss, [[-1.28, 0.8, -1.1, -0.5]])
    sym = surrogate(ratio.log(), torch.zeros(1, 4), adv, torch.ones(1, 4), ReinforceConfig())[0]
    assert close(sym, [[-1.2, 0.8, -1.1, -0.5]])


def test_overlong_penalty_ramps_over_the_buffer_and_joins_the_last_token():
    assert overlong_penalty(torch.tensor([0, 6, 7, 8, 10]), 10, 4).tolist() == [0.0, 0.0, -0.25, -0.5, -1.0]
    # two episodes of 3 and 1 tokens, L_max 4, buffer 2: penalties -0.5 and 0 on the last token
    roll = tiny_rollout([[0, 0, 1], [1, 0, 0]], [[1, 1, 1], [1, 0, 0]], 2)
    cfg = ReinforceConfig(baseline="none", group_size=2, overlong_buffer=2, overlong_max_tokens=4)
    adv_tok, adv, _ = advantages(roll, cfg, None, None, Dist())
    assert adv.tolist() == [0.5, 1.0]
    assert adv_tok.tolist() == [[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]


def test_dynamic_sampling_keeps_varied_groups_and_concatenates_rollouts(math_rollout):
    flat = dataclasses.replace(math_rollout, rewards=math_rollout.rewards.clone())
    flat.rewards[4:] = 0.0  # group 1 ties
    assert varied_groups(flat).tolist() == [0]
    kept = select_groups(flat, torch.tensor([0]))
    assert kept.tokens.shape[0] == 4 and torch.equal(kept.tokens, flat.tokens[:4])
    short = dataclasses.replace(
        kept, prompt_ids=kept.prompt_ids[:, 2:], prompt_mask=kept.prompt_mask[:, 2:], tokens=kept.tokens[:, :5],
        mask=kept.mask[:, :5], logprobs=kept.logprobs[:, :5], rewards=kept.rewards[:, :5],
    )  # fmt: skip
    both = concat_rollouts([kept, short], pad_id=0)
    assert both.tokens.shape == (8, kept.tokens.shape[1]) and both.prompt_ids.shape[1] == kept.prompt_ids.shape[1]
    assert torch.equal(both.prompt_ids[4:, 2:], short.prompt_ids) and not both.prompt_mask[4:, :2].any()
    assert torch.equal(both.mask[4:, :5], short.mask) and not both.mask[4:, 5:].any()
    assert len(both.infos) == 8


# --------------------------------------------------------------------------------------------
# 3. GSPO and CISPO
# --------------------------------------------------------------------------------------------


def test_gspo_uses_one_length_normalised_ratio_per_episode():
    cfg = ReinforceConfig(policy_loss="gspo", loss_agg="seq_mean")
    logp = torch.log(torch.tensor([[2.0, 0.5, 4.0], [1.1, 1.0, 1.0]]))
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, ratio = surrogate(logp, torch.zeros(2, 3), torch.ones(2, 3), m, cfg)
    # episode 0: exp((log 2 + log 0.5) / 2) = 1 (the masked 4.0 is ignored); episode 1: 1.1
    assert ratio[:, 0].tolist() == pytest.approx([1.0, 1.1])
    assert aggregate(loss, m, "seq_mean", 2).item() == pytest.approx(-(1.0 + 1.1) / 2)


def test_cispo_keeps_a_gradient_on_clipped_tokens_with_a_detached_weight():
    cfg = ReinforceConfig(policy_loss="cispo", clip_eps_low=0.2, clip_eps_high=0.28)
    logp = torch.log(torch.tensor([[1.5, 0.9]])).requires_grad_()
    loss, _ = surrogate(logp, torch.zeros(1, 2), torch.tensor([[1.0, -2.0]]), torch.ones(1, 2), cfg)
    loss.sum().backward()
    # d/dlogp of -sg(clip(r)) A log pi = -clip(r) A: token 0's ratio 1.5 clips to 1.28, token 1's 0.9 stays
    assert close(logp.grad, [[-1.28, 1.8]])
    clip = surrogate(logp.detach().requires_grad_(), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), cfg)[0]
    assert clip.requires_grad  # PPO's clip would give token 0 no gradient; CISPO gives every token one


# --------------------------------------------------------------------------------------------
# 4 + 8. Token credit: process supervision, REINFORCE++
# --------------------------------------------------------------------------------------------


def test_process_grpo_normalises_the_groups_step_rewards_and_sums_them_to_go():
    # group of 2: episode 0 pays 0.1 at token 0 and 1.0 at its end (token 2); episode 1 pays -0.5 at token 1 (its end)
    r = torch.tensor([[0.1, 0.0, 1.0], [0.0, -0.5, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    events = [0.1, 1.0, -0.5]
    mean = sum(events) / 3
    std = math.sqrt(sum((e - mean) ** 2 for e in events) / 2)
    z = [(e - mean) / std for e in events]
    expected = [[z[0] + z[1], z[1], z[1]], [z[2], z[2], 0.0]]
    assert close(process_advantages(r, m, 2, "grpo", eps=0.0), expected)
    # rloo: each reward minus the mean of the other episodes' rewards
    loo = [[0.1 + 0.5 + 1.0 + 0.5, 1.5, 1.5], [-0.5 - 0.55, -1.05, 0.0]]
    assert close(process_advantages(r, m, 2, "rloo"), loo)


def test_process_credit_with_only_an_outcome_is_the_episode_credit():
    roll = tiny_rollout([[0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0]], 4)
    ep = advantages(roll, ReinforceConfig(group_size=4), None, None, Dist())[0]
    tok = advantages(roll, ReinforceConfig(group_size=4, credit="token"), None, None, Dist())[0]
    assert torch.allclose(ep, tok, atol=1e-6)


def test_reinforce_pp_subtracts_the_kl_to_go_and_whitens_over_the_batch():
    # one group of 2, outcome only; sampler log-probs vs reference give k1 per token
    roll = tiny_rollout([[0, 1.0], [0, 0.0]], [[1, 1], [1, 1]], 2, logprobs=[[-1.0, -1.0], [-2.0, -1.0]])
    ref = torch.tensor([[-1.5, -0.5], [-1.0, -1.0]])
    cfg = ReinforceConfig(baseline="none", group_size=2, credit="token", kl_in="reward", kl_coef=0.1)
    adv_tok, _, _ = advantages(roll, cfg, ref, None, Dist())
    # k1 = [[0.5, -0.5], [-1, 0]]; returns-to-go: [[1 - 0.1*0, 1 + 0.05], [0 + 0.1, 0]]
    assert close(adv_tok, [[1.0, 1.05], [0.1, 0.0]])
    white = advantages(roll, dataclasses.replace(cfg, adv_whiten=True), ref, None, Dist())[0]
    x = torch.tensor([1.0, 1.05, 0.1, 0.0])
    assert white.flatten().tolist() == pytest.approx(((x - x.mean()) / x.var(unbiased=False).sqrt()).tolist(), 1e-4)


# --------------------------------------------------------------------------------------------
# 5 + 6. Entropy bonus and KL estimators
# --------------------------------------------------------------------------------------------


def test_kl_estimators_against_hand_computation():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert kl_estimate(logp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert kl_estimate(logp, ref, "k2").tolist() == pytest.approx([0.125, 0.5])
    assert kl_estimate(logp, ref, "k3").tolist() == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1) - 1 - 1])


def test_which_kl_placement_gives_the_kl_gradient_on_one_categorical_step():
    """Exact expectations over a 3-way softmax (the module docstring's table, one token)."""
    theta = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    ref = torch.log_softmax(torch.tensor([0.0, 0.4, -0.3]), 0)

    def expected_grad(f):  # sum_x pi(x) grad f(x), pi held fixed (what sampling then autograd estimates)
        logp = torch.log_softmax(theta, 0)
        (g,) = torch.autograd.grad((logp.exp().detach() * f(logp)).sum(), theta)
        return g

    logp = torch.log_softmax(theta, 0)
    reverse = torch.autograd.grad((logp.exp() * (logp - ref)).sum(), theta)[0]
    forward = torch.autograd.grad((ref.exp() * (ref - torch.log_softmax(theta, 0))).sum(), theta)[0]
    in_loss = {e: expected_grad(lambda lp, e=e: kl_estimate(lp, ref, e)) for e in ("k1", "k2", "k3")}
    k1_reward = expected_grad(lambda lp: (lp - ref).detach() * lp)  # score function: k1 detached times log pi
    assert torch.allclose(in_loss["k1"], torch.zeros(3), atol=1e-6)  # no regularisation at all
    assert torch.allclose(in_loss["k2"], reverse, atol=1e-6)  # one step: the reverse KL's gradient
    assert torch.allclose(in_loss["k3"], forward, atol=1e-6)  # the forward KL's
    assert torch.allclose(k1_reward, reverse, atol=1e-6)


def test_entropy_bonus_adds_the_aggregated_entropy_gradient(math_rollout):
    flat = dataclasses.replace(math_rollout, rewards=torch.zeros_like(math_rollout.rewards))  # no pg term
    grads = []
    for coef in (0.0, 0.5):
        model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
        cfg = ReinforceConfig(group_size=4, entropy_coef=coef, max_grad_norm=1e9)
        reinforce_update(model, None, torch.optim.SGD(model.parameters(), lr=0.0), flat, cfg)
        grads.append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
    model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
    model.train()
    n = flat.tokens.shape[0]
    _, entropy = policy_logprobs(model, flat, torch.arange(n), 1.0)
    m = flat.action_mask.float()
    (-0.5 * (entropy * m).sum() / m.sum()).backward()
    assert all(g is None or not g.any() for g in grads[0])
    expected = [p.grad for p in model.parameters()]
    assert all(torch.allclose(g, e, atol=1e-6) for g, e in zip(grads[1], expected, strict=True) if e is not None)


# --------------------------------------------------------------------------------------------
# 7. Off-policy: the sampler-learner gap, TIS and MIS
# --------------------------------------------------------------------------------------------


def test_is_weights_truncate_or_mask_per_token_or_per_sequence():
    learner = torch.zeros(1, 3)
    sampler = torch.log(torch.tensor([[0.25, 2.0, 0.8]]))  # w = pi_learner / pi_sampler = [4, 0.5, 1.25]
    m = torch.ones(1, 3)
    tis = ReinforceConfig(is_correction="tis", is_cap=2.0)
    assert close(is_weight(learner, sampler, m, tis), [[2.0, 0.5, 1.25]])
    mis = ReinforceConfig(is_correction="mis", is_cap=2.0, is_low=0.6)
    assert is_weight(learner, sampler, m, mis).tolist() == [[0.0, 0.0, 1.0]]
    seq = dataclasses.replace(tis, is_level="sequence")  # product 4 * 0.5 * 1.25 = 2.5, truncated to 2
    assert close(is_weight(learner, sampler, m, seq), [[2.0, 2.0, 2.0]])
    seq_mis = dataclasses.replace(mis, is_level="sequence", is_cap=3.0)
    assert is_weight(learner, sampler, m, seq_mis).tolist() == [[1.0, 1.0, 1.0]]


def test_the_sampler_learner_gap_is_logged_and_tis_reweights_the_gradient(math_rollout):
    # a sampler whose log-probs are off by +0.3 on every token: the learner sees a gap of 0.3 everywhere
    shifted = dataclasses.replace(math_rollout, logprobs=math_rollout.logprobs + 0.3)
    model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
    m = reinforce_update(model, None, torch.optim.SGD(model.parameters(), lr=0.0), shifted, ReinforceConfig())
    assert m["offpolicy/logp_abs_diff_mean"] == pytest.approx(0.3, abs=1e-4)
    assert m["offpolicy/logp_abs_diff_max"] == pytest.approx(0.3, abs=1e-4)
    assert m["offpolicy/mismatch_kl"] == pytest.approx(math.exp(-0.3) - 1 + 0.3, abs=1e-4)
    # TIS: weight exp(-0.3) on every token (below the cap), so the gradient is exp(-0.3) times the on-policy one
    grads = []
    no_clip = ReinforceConfig(max_grad_norm=1e9)  # compare raw gradients
    for rollout, cfg in ((math_rollout, no_clip), (shifted, dataclasses.replace(no_clip, is_correction="tis"))):
        model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
        out = reinforce_update(model, None, torch.optim.SGD(model.parameters(), lr=0.0), rollout, cfg)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert out["offpolicy/is_weight_mean"] == pytest.approx(math.exp(-0.3), abs=1e-4)
    assert torch.allclose(grads[1], math.exp(-0.3) * grads[0], atol=1e-6)


# --------------------------------------------------------------------------------------------
# Every option runs through the update; PPO's switches
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"loss_agg": "seq_mean"},
        {"loss_agg": "constant", "adv_std_norm": False},
        {"clip_eps_low": 0.2, "clip_eps_high": 0.28, "iterations": 2},
        {"overlong_buffer": 4},
        {"policy_loss": "gspo", "loss_agg": "seq_mean", "iterations": 2},
        {"policy_loss": "cispo", "iterations": 2},
        {"baseline": "none", "credit": "token", "adv_whiten": True, "kl_in": "reward", "kl_estimator": "k1"},
        {"entropy_coef": 0.01},
        {"kl_in": "loss", "kl_estimator": "k2"},
        {"is_correction": "mis", "is_level": "sequence", "iterations": 2},
    ],
)
def test_every_option_updates_the_policy(math_rollout, options):
    model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = ReinforceConfig(group_size=4, kl_coef=0.05, **options)
    m = reinforce_update(model, frozen_copy(model), torch.optim.Adam(model.parameters(), lr=1e-3), math_rollout, cfg)
    assert all(math.isfinite(v) for v in m.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_ppo_clip_higher_and_kl_in_the_loss(math_rollout):
    base = dict(ppo_epochs=2, num_minibatches=2)
    out = {}
    for name, extra in {
        "default": {},
        "same": {"clip_eps_low": 0.2, "clip_eps_high": 0.2},
        "loss": {"kl_in": "loss"},
    }.items():
        policy = Policy(build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64))
        ref = frozen_copy(policy.lm)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        m = ppo_update(
            policy,
            ref,
            opt,
            math_rollout,
            PPOConfig(**base, **extra),
            KLController(0.05, None, 1),
            torch.Generator().manual_seed(0),
        )
        out[name] = (m, [p.detach().clone() for p in policy.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(out["default"][1], out["same"][1], strict=True))
    assert "ppo/kl_loss" in out["loss"][0] and "ppo/kl_loss" not in out["default"][0]
    assert out["default"][0]["offpolicy/logp_abs_diff_max"] < 1e-3
    with pytest.raises(ValueError, match="agent.kl_target.*agent.kl_in=reward"):
        PPOConfig(kl_in="loss", kl_target=1.0).check()
