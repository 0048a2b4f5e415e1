"""TokenVectorEnv: equality with single envs, batched reward calls, autoreset modes, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from lm_envs import TokenEnv, TokenVectorEnv


def scripted_actions(codec, problems, n_steps: int, rng) -> np.ndarray:
    """Per-env token streams mixing gold solutions and random tokens, shape (n_steps, n)."""
    cols = []
    for k, p in enumerate(problems):
        ids = codec.encode(p.solution() + "\n") if k % 2 == 0 else []
        ids += rng.integers(4, codec.vocab_size, size=n_steps).tolist()
        cols.append(ids[:n_steps])
    return np.array(cols, dtype=np.int64).T


def test_vector_env_equals_single_envs_on_same_seeds(step_task, step_reward):
    n, steps = 6, 40
    venv = TokenVectorEnv(n, step_task, step_reward, max_new_tokens=24, autoreset_mode="SameStep")
    singles = [TokenEnv(step_task, step_reward, max_new_tokens=24) for _ in range(n)]
    vobs, vinfo = venv.reset(seed=7)
    sobs = [env.reset(seed=7 + i) for i, env in enumerate(singles)]
    for i in range(n):
        assert vinfo["problem_id"][i] == sobs[i][1]["problem_id"]
        np.testing.assert_array_equal(vobs["input_ids"][i], sobs[i][0]["input_ids"])
    problems = [venv.episodes.problems[i] for i in range(n)]
    actions = scripted_actions(venv.codec, problems, steps, np.random.default_rng(0))
    for t in range(steps):
        vobs, vr, vterm, vtrunc, vinfo = venv.step(actions[t])
        for i, env in enumerate(singles):
            obs, r, term, trunc, info = env.step(actions[t, i])
            assert vr[i] == pytest.approx(r) and vterm[i] == term and vtrunc[i] == trunc
            if term or trunc:
                assert vinfo["_final_info"][i]
                assert vinfo["final_info"]["completion"][i] == info["completion"]
                np.testing.assert_array_equal(vinfo["final_obs"][i]["input_ids"], obs["input_ids"])
                obs, info = env.reset()  # same-step autoreset draws from the env's own RNG
                assert vinfo["problem_id"][i] == info["problem_id"]
            np.testing.assert_array_equal(vobs["input_ids"][i], obs["input_ids"])


def test_reward_calls_are_batched_per_vector_step(step_task, step_reward):
    n = 8
    venv = TokenVectorEnv(n, step_task, step_reward)
    venv.reset(options={"index": 0})
    text_ids = venv.codec.encode("3 * 4 = 12\n2 + 12 = 14\n#### 14\n")
    for t in text_ids:
        _, r, term, _, info = venv.step(np.full(n, t))
    assert term.all() and r == pytest.approx(np.ones(n))  # the last token closes '#### 14' and ends
    assert step_reward.step_calls == [n, n, n] and step_reward.outcome_calls == [n]
    assert list(info["completion"]) == ["3 * 4 = 12\n2 + 12 = 14\n#### 14\n"] * n


def test_next_step_autoreset_ignores_the_action_and_restarts(step_task, step_reward):
    venv = TokenVectorEnv(2, step_task, step_reward, max_new_tokens=2)
    venv.reset(seed=0)
    venv.step(np.array([5, 5]))
    _, _, _, trunc, info = venv.step(np.array([5, 5]))
    assert trunc.all() and info["_completion"].all()
    obs, r, term, trunc, info = venv.step(np.array([-1, 10**9]))  # ignored: those envs restart
    assert not (term | trunc).any() and (r == 0).all() and info["_prompt"].all()
    assert (obs["attention_mask"].sum(1) == np.array(info["prompt_tokens"])).all()


def test_disabled_autoreset_collects_exactly_one_episode_per_env(step_task, step_reward):
    venv = TokenVectorEnv(3, step_task, step_reward, max_new_tokens=20, autoreset_mode=AutoresetMode.DISABLED)
    venv.reset(options={"index": [0, 1, 3]})
    eos = venv.codec.eos_token_id
    lengths = [3, 10, 99]
    ends = 0
    for t in range(25):
        actions = np.array([eos if t + 1 == L else 7 for L in lengths])
        _, r, term, trunc, info = venv.step(actions)
        ends += int(info.get("_completion", np.zeros(3, bool)).sum())
        done = term | trunc
        if done.all():
            break
    assert ends == 3 and done.all() and t == 19
    assert term.tolist() == [True, True, False] and trunc.tolist() == [False, False, True]
    _, r, term2, trunc2, _ = venv.step(np.zeros(3, dtype=np.int64))  # finished envs stay finished
    assert (r == 0).all() and (term2 == term).all() and (trunc2 == trunc).all()
    _, info = venv.reset(options={"reset_mask": np.array([False, True, False]), "index": 2})
    assert info["_prompt"].tolist() == [False, True, False] and info["problem_id"][1] == "p2"
    _, _, term3, _, _ = venv.step(np.full(3, 7))
    assert term3.tolist() == [True, False, False]


def test_make_vec_uses_the_native_vector_env():
    venv = gym.make_vec("LMEnv/TargetWord-v0", num_envs=16)
    assert isinstance(venv, TokenVectorEnv) and venv.num_envs == 16
    obs, info = venv.reset(seed=0)
    assert obs["input_ids"].shape == (16, venv.single_observation_space["input_ids"].shape[0])
    assert obs in venv.observation_space


@pytest.mark.parametrize(
    "actions, match",
    [
        (np.zeros(3, dtype=np.int64), "shape"),
        (np.zeros(2, dtype=np.float32), "int array"),
        (np.array([0, -3]), "env 1"),
    ],
)
def test_bad_actions_raise(step_task, step_reward, actions, match):
    venv = TokenVectorEnv(2, step_task, step_reward)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        venv.step(actions)


def test_bad_reset_options_raise(step_task, step_reward):
    venv = TokenVectorEnv(2, step_task, step_reward)
    with pytest.raises(ValueError, match="2 envs"):
        venv.reset(options={"index": [0, 1, 2]})
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": [1, 0]})
    with pytest.raises(ValueError, match="unknown reset option"):
        venv.reset(options={"seed": 3})
    with pytest.raises(ValueError, match="autoreset_mode"):
        TokenVectorEnv(2, step_task, step_reward, autoreset_mode="sometimes")
    with pytest.raises(RuntimeError, match="reset"):
        TokenVectorEnv(2, step_task, step_reward).step(np.zeros(2, dtype=np.int64))


def test_group_size_gives_groups_the_same_problem_and_start_state(step_task, step_reward):
    venv = TokenVectorEnv(6, step_task, step_reward, curriculum="mixed")
    _, info = venv.reset(seed=3, options={"group_size": 3})
    ids, prefixes = list(info["problem_id"]), list(info["prefix"])
    assert ids[0:3] == [ids[0]] * 3 and ids[3:6] == [ids[3]] * 3
    assert prefixes[0:3] == [prefixes[0]] * 3 and prefixes[3:6] == [prefixes[3]] * 3
    with pytest.raises(ValueError, match="group_size"):
        venv.reset(options={"group_size": 4})


def test_info_values_of_different_types_across_envs_are_batched(step_task):
    def reward(problem, completion):
        return 0.0, {"first_error": None if "x" in completion else 0, "score": 1 if "x" in completion else 0.5}

    venv = TokenVectorEnv(3, step_task, reward, max_new_tokens=1)
    venv.reset(seed=0)
    x, y = venv.codec.encode("x")[0], venv.codec.encode("y")[0]
    *_, info = venv.step(np.array([y, x, y]))
    assert list(info["outcome"]["first_error"]) == [0, None, 0]
    assert list(info["outcome"]["score"]) == [0.5, 1, 0.5]
