"""Algorithm cores against hand-computed values, and PPO's first ratio against the sampler."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import lm_envs  # noqa: F401
from agents.learners.ppo import KLController, PPOConfig, compute_gae, optimizer_groups, ppo_update, whiten
from agents.learners.reinforce import MovingAverageBaseline, ReinforceConfig, group_advantages, reinforce_update
from agents.policy.actor_critic import Policy
from agents.policy.models import build_default_model, frozen_copy
from agents.policy.sampling import collect


def test_gae_matches_hand_computation():
    # one episode of 3 tokens, then padding; gamma = 0.9, lambda = 0.5
    r = torch.tensor([[0.0, 0.5, 1.0, 0.0]])
    v = torch.tensor([[0.2, 0.4, 0.6, 9.9]])
    m = torch.tensor([[1, 1, 1, 0]])
    adv, ret = compute_gae(r, v, m, gamma=0.9, lam=0.5)
    d2 = 1.0 + 0.9 * 0.0 - 0.6  # V after the last token is 0
    d1 = 0.5 + 0.9 * 0.6 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a2 = d2
    a1 = d1 + 0.9 * 0.5 * a2
    a0 = d0 + 0.9 * 0.5 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.2, a1 + 0.4, a2 + 0.6, 0.0]]))


def test_gae_with_lambda_one_and_gamma_one_is_return_minus_value():
    r = torch.tensor([[0.1, 0.0, 1.0]])
    v = torch.tensor([[0.3, 0.2, 0.1]])
    adv, _ = compute_gae(r, v, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.1 - 0.3, 1.0 - 0.2, 1.0 - 0.1]]))


def test_whiten_ignores_masked_entries():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    w = whiten(x, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert w[0, 3] == 0 and abs(float(w[0, :3].mean())) < 1e-6


def test_rloo_and_grpo_advantages_match_hand_computation():
    s = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 0.0, 0.0, 0.0])
    rloo = group_advantages(s, 4, "rloo")
    torch.testing.assert_close(rloo[:4], torch.tensor([1 - 1 / 3, 0 - 2 / 3, 0.5 - 0.5, 0.5 - 0.5]))
    torch.testing.assert_close(rloo[4:], torch.tensor([2.0, -2 / 3, -2 / 3, -2 / 3]))
    grpo = group_advantages(s, 4, "grpo", eps=0.0)
    g = s[:4]
    torch.testing.assert_close(grpo[:4], (g - g.mean()) / g.std())
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantages(s, 1, "rloo")
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(s, 3, "grpo")


def test_moving_average_baseline():
    b = MovingAverageBaseline(decay=0.5)
    torch.testing.assert_close(b.advantages(torch.tensor([1.0, 3.0])), torch.tensor([-1.0, 1.0]))
    assert b.value == 2.0
    torch.testing.assert_close(b.advantages(torch.tensor([4.0])), torch.tensor([2.0]))
    assert b.value == 3.0


def test_adaptive_kl_controller():
    c = KLController(0.1, target=1.0, horizon=100)
    c.update(kl=3.0, n_episodes=10)  # error clipped to +0.2
    assert c.beta == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    fixed = KLController(0.1, None, 100)
    fixed.update(5.0, 10)
    assert fixed.beta == 0.1


@pytest.fixture(scope="module")
def digits_rollout():
    venv = gym.make_vec("LMEnv/Math-v0", num_envs=8, autoreset_mode="Disabled", max_new_tokens=12)
    model = build_default_model(venv.codec, seed=0, n_layer=2, n_embd=64)
    rollout = collect(model, venv, seed=0, options={"group_size": 4}, generator=torch.Generator().manual_seed(0))
    return model, rollout


def test_ppo_first_ratio_is_one_and_parameters_change(digits_rollout):
    model, rollout = digits_rollout
    policy = Policy(build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64))
    ref = frozen_copy(policy.lm)
    before = [p.detach().clone() for p in policy.parameters()]
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    m = ppo_update(policy, ref, opt, rollout, PPOConfig(ppo_epochs=2, num_minibatches=2), KLController(0.05, None, 1))
    assert m["ppo/first_ratio_max_error"] < 1e-3  # the loss recomputes exactly the sampler's log-probs
    assert m["ppo/kl_ref"] == pytest.approx(0.0, abs=1e-3)  # policy == reference before the update
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert all(k in m for k in ("ppo/clipfrac", "ppo/entropy", "ppo/explained_variance", "ppo/approx_kl"))


@pytest.mark.parametrize("baseline, kl_in", [("grpo", "loss"), ("rloo", "reward"), ("moving_average", "loss")])
def test_reinforce_update_runs_and_changes_parameters(digits_rollout, baseline, kl_in):
    _, rollout = digits_rollout
    model = build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64)
    ref = frozen_copy(model)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = ReinforceConfig(baseline=baseline, group_size=4, kl_coef=0.1, kl_in=kl_in, iterations=2)
    rollout.rewards[0, 0] += 1.0  # make sure no group has zero variance
    m = reinforce_update(
        model, ref, torch.optim.Adam(model.parameters(), lr=1e-3), rollout, cfg, MovingAverageBaseline(0.9)
    )
    assert m["reinforce/first_ratio_max_error"] < 1e-3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_reinforce_pretraining_mix_adds_the_documents_nll_to_the_loss(digits_rollout):
    """InstructGPT's ptx term: with a zero advantage everywhere, only the documents' NLL moves the weights."""
    import dataclasses

    import numpy as np

    from agents.learners.pretrain import rehearsal_documents, replay_batches
    from agents.learners.sft import nll
    from lm_envs.tasks.qa.world import KnowledgeQATask

    _, rollout = digits_rollout
    codec = lm_envs.load_codec()
    docs = rehearsal_documents(KnowledgeQATask(seed=0), codec, "agent.ptx_coef")
    batch = next(replay_batches(docs, 4, 32, np.random.default_rng(0), codec.pad_token_id, "agent.ptx_rows"))
    flat = dataclasses.replace(rollout, rewards=torch.zeros_like(rollout.rewards))  # every group ties: no pg term
    losses = {}
    for coef in (0.0, 1.0):
        model = build_default_model(codec, seed=0, n_layer=2, n_embd=64)
        before = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        cfg = ReinforceConfig(baseline="rloo", group_size=4, ptx_coef=coef)
        m = reinforce_update(model, None, opt, flat, cfg, ptx_batch=batch)
        changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        assert changed == (coef > 0) and (("reinforce/ptx_nll" in m) == (coef > 0))
        with torch.no_grad():
            losses[coef] = nll(model, batch).item()
    assert losses[1.0] < losses[0.0]  # the step lowered the documents' NLL


def test_ppo_pretraining_mix_lowers_the_documents_nll_against_the_same_update_without_it(digits_rollout):
    import numpy as np

    from agents.learners.pretrain import rehearsal_documents, replay_batches
    from agents.learners.sft import nll
    from lm_envs.tasks.qa.world import KnowledgeQATask

    _, rollout = digits_rollout
    codec = lm_envs.load_codec()
    docs = rehearsal_documents(KnowledgeQATask(seed=0), codec, "agent.ptx_coef")
    batch = next(replay_batches(docs, 4, 32, np.random.default_rng(0), codec.pad_token_id, "agent.ptx_rows"))
    after = {}
    for coef in (0.0, 1.0):
        policy = Policy(build_default_model(codec, seed=0, n_layer=2, n_embd=64))
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        cfg = PPOConfig(ppo_epochs=2, num_minibatches=2, ptx_coef=coef)
        m = ppo_update(policy, frozen_copy(policy.lm), opt, rollout, cfg, KLController(0.05, None, 1), ptx_batch=batch)
        assert ("ppo/ptx_nll" in m) == (coef > 0)
        with torch.no_grad():
            after[coef] = nll(policy.lm, batch).item()
    assert after[1.0] < after[0.0]


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_value_lr_puts_exactly_the_critics_own_weights_in_their_own_group(critic):
    policy = Policy(build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64), critic=critic)
    (one,) = optimizer_groups(policy, PPOConfig(critic=critic))
    assert len(one["params"]) == len(list(policy.parameters())) and "lr" not in one
    actor, critic_group = optimizer_groups(policy, PPOConfig(critic=critic, value_lr=1e-3))
    assert critic_group["lr"] == 1e-3 and "lr" not in actor
    own = list(policy.value_head.parameters()) + (list(policy.critic_lm.parameters()) if critic == "separate" else [])
    assert {id(p) for p in critic_group["params"]} == {id(p) for p in own}
    assert {id(p) for p in actor["params"]} == {id(p) for p in policy.lm.parameters()}


def test_value_lr_moves_the_value_head_faster_and_the_actor_at_its_own_lr(digits_rollout):
    _, rollout = digits_rollout
    moved = {}
    for value_lr in (None, 1e-2):
        policy = Policy(build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64))
        head, lm = policy.value_head.weight.detach().clone(), policy.lm.get_input_embeddings().weight.detach().clone()
        cfg = PPOConfig(ppo_epochs=1, num_minibatches=1, value_lr=value_lr, lr=1e-5)
        opt = torch.optim.Adam(optimizer_groups(policy, cfg), lr=cfg.lr)
        ppo_update(policy, frozen_copy(policy.lm), opt, rollout, cfg, KLController(0.05, None, 1))
        moved[value_lr] = (
            (policy.value_head.weight - head).abs().max().item(),
            (policy.lm.get_input_embeddings().weight - lm).abs().max().item(),
        )
    # one Adam step from the same gradients: the head's step scales with its lr (1000x), the actor's is unchanged
    assert moved[1e-2][0] == pytest.approx(1000 * moved[None][0], rel=1e-3) and moved[None][0] > 0
    assert moved[1e-2][1] == pytest.approx(moved[None][1], rel=1e-6) and moved[None][1] == pytest.approx(1e-5, rel=0.01)


@pytest.mark.parametrize(
    "cfg, match",
    [
        (PPOConfig(value_lr=0.0), r"agent.value_lr must be > 0"),
        (PPOConfig(value_lr=1e-3, critic="none"), r"agent.value_lr needs a critic"),
    ],
)
def test_bad_value_lr_names_the_fix(cfg, match):
    policy = Policy(build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64), critic=cfg.critic)
    with pytest.raises(ValueError, match=match):
        optimizer_groups(policy, cfg)
