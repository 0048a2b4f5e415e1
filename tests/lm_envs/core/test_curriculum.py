"""Reverse-curriculum start states: mixed and staged schedules, info, checkpointable state."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from lm_envs import ListTask, Problem, TokenEnv, TokenVectorEnv
from lm_envs.core.curriculum import ReverseCurriculum


def test_mixed_samples_every_prefix_length_but_never_the_full_solution(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, curriculum="mixed")
    seen = Counter()
    for seed in range(400):
        _, info = env.reset(seed=seed, options={"index": 0})  # 3 gold steps
        k = info["prefix"].count("\n")
        assert info["prefix"] == step_task.problem("train", 0).prefix(k) and info["stage"] == 3 - k
        seen[k] += 1
    assert set(seen) == {0, 1, 2} and min(seen.values()) > 100


def test_staged_schedule_advances_when_the_success_rate_passes_the_threshold(step_task, step_reward):
    cur = ReverseCurriculum("staged", threshold=0.75, window=4, min_episodes=4)
    env = TokenEnv(step_task, step_reward, curriculum=cur)
    eos = env.codec.eos_token_id

    def episode(answer_right: bool) -> dict:
        _, info = env.reset(options={"index": 0})
        text = "#### 14" if answer_right else "#### 99"
        for t in env.codec.encode(text) + [eos]:
            *_, term, trunc, end = env.step(t)
            if term or trunc:
                return info | end
        raise AssertionError

    first = episode(True)
    assert first["stage"] == 1 and first["prefix"] == "3 * 4 = 12\n2 + 12 = 14\n"
    for _ in range(2):
        episode(True)
    assert cur.stage == 1
    last = episode(False)  # 3/4 = 0.75 reaches the threshold
    assert cur.stage == 2 and last["curriculum"] == {"stage": 2, "success_rates": {"1": 0.75}}
    nxt = episode(True)
    assert nxt["stage"] == 2 and nxt["prefix"] == "3 * 4 = 12\n"
    state = json.loads(json.dumps(cur.state_dict()))  # survives a JSON checkpoint
    restored = ReverseCurriculum("staged", threshold=0.75, window=4, min_episodes=4)
    restored.load_state_dict(state)
    assert restored.stage == 2 and restored.success_rates() == cur.success_rates()
    with pytest.raises(ValueError, match="mode"):
        ReverseCurriculum("mixed").load_state_dict(state)


def test_vector_env_shares_one_schedule(step_task, step_reward):
    venv = TokenVectorEnv(4, step_task, step_reward, curriculum={"mode": "staged", "window": 4, "min_episodes": 4})
    _, info = venv.reset(seed=0)
    assert (info["stage"] == 1).all()
    eos = np.full(4, venv.codec.eos_token_id)
    _, _, term, _, info = venv.step(eos)
    assert term.all() and info["curriculum"]["stage"].tolist() == [1, 1, 1, 1]
    assert venv.episodes.curriculum.counts == {1: 4}


def test_explicit_prefix_overrides_the_curriculum(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, curriculum="mixed")
    _, info = env.reset(options={"index": 0, "prefix": ""})
    assert info["prefix"] == "" and info["stage"] == 0


def test_bad_curriculum_input_raises(step_reward):
    task = ListTask({"train": [Problem("a", "q", "1")]})
    env = TokenEnv(task, step_reward, curriculum="mixed")
    with pytest.raises(ValueError, match="no gold solution steps"):
        env.reset(seed=0)
    with pytest.raises(ValueError, match="mode"):
        TokenEnv(task, step_reward, curriculum="backwards")
    with pytest.raises(ValueError, match="threshold"):
        ReverseCurriculum("staged", threshold=0)
    with pytest.raises(TypeError, match="curriculum must be"):
        TokenEnv(task, step_reward, curriculum=3)
