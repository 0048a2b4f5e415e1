"""Registry-driven checks: every registered lm_envs id gets them automatically."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lm_envs

IDS = lm_envs.registered_ids()


def test_builtin_ids_are_registered():
    assert "LMEnv/TargetWord-v0" in IDS
    for env_id in IDS:
        assert gym.spec(env_id).version is not None, f"{env_id} needs a -vN version"


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = make_quietly(env_id)  # an older version warns that a newer exists (Gymnasium's rule); not check_env's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env)


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id):
    env = make_quietly(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env, warn=True)


def make_quietly(env_id: str):
    """``gym.make(env_id).unwrapped`` without the "out of date, upgrade to vN" deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        return gym.make(env_id).unwrapped


@pytest.mark.parametrize("old", ["LMEnv/KnowledgeQA-v0", "LMEnv/KnowledgeQA-v1", "LMEnv/KnowledgeQA-v2"])
def test_old_versions_point_to_the_newest(old):
    with pytest.warns(DeprecationWarning, match="upgrading to version `v3`"):
        gym.make(old)


def run_episodes(env, seed: int, n_steps: int):
    """Seeded rollout with seeded random actions; returns every transition."""
    env.action_space.seed(seed)
    out = [env.reset(seed=seed)]
    for _ in range(n_steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((obs, r, term, trunc, info))
        if term or trunc:
            out.append(env.reset())
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_seeded_rollouts_are_deterministic(env_id):
    a = run_episodes(gym.make(env_id), seed=123, n_steps=300)
    b = run_episodes(gym.make(env_id), seed=123, n_steps=300)
    assert data_equivalence(a, b, exact=True)


@pytest.mark.parametrize("env_id", IDS)
def test_pickle_round_trip_continues_identically(env_id):
    env = gym.make(env_id)
    env.reset(seed=5)
    env.action_space.seed(5)
    for _ in range(3):
        env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = int(rng.integers(env.action_space.n))
        a, b = env.step(action), clone.step(action)
        assert data_equivalence(a, b, exact=True)
        if a[2] or a[3]:
            assert data_equivalence(env.reset(seed=1), clone.reset(seed=1), exact=True)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_matches_single_envs(env_id):
    n = 4
    venv = gym.make_vec(env_id, num_envs=n, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    singles = [gym.make(env_id) for _ in range(n)]
    vobs, _ = venv.reset(seed=11)
    for i, env in enumerate(singles):
        env.reset(seed=11 + i)
    rng = np.random.default_rng(1)
    done = np.zeros(n, dtype=bool)
    while not done.all():
        actions = rng.integers(venv.single_action_space.n, size=n)
        vobs, vr, vterm, vtrunc, _ = venv.step(actions)
        for i, env in enumerate(singles):
            if done[i]:
                continue
            o, r, term, trunc, _ = env.step(actions[i])
            assert vr[i] == pytest.approx(r) and (vterm[i], vtrunc[i]) == (term, trunc)
            np.testing.assert_array_equal(vobs["input_ids"][i], o["input_ids"])
            done[i] = term or trunc
