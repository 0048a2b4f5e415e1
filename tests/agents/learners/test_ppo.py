"""Grouped PPO: shared-prompt forwards give the full forward's log-probs and values, the rollout's
recorded values are the old values, minibatches are whole groups, and the reference model is never
run when the KL cannot matter."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest
import torch

import lm_envs  # noqa: F401
from agents.learners import ppo as ppo_module
from agents.learners.ppo import KLController, PPOConfig, policy_outputs, ppo_update, score_rollout
from agents.policy.actor_critic import Policy
from agents.policy.models import build_default_model, frozen_copy
from agents.policy.sampling import collect
from agents.policy.scoring import response_logprobs, sequence_inputs

K = 4


def make_policy(critic: str) -> Policy:
    """The same weights every time, with a random value head (a zero one makes every value check trivial)."""
    policy = Policy(build_default_model(lm_envs.load_codec(), seed=0, n_layer=2, n_embd=64), critic=critic)
    torch.manual_seed(1)
    torch.nn.init.normal_(policy.value_head.weight, std=0.5)
    torch.nn.init.normal_(policy.value_head.bias)
    if policy.critic_lm is not None:  # a critic backbone unlike the policy's, so mixing them up shows
        with torch.no_grad():
            for q in policy.critic_lm.parameters():
                q.add_(0.05 * torch.randn_like(q))
    return policy


def sample(group_size: int):
    """A rollout of the shared-critic policy, with the values its head recorded while sampling."""
    venv = gym.make_vec("LMEnv/Math-v0", num_envs=12, autoreset_mode="Disabled", max_new_tokens=16)
    policy = make_policy("shared")
    options = {"group_size": group_size} if group_size > 1 else None
    gen = torch.Generator().manual_seed(0)
    return collect(policy.lm, venv, seed=5, options=options, generator=gen, value_head=policy.value_head)


@pytest.fixture(scope="module")
def grouped_rollout():
    rollout = sample(K)
    assert rollout.group_size == K and rollout.prompt_ids.shape[1] > 1 and rollout.values is not None
    return rollout


def full_forward(policy: Policy, rollout, rows, temperature):
    """The ungrouped reference: Policy.forward over prompt plus completion of every row, sliced."""
    ids, att = sequence_inputs(rollout, rows)
    logits, values = policy.sequence_forward(ids, att)
    P, T = rollout.prompt_ids.shape[1], rollout.tokens.shape[1]
    logp, entropy = response_logprobs(logits, rollout.tokens[rows], P, temperature)
    return logp, entropy, values[:, P - 1 : P - 1 + T].float()


def grads_of(policy: Policy, outputs, m) -> list[torch.Tensor]:
    policy.zero_grad()
    logp, entropy, values = outputs
    (logp[m].sum() + entropy[m].mean() + values[m].sum()).backward()
    return [p.grad.clone() for p in policy.parameters() if p.grad is not None]


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_grouped_log_probs_entropy_and_values_equal_the_full_forward(grouped_rollout, critic):
    rollout, policy = grouped_rollout, make_policy(critic)
    rows = torch.arange(8)  # two whole groups: each prompt run once, its cache repeated
    m = rollout.mask[rows]
    grouped = policy_outputs(policy, rollout, rows, temperature=0.7)
    grouped_grads = grads_of(policy, grouped, m)
    full = full_forward(policy, rollout, rows, temperature=0.7)
    full_grads = grads_of(policy, full, m)
    for a, b in zip(grouped, full):
        torch.testing.assert_close(a[m], b[m], atol=1e-4, rtol=0)
    assert len(grouped_grads) == len(full_grads)
    for a, b in zip(grouped_grads, full_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    # rows that are not whole ordered groups take the full path, with the same numbers
    mixed = torch.tensor([1, 0, 2, 3])
    for a, b in zip(policy_outputs(policy, rollout, mixed, temperature=0.7), full_forward(policy, rollout, mixed, 0.7)):
        torch.testing.assert_close(a[rollout.mask[mixed]], b[rollout.mask[mixed]], atol=1e-4, rtol=0)
    # values only (the old-values pass) are the same values
    with torch.no_grad():
        _, values = score_rollout(policy, None, rollout, temperature=0.7, chunk=6)  # chunks round to whole groups
        full_values = full_forward(policy, rollout, torch.arange(12), 0.7)[2]
    torch.testing.assert_close(values[rollout.mask], full_values[rollout.mask], atol=1e-4, rtol=0)


@pytest.mark.parametrize("group_size", [1, K])
def test_values_recorded_while_sampling_equal_the_full_forward(grouped_rollout, group_size):
    rollout = grouped_rollout if group_size == K else sample(1)
    with torch.no_grad():
        _, _, values = full_forward(make_policy("shared"), rollout, torch.arange(12), 1.0)
    m = rollout.mask
    torch.testing.assert_close(rollout.values[m], values[m], atol=1e-4, rtol=0)
    assert rollout.values[m].std() > 0.1  # a real check: the random head gives varied values


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_grouped_ppo_first_ratio_is_one_and_minibatches_are_whole_groups(grouped_rollout, critic, monkeypatch):
    seen: list[torch.Tensor] = []
    value_passes: list[torch.Tensor] = []
    real = ppo_module.policy_outputs

    def recording(policy, rollout, rows, temperature, actor=True):
        (seen if actor else value_passes).append(rows.clone())
        return real(policy, rollout, rows, temperature, actor)

    monkeypatch.setattr(ppo_module, "policy_outputs", recording)
    policy = make_policy(critic)
    before = [p.detach().clone() for p in policy.parameters()]
    cfg = PPOConfig(ppo_epochs=2, num_minibatches=3, group_size=K)
    m = ppo_update(
        policy, frozen_copy(policy.lm), torch.optim.Adam(policy.parameters(), lr=1e-3), grouped_rollout, cfg,
        KLController(0.05, None, 1), generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    # the shared head's values came with the rollout; a separate critic scores its own (12 rows: one chunk)
    assert len(value_passes) == (0 if critic == "shared" else 1)
    assert m["ppo/first_ratio_max_error"] < 1e-3  # the grouped loss recomputes the sampler's log-probs
    assert m["ppo/kl_ref"] == pytest.approx(0.0, abs=1e-3)  # policy == reference before the update
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert len(seen) == 6  # 2 epochs x 3 minibatches of one group
    for rows in seen:
        starts = rows[::K]
        assert len(rows) % K == 0 and (starts % K == 0).all()
        assert torch.equal(rows, (starts[:, None] + torch.arange(K)).reshape(-1))
    assert sorted(torch.cat(seen[:3]).tolist()) == list(range(12))  # an epoch covers every episode once


def test_grouped_update_equals_the_ungrouped_update(grouped_rollout):
    """One epoch of one minibatch: the same loss and gradient whether groups share their prompt forward,
    and whether the old values come from the rollout or from a pass of their own."""
    results = []
    for k, recorded in ((K, True), (K, False), (1, False)):
        rollout = dataclasses.replace(grouped_rollout, group_size=k)
        rollout = rollout if recorded else dataclasses.replace(rollout, values=None)
        policy = make_policy("shared")
        opt = torch.optim.SGD(policy.parameters(), lr=0.1)
        cfg = PPOConfig(ppo_epochs=1, num_minibatches=1, group_size=k)
        metrics = ppo_update(policy, frozen_copy(policy.lm), opt, rollout, cfg, KLController(0.05, None, 1))
        results.append((metrics, [p.detach().clone() for p in policy.parameters()]))
    (m_first, p_first), *others = results
    for m_other, p_other in others:
        for key in ("ppo/pg", "ppo/vf", "ppo/entropy", "ppo/value_mean", "ppo/kl_ref", "ppo/explained_variance"):
            assert m_first[key] == pytest.approx(m_other[key], abs=1e-4), key
        for a, b in zip(p_first, p_other):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


class Forbidden(torch.nn.Module):
    """A reference model that must not be run."""

    def forward(self, *args, **kwargs):
        raise AssertionError("the reference model was run")


@pytest.mark.parametrize("group_size", [1, K])
def test_kl_coef_zero_never_runs_the_reference(grouped_rollout, group_size, monkeypatch):
    rollout = dataclasses.replace(grouped_rollout, group_size=group_size)
    cfg = PPOConfig(ppo_epochs=1, num_minibatches=2, kl_coef=0.0, group_size=group_size)
    real = ppo_module.policy_outputs

    def loss_forward_only(policy, rollout, rows, temperature, actor=True):
        assert actor, "an old-values pass ran although the rollout recorded the values"
        return real(policy, rollout, rows, temperature, actor)

    monkeypatch.setattr(ppo_module, "policy_outputs", loss_forward_only)  # with recorded values, no pass at all
    for ref in (Forbidden(), None):
        policy = make_policy("shared")
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        m = ppo_update(policy, ref, opt, rollout, cfg, KLController(0.0, None, 1))
        assert m["ppo/kl_ref"] == 0.0 and m["ppo/first_ratio_max_error"] < 1e-3
    monkeypatch.undo()
    # a KL penalty, or an adaptive target (which measures the KL), does need the reference
    with pytest.raises(ValueError, match="needs a reference model"):
        ppo_update(make_policy("shared"), None, opt, rollout, cfg, KLController(0.05, None, 1))
    with pytest.raises(AssertionError, match="reference model was run"):
        ppo_update(make_policy("shared"), Forbidden(), opt, rollout, cfg, KLController(0.0, 1.0, 1))
