"""A random-reward run resumes exactly: RandomReward's repeat counts are part of the checkpoint.

RandomReward draws a fresh coin each time it scores a (problem, text) pair again, so its next coins
depend on how often it has scored each pair. Near-greedy sampling on Digits makes the policy repeat
its texts, so coins after a resume that forgot the counts would be the early ones again.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

import agents.learners.reinforce as reinforce
from agents.run import run, to_run_config
from agents.run.config import register_configs
from agents.run.logger import read_metrics
from leaderboard.baselines import random_reward_env_kwargs

register_configs()
ENV_ID = "LMEnv/Digits-v0"
OVERRIDES = [
    "+experiment=smoke",
    "agent=grpo",
    "agent.num_envs=8",
    "agent.group_size=4",
    "agent.temperature=0.05",  # the policy writes the same text again and again: the counts decide the coins
    "sft.steps=0",
    "train.iterations=4",
    "train.checkpoint_every=2",
    "train.eval_every=0",
    "model.threads=1",
]
TIMING = ("time", "_s", "tokens_per_s")


def config(out):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        composed = compose(config_name="config", overrides=[f"output_dir={out}", f"env.id={ENV_ID}", *OVERRIDES])
    cfg = to_run_config(composed)
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, kwargs=random_reward_env_kwargs(ENV_ID, 5)))


def coins(out):
    """The coins' returns and successes per logged rollout (what the learner was paid)."""
    return [
        {k: v for k, v in r.items() if k.startswith("rollout/") and not any(k.endswith(t) for t in TIMING)}
        for r in read_metrics(out / "metrics.jsonl")
        if "rollout/return_mean" in r
    ]


def killed_run(out, monkeypatch):
    """Run until iteration 3 (0-based) starts, as a kill would stop it: checkpoint step-2 holds."""
    real, calls = reinforce.ReinforceLearner.iteration, []

    def iteration(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(reinforce.ReinforceLearner, "iteration", iteration)
    with pytest.raises(KeyboardInterrupt):
        run(config(out))
    monkeypatch.undo()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted run (shared by the tests)."""
    out = tmp_path_factory.mktemp("random-reward") / "full"
    run(config(out))
    return out


def test_a_resumed_random_reward_run_draws_the_coins_an_uninterrupted_one_draws(full, tmp_path, monkeypatch):
    part = tmp_path / "part"
    killed_run(part, monkeypatch)
    state = json.loads((part / "checkpoints" / "step-000002" / "state.json").read_text())
    seen = state["learner"]["reward"]["seen"]
    assert sum(seen.values()) == 2 * 8  # every episode of the two iterations counted
    assert max(seen.values()) > 1  # texts were repeated: the counts matter for the next coins
    run(config(part))
    assert coins(part) == coins(full)
    a, b = (load_file(d / "model" / "model.safetensors") for d in (full, part))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_that_forgets_the_counts_would_draw_other_coins(full, tmp_path, monkeypatch):
    """The check above can fail: without the reward's state in the checkpoint the coins differ."""
    part = tmp_path / "part"
    killed_run(part, monkeypatch)
    monkeypatch.setattr(reinforce, "load_curriculum_state", lambda venv, state: None)
    run(config(part))
    assert coins(part)[:2] == coins(full)[:2] and coins(part) != coins(full)
