"""Rejection-sampling fine-tuning: filtering on the env tokens, RFT / RAFT / ReST-EM rounds, expert iteration."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
from agents.learners import rft
from agents.learners.rft import RFTConfig, build_examples, train_rft
from agents.learners.sft import SFTConfig, encode_demo, train_sft
from agents.policy.models import build_default_model
from agents.policy.sampling import collect

torch.set_num_threads(1)

ENV = "LMEnv/TargetWord-v0"
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2}


def codec():
    return gym.make(ENV).unwrapped.codec


# ---------------------------------------------------------------- selectors on hand-built samples


@pytest.fixture(scope="module")
def half_trained():
    """A tiny model with a short SFT warm start: it repeats the word sometimes, not always."""
    env = gym.make(ENV).unwrapped
    model = build_default_model(env.codec, seed=0, **TINY)
    train_sft(model, env.task, env.codec, SFTConfig(steps=100, batch_size=8, lr=3e-3, warmup_steps=2), seed=0)
    return model


def grouped_rollout(model, prompts, k):
    """``k`` samples of each of the first ``prompts`` train words, consecutive per prompt."""
    venv = gym.make_vec(ENV, num_envs=prompts * k, autoreset_mode="Disabled")
    options = {"index": [i // k for i in range(prompts * k)], "group_size": k}
    return venv, collect(model, venv, options=options, generator=torch.Generator().manual_seed(0))


def test_build_examples_keeps_only_correct_samples_made_of_the_env_tokens(half_trained):
    venv, rollout = grouped_rollout(half_trained, prompts=8, k=4)
    success = rollout.success().bool()
    assert 0 < success.sum() < 32, "the warm start should make some but not all samples correct"
    examples, stats = build_examples(rollout, keep="correct", dedupe=False)
    assert len(examples) == int(success.sum()) == stats["kept"]
    buf, plen, length = venv.episodes.tokens, venv.episodes.prompt_length, venv.episodes.length
    for (prompt, generated), i in zip(examples, success.nonzero()[:, 0].tolist()):
        # the env's own buffer holds exactly these tokens: prompt as encoded, then the actions it received
        assert prompt == buf[i, : plen[i]].tolist()
        assert generated == buf[i, plen[i] : length[i]].tolist()
        # ... and so do the rollout tensors
        assert prompt == rollout.prompt_ids[i][rollout.prompt_mask[i].bool()].tolist()
        assert generated == rollout.tokens[i][rollout.mask[i]].tolist()
        assert prompt == venv.codec.encode(rollout.reset_infos[i]["prompt"], add_special_tokens=True)

    deduped, dstats = build_examples(rollout, keep="correct", dedupe=True)
    assert len(deduped) == len(set(map(lambda e: (tuple(e[0]), tuple(e[1])), examples)))
    assert dstats["kept"] + dstats["duplicates"] == len(examples) and dstats["duplicates"] > 0

    best, bstats = build_examples(rollout, keep="best", dedupe=False)
    assert len(best) == 8 and bstats["groups_kept"] == 8  # RAFT: top-1 of each group of 4
    top = rollout.returns.view(8, 4).max(1).values
    assert bstats["kept_return_sum"] == pytest.approx(float(top.sum()))
    strict, _ = build_examples(rollout, keep="best", min_reward=1.0, dedupe=False)
    assert len(strict) == int((top >= 1.0).sum())
    with pytest.raises(ValueError, match="keep mode"):
        build_examples(rollout, keep="all")


# ---------------------------------------------------------------- RFT training


def test_rounds_that_keep_nothing_are_logged_and_change_nothing():
    model = build_default_model(codec(), seed=0, **TINY)
    before = [p.detach().clone() for p in model.parameters()]
    logs = []
    cfg = RFTConfig(group_size=2, prompts_per_round=4, keep="correct", sft_steps=3)
    train_rft(model, ENV, cfg, rounds=2, seed=0, log=lambda r, m: logs.append((r, m)))  # untrained: never exactly right
    assert [r for r, _ in logs] == [0, 1]
    assert all(m["rft/kept"] == 0 and m["rft/sft_steps"] == 0 for _, m in logs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_rest_em_fine_tunes_every_round_from_the_base_weights(monkeypatch):
    finetune, starts, base, optimizers = rft.finetune, [], [], []

    def spy(model, examples, cfg, pad_id, rng, **kwargs):
        starts.append(all(torch.equal(a, b) for a, b in zip(base, model.parameters())))
        optimizers.append(kwargs["optimizer"])
        return finetune(model, examples, cfg, pad_id, rng, **kwargs)

    monkeypatch.setattr(rft, "finetune", spy)
    for from_base, expected in [(False, [True, False]), (True, [True, True])]:
        model = build_default_model(codec(), seed=0, **TINY)
        base[:] = [p.detach().clone() for p in model.parameters()]
        starts.clear()
        cfg = RFTConfig(group_size=2, prompts_per_round=2, keep="best", sft_steps=2, lr=1e-2, from_base=from_base)
        train_rft(model, ENV, cfg, rounds=2, seed=0)
        assert starts == expected  # RFT/RAFT keep training the latest model; ReST-EM restarts from the base
        # ... each round with a fresh AdamW (None: finetune builds it); only expert iteration continues one
        assert optimizers[-2:] == [None, None]
        assert not all(torch.equal(a, b) for a, b in zip(base, model.parameters()))


def test_raft_learns_target_word_from_an_untrained_model():
    model = build_default_model(codec(), seed=0, **TINY)
    before = [p.detach().clone() for p in model.parameters()]
    logs = []
    # RAFT on a dense reward. An untrained model rarely types even the right first letter, so K=128 samples
    # per word find one almost every round; 8 prompts = every word once keeps the kept set balanced (with
    # few words over-represented the model collapses onto them); min_reward drops zero-credit "bests".
    cfg = RFTConfig(
        group_size=128,
        prompts_per_round=8,
        keep="best",
        min_reward=0.1,
        sft_steps=20,
        batch_size=8,
        lr=2e-3,
    )
    train_rft(model, ENV, cfg, rounds=8, seed=0, log=lambda r, m: logs.append(m))
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert len(logs) == 8 and all(0 <= m["rft/kept_fraction"] <= 1 for m in logs)
    assert logs[0]["rft/sample_return"] < 0.05  # untrained: random tokens
    venv = gym.make_vec(ENV, num_envs=64, autoreset_mode="Disabled", split="test")
    after = collect(
        model, venv, options={"index": [i % 8 for i in range(64)]}, generator=torch.Generator().manual_seed(1)
    )
    assert after.returns.mean() > logs[0]["rft/sample_return"] + 0.3, [m["rft/sample_return"] for m in logs]


def test_expert_iteration_pools_the_kept_samples_of_every_round_and_mixes_in_demonstrations(monkeypatch):
    finetune, seen = rft.finetune, []

    def spy(model, examples, cfg, pad_id, rng, optimizer=None, demos=None, **kwargs):
        seen.append((list(examples), optimizer, demos(3) if demos else None))
        return finetune(model, examples, cfg, pad_id, rng, optimizer=optimizer, demos=demos, **kwargs)

    monkeypatch.setattr(rft, "finetune", spy)
    model = build_default_model(codec(), seed=0, **TINY)
    logs = []
    cfg = RFTConfig(
        group_size=4, prompts_per_round=2, keep="best", sft_steps=2, batch_size=4, accumulate=True, demo_fraction=0.5
    )
    train_rft(model, ENV, cfg, rounds=3, seed=0, log=lambda r, m: logs.append(m), demo_problems=2)
    pools = [examples for examples, _, _ in seen]
    # each round trains on everything kept so far: the earlier rounds' samples first, then its new ones
    assert (
        [len(p) for p in pools] == [m["rft/pool"] for m in logs] == list(np.cumsum([m["rft/pool_new"] for m in logs]))
    )
    assert all(pools[i] == pools[i + 1][: len(pools[i])] for i in range(2))
    keys = [(tuple(p), tuple(t)) for p, t in pools[-1]]
    assert len(keys) == len(set(keys))  # deduplicated across rounds
    # one AdamW continues through the rounds
    assert seen[0][1] is not None and all(opt is seen[0][1] for _, opt, _ in seen)
    # demonstrations are gold solutions of the split's first demo_problems problems, as SFT encodes them
    env = gym.make(ENV).unwrapped
    gold = [encode_demo(env.codec, env.task.problem("train", i)) for i in range(2)]
    assert all(d in gold for _, _, demos in seen for d in demos)


@pytest.fixture
def batches(monkeypatch):
    """The examples of every batch ``rft.finetune`` collates, in order."""
    rows = []
    real_collate = rft.collate
    monkeypatch.setattr(rft, "collate", lambda ex, pad: rows.append(list(ex)) or real_collate(ex, pad))
    return rows


def test_finetune_mixes_demonstrations_into_every_batch(batches):
    model = build_default_model(codec(), seed=0, **TINY)
    kept, demo = ([5, 6], [7, 8]), ([5, 6], [9, 10])
    cfg = RFTConfig(sft_steps=3, batch_size=8, demo_fraction=0.25)
    rft.finetune(model, [kept] * 20, cfg, 0, np.random.default_rng(0), demos=lambda n: [demo] * n)
    assert [(b.count(kept), b.count(demo)) for b in batches] == [(6, 2)] * 3


def test_demo_fraction_one_is_the_demonstrations_only_control_and_below_one_keeps_a_sample_row(batches):
    model = build_default_model(codec(), seed=0, **TINY)
    kept, demo = ([5, 6], [7, 8]), ([5, 6], [9, 10])
    before = [p.detach().clone() for p in model.parameters()]
    losses = rft.finetune(
        model,
        [],
        RFTConfig(sft_steps=2, batch_size=8, demo_fraction=1.0),
        0,
        np.random.default_rng(0),
        demos=lambda n: [demo] * n,
    )
    assert len(losses) == 2 and batches == [[demo] * 8] * 2  # trains with nothing kept: demonstrations only
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    batches.clear()
    cfg = RFTConfig(sft_steps=1, batch_size=8, demo_fraction=0.99)  # rounds to 8 demos: one row stays a sample
    rft.finetune(model, [kept] * 4, cfg, 0, np.random.default_rng(0), demos=lambda n: [demo] * n)
    assert [(b.count(kept), b.count(demo)) for b in batches] == [(1, 7)]


def test_a_demonstrations_only_round_trains_though_it_keeps_nothing():
    model = build_default_model(codec(), seed=0, **TINY)
    cfg = RFTConfig(group_size=2, prompts_per_round=2, sft_steps=2, batch_size=4, demo_fraction=1.0, num_envs=4)
    metrics = rft.rft_round(model, ENV, cfg, 0)
    assert metrics["rft/kept"] == 0 and metrics["rft/sft_steps"] == 2  # an untrained policy solves nothing


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_demo_fraction_out_of_range_names_the_fix(bad):
    with pytest.raises(ValueError, match=r"demo_fraction must be in \[0, 1\]"):
        train_rft(build_default_model(codec(), seed=0, **TINY), ENV, RFTConfig(demo_fraction=bad), rounds=1)


def test_accumulate_without_a_pool_names_the_fix():
    with pytest.raises(ValueError, match="pass the same list as pool="):
        rft.rft_round(build_default_model(codec(), seed=0, **TINY), ENV, RFTConfig(accumulate=True), 0)


def test_max_group_success_keeps_only_prompts_the_policy_finds_hard(half_trained):
    _, rollout = grouped_rollout(half_trained, prompts=8, k=8)
    rate = rollout.success().view(8, 8).mean(1)
    everything, _ = build_examples(rollout, dedupe=False)
    hard, stats = build_examples(rollout, dedupe=False, max_group_success=0.5)
    expected = int(sum(8 * r for r in rate.tolist() if r <= 0.5))
    assert len(hard) == expected < len(everything), rate.tolist()
    assert stats["groups_kept"] == int(((rate > 0) & (rate <= 0.5)).sum())
    with pytest.raises(ValueError, match=r"max_group_success must be in \(0, 1\]"):
        train_rft(half_trained, ENV, RFTConfig(max_group_success=0.0), rounds=1)
