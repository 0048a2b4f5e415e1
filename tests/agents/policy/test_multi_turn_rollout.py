"""Multi-turn rollouts: env tokens prefilled in batch, kept out of every loss, and the same episodes as the env's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.learners.ppo import compute_gae
from agents.learners.reinforce import ReinforceConfig, group_advantages, reinforce_update
from agents.learners.rft import build_examples
from agents.learners.sft import collate
from agents.policy import sampling
from agents.policy.models import build_default_model, positions
from agents.policy.sampling import collect
from agents.policy.scoring import response_logprobs, sequence_inputs
from lm_envs import ListTask, Problem, TokenEnv, TokenVectorEnv
from lm_envs.core.task import Reply


class Chatty(ListTask):
    """A turn ends on any ``e``; the env replies with 0-2 words (so rows get env tokens of different lengths)."""

    turn_stops = ("e",)

    def __init__(self) -> None:
        super().__init__({"train": [Problem(str(i), f"Say {i}:", "x") for i in range(5)]})

    def respond(self, problem, turns, final):
        return None if final else Reply(" ok" * (len(turns) % 3), reward=0.1)


def longish(problem, completion):
    return float(len(completion) > 10)


def make(n=6, **kw):
    return TokenVectorEnv(n, Chatty(), longish, max_new_tokens=40, autoreset_mode="Disabled", **kw)


@pytest.fixture(scope="module")
def chatty_rollout():
    venv = make(8)
    model = build_default_model(venv.codec, seed=1, n_layer=2, n_embd=64)
    rollout = collect(model, venv, seed=3, options={"group_size": 4}, generator=torch.Generator().manual_seed(0))
    return venv, model, rollout


@pytest.mark.parametrize("overhead", [0.0, 1024.0], ids=["one-per-forward", "wide"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batched_prefill_of_env_tokens_gives_the_full_forward_log_probs(arch, overhead, monkeypatch):
    """Env tokens read one per forward (the CPU cost model) or several at once, holes and compaction
    included (a launch-bound device's): the log-probs are the full forward's either way."""
    venv = make()
    model = build_default_model(venv.codec, seed=1, arch=arch)
    compactions, widths = [], []
    original, width = sampling._compact_cache, sampling.forward_width
    monkeypatch.setattr(sampling, "_compact_cache", lambda past, attn: compactions.append(1) or original(past, attn))
    monkeypatch.setattr(sampling, "forward_width", lambda *a: widths.append(width(*a)) or widths[-1])
    monkeypatch.setitem(sampling.FORWARD_OVERHEAD, "cpu", overhead)
    rollout = collect(model, venv, seed=3, generator=torch.Generator().manual_seed(0), prune_fraction=0.01)
    if overhead:
        assert max(widths) > 1 and compactions, "no wide forward or no compaction: the test no longer covers them"
    else:
        assert widths.count(1) > len(widths) / 2, "the CPU cost model should mostly read env tokens one per forward"
    pm = rollout.policy_mask
    assert (rollout.mask & ~pm).any(), "the env appended no tokens: the test needs replies"
    obs = venv.episodes.observation()
    for i in range(venv.num_envs):
        n, p = int(rollout.mask[i].sum()), int(venv.episodes.prompt_length[i])
        np.testing.assert_array_equal(obs["input_ids"][i, p : p + n], rollout.tokens[i, :n].numpy())
        np.testing.assert_array_equal(obs["source"][i, p : p + n] == 1, pm[i, :n].numpy())
    ids, att = sequence_inputs(rollout)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=att, position_ids=positions(att)).logits
    logp, _ = response_logprobs(logits, rollout.tokens, rollout.prompt_ids.shape[1])
    torch.testing.assert_close(logp[pm], rollout.logprobs[pm], atol=2e-4, rtol=0)
    assert (rollout.logprobs[~pm] == 0).all() and (rollout.rewards[~pm] == 0).all()
    assert rollout.num_tokens == int(pm.sum())


def test_the_rollout_is_what_stepping_the_single_env_gives(chatty_rollout):
    venv, _, rollout = chatty_rollout
    for i in range(venv.num_envs):
        env = TokenEnv(Chatty(), longish, max_new_tokens=40)
        env.reset(options={"problem": venv.episodes.problems[i]})
        row = rollout.tokens[i][rollout.mask[i]].tolist()
        policy = rollout.policy_mask[i][rollout.mask[i]].tolist()
        rewards, t = [], 0
        while t < len(row):
            assert policy[t], "an env token where the policy should act"
            obs, r, term, trunc, info = env.step(row[t])
            rewards.append(r)
            t += 1 + len(info.get("env_tokens", []))
            assert row[t - len(info.get("env_tokens", [])) : t] == info.get("env_tokens", [])
        assert term or trunc
        assert rewards == rollout.rewards[i][rollout.policy_mask[i]].tolist()
        assert info["completion"] == rollout.infos[i]["completion"]


def test_policy_gradient_equals_the_hand_computed_one_on_policy_tokens_only(chatty_rollout):
    venv, model, rollout = chatty_rollout
    cfg = ReinforceConfig(baseline="rloo", group_size=4, max_grad_norm=1e9)
    adv = group_advantages(rollout.returns.float(), 4, "rloo")
    assert adv.abs().sum() > 0

    def hand_gradient(mask):
        model.zero_grad()
        ids, att = sequence_inputs(rollout)
        logits = model(input_ids=ids, attention_mask=att, position_ids=positions(att)).logits
        logp, _ = response_logprobs(logits, rollout.tokens, rollout.prompt_ids.shape[1])
        m = mask.float()
        (-(adv[:, None] * logp * m).sum() / m.sum()).backward()
        return [p.grad.clone() for p in model.parameters()]

    expected = hand_gradient(rollout.policy_mask)
    with_env_tokens = hand_gradient(rollout.mask)  # what leaking env tokens into the loss would give
    before = [p.detach().clone() for p in model.parameters()]
    reinforce_update(model, None, torch.optim.SGD(model.parameters(), lr=1.0), rollout, cfg)
    step = [b - p.detach() for b, p in zip(before, model.parameters())]  # SGD, lr 1: the gradient itself
    with torch.no_grad():
        for p, b in zip(model.parameters(), before):
            p.copy_(b)
    for a, b in zip(step, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)
    assert any(not torch.allclose(a, b, atol=1e-5, rtol=1e-3) for a, b in zip(step, with_env_tokens))


def test_gae_skips_env_tokens_as_if_they_were_not_there():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 9, dtype=torch.float64), torch.randn(3, 9, dtype=torch.float64)
    mask = torch.tensor(
        [[1, 1, 0, 0, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool
    )
    rewards, values = rewards * mask, values * mask
    adv, ret = compute_gae(rewards, values, mask, 0.9, 0.8)
    for i in range(3):
        keep = mask[i]
        a, r = compute_gae(rewards[i, keep][None], values[i, keep][None], torch.ones(1, int(keep.sum())), 0.9, 0.8)
        torch.testing.assert_close(adv[i, keep], a[0])
        torch.testing.assert_close(ret[i, keep], r[0])
        assert (adv[i, ~keep] == 0).all() and (ret[i, ~keep] == 0).all()


def test_rft_examples_keep_env_tokens_in_the_input_and_out_of_the_labels(chatty_rollout):
    _, _, rollout = chatty_rollout
    examples, _ = build_examples(rollout, keep="best")
    assert examples and all(len(e) == 3 and len(e[1]) == len(e[2]) for e in examples)
    batch = collate(examples, pad_id=0)
    for row, (p, t, trained) in enumerate(examples):
        labels = batch["labels"][row, len(p) : len(p) + len(t)]
        assert labels.tolist() == [x if k else -100 for x, k in zip(t, trained)]
        assert batch["input_ids"][row, len(p) : len(p) + len(t)].tolist() == t
