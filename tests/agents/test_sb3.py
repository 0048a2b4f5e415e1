"""The stable-baselines3 bridge: VecEnv adapter contract, token features extractor, SB3 PPO runs."""

from __future__ import annotations

import tempfile
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import _check_obs
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecEnv, VecMonitor
from stable_baselines3.common.vec_env.util import obs_space_info

import lm_envs
from agents.sb3 import (
    SB3VecEnv,
    TokenFeaturesExtractor,
    init_action_head_from_lm,
    make_sb3_ppo,
    make_sb3_vec_env,
    sb3_policy_kwargs,
    train_sb3_ppo,
    unbatch_infos,
)
from lm_envs.core import protocol

torch.set_num_threads(1)

ENV = "LMEnv/TargetWord-v0"
PENALTY = {"truncation_penalty": -0.5}  # a reward in every tiny run (random tokens rarely score)


def env_obs(obs, i):
    return {k: v[i] for k, v in obs.items()}


def random_actions(rng, n, eos, vocab):
    """Mostly random tokens, sometimes EOS: both terminations and truncations happen."""
    a = rng.integers(2, vocab, size=n)
    a[rng.random(n) < 0.25] = eos
    return a


# ---------------------------------------------------------------------------------- VecEnv adapter


def test_adapter_reset_step_shapes_and_terminal_observation():
    env = make_sb3_vec_env(ENV, num_envs=3, seed=0)
    assert isinstance(env, VecEnv) and env.num_envs == 3
    width = 32 + 8
    keys, shapes, dtypes = obs_space_info(env.observation_space)
    obs = env.reset()
    for key in keys:
        assert obs[key].shape == (3, *shapes[key]) and obs[key].dtype == dtypes[key]
    assert obs["input_ids"].shape == (3, width)
    for i in range(3):
        _check_obs(env_obs(obs, i), env.observation_space, "reset")
        assert "prompt" in env.reset_infos[i]
    eos = env.get_attr("codec")[0].eos_token_id

    # Env 0 ends at once (EOS: terminated); the others run into the 8-token budget (truncated).
    first = env.reset_infos[0]["prompt_tokens"]
    obs, rewards, dones, infos = env.step(np.array([eos, 5, 5]))
    assert rewards.shape == (3,) and rewards.dtype == np.float32 and dones.dtype == bool
    assert dones.tolist() == [True, False, False]
    term = infos[0]["terminal_observation"]
    _check_obs(term, env.observation_space, "step")
    assert term["input_ids"][first] == eos and term["attention_mask"].sum() == first + 1
    assert obs["attention_mask"][0].sum() == env.reset_infos[0]["prompt_tokens"]  # already restarted
    assert infos[0]["TimeLimit.truncated"] is False and infos[0]["episode"]["l"] == 1
    assert {"completion", "outcome", "num_tokens", "is_success"} <= set(infos[0])
    assert "terminal_observation" not in infos[1] and infos[1]["TimeLimit.truncated"] is False
    for _ in range(7):
        obs, rewards, dones, infos = env.step(np.array([5, 5, 5]))
    assert dones.tolist() == [False, True, True]
    for i in (1, 2):
        assert infos[i]["TimeLimit.truncated"] is True and infos[i]["episode"]["l"] == 8
        assert infos[i]["terminal_observation"]["attention_mask"].sum() == infos[i]["num_tokens"] + first
        assert obs["attention_mask"][i].sum() == env.reset_infos[i]["prompt_tokens"]
    env.close()


def test_adapter_matches_dummy_vec_env_over_single_envs():
    """The reference: SB3's own DummyVecEnv over Monitor-wrapped single TokenEnvs, on the same seeds."""
    n = 3
    ours = make_sb3_vec_env(ENV, num_envs=n)
    ref = DummyVecEnv([lambda: Monitor(gym.make(ENV)) for _ in range(n)])
    ours.seed(11)
    ref.seed(11)
    a, b = ours.reset(), ref.reset()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert [r["problem_id"] for r in ours.reset_infos] == [r["problem_id"] for r in ref.reset_infos]
    rng = np.random.default_rng(0)
    codec = ours.get_attr("codec")[0]
    ended = {"term": 0, "trunc": 0}
    for _ in range(40):
        actions = random_actions(rng, n, codec.eos_token_id, codec.vocab_size)
        oa, ra, da, ia = ours.step(actions)
        ob, rb, db, ib = ref.step(actions)
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k])
        np.testing.assert_allclose(ra, rb)
        np.testing.assert_array_equal(da, db)
        for i in range(n):
            x, y = dict(ia[i]), dict(ib[i])
            assert set(x) == set(y)
            if da[i]:
                ended["trunc" if x["TimeLimit.truncated"] else "term"] += 1
                for k in x["terminal_observation"]:
                    np.testing.assert_array_equal(x["terminal_observation"][k], y["terminal_observation"][k])
                ex, ey = x.pop("episode"), y.pop("episode")
                assert ex["l"] == ey["l"] and ex["r"] == pytest.approx(ey["r"])
                x.pop("terminal_observation"), y.pop("terminal_observation")
                assert ours.reset_infos[i] == ref.reset_infos[i]
            assert x == y
    assert ended["term"] > 0 and ended["trunc"] > 0


def test_adapter_seeding_options_and_vecenv_methods():
    env = make_sb3_vec_env(ENV, num_envs=4)
    env.seed(3)
    first = env.reset()
    env.seed(3)
    again = env.reset()
    np.testing.assert_array_equal(first["input_ids"], again["input_ids"])

    env.set_options([{"index": 0}, {"index": 5}, {}, {"index": 2}])
    env.reset()
    idx = [r["index"] for r in env.reset_infos]
    assert idx[0] == 0 and idx[1] == 5 and idx[3] == 2
    env.set_options({"index": 4})
    env.reset()
    assert [r["index"] for r in env.reset_infos] == [4] * 4
    assert [p.answer for p in env.get_attr("problem")] == [env.get_attr("task")[0].words[4]] * 4
    assert env._options == [{}] * 4 and env._seeds == [None] * 4  # seeds and options are used once

    assert env.get_attr("render_mode") == [None] * 4
    assert len(env.get_attr("codec", indices=[1, 2])) == 2
    assert env.has_attr("codec") and not env.has_attr("no_such_attribute")
    completions = env.env_method("completions")
    assert len(completions) == 4 and all(isinstance(c, str) for c in completions)
    assert env.env_method("completions", indices=2) == [completions[2]]
    env.set_attr("split", "test")
    assert env.get_attr("split") == ["test"] * 4
    with pytest.raises(ValueError, match="shared"):
        env.set_attr("split", "train", indices=[0])
    assert env.env_is_wrapped(Monitor) == [True] * 4 and env.env_is_wrapped(gym.wrappers.TimeLimit) == [False] * 4

    with pytest.raises(ValueError, match="SameStep"):
        SB3VecEnv(gym.make_vec(ENV, num_envs=2))
    with pytest.raises(TypeError):
        SB3VecEnv(gym.make(ENV))


def test_adapter_under_sb3_vec_wrappers():
    env = VecCheckNan(make_sb3_vec_env(ENV, num_envs=2, seed=0), raise_exception=True)
    env.reset()
    for _ in range(10):
        env.step(np.array([5, 6]))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        VecMonitor(make_sb3_vec_env(ENV, num_envs=2))
    assert any("Monitor" in str(w.message) for w in caught)  # the adapter already records episodes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitored = VecMonitor(make_sb3_vec_env(ENV, num_envs=2, seed=0, monitor=False))
    monitored.reset()
    episodes = []
    for _ in range(8):
        *_, infos = monitored.step(np.array([5, 6]))
        episodes += [i["episode"] for i in infos if "episode" in i]
    assert [e["l"] for e in episodes] == [8, 8]


def test_unbatch_infos_follows_the_masks():
    infos = {
        "a": np.array([1, 0, 3]),
        "_a": np.array([True, False, True]),
        "rec": {"x": np.array([None, "b", None], dtype=object), "_x": np.array([False, True, False])},
        "_rec": np.array([False, True, False]),
    }
    assert unbatch_infos(infos, 3) == [{"a": 1}, {"rec": {"x": "b"}}, {"a": 3}]


# ---------------------------------------------------------------------------------- features extractor


def test_extractor_recovers_exact_integer_ids_from_float_obs():
    big = 2**24 - 1  # float32 is exact up to 2**24
    space = gym.spaces.Dict(
        {
            "input_ids": gym.spaces.Box(0, big, shape=(6,), dtype=np.int64),
            "attention_mask": gym.spaces.Box(0, 1, shape=(6,), dtype=np.int8),
        }
    )
    ids = np.array([[big, big - 1, 12345677, 3, 1, 1], [7, 16777201, 1, 1, 1, 1]])
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=np.int8)
    floats = preprocess_obs({"input_ids": torch.as_tensor(ids), "attention_mask": torch.as_tensor(mask)}, space)
    assert floats["input_ids"].dtype == torch.float32  # what SB3 hands the extractor
    got, m, last = TokenFeaturesExtractor.ids_and_mask(floats)
    assert got.dtype == torch.long and got.shape == (2, 4)  # cut to the longest sequence
    np.testing.assert_array_equal(got.numpy(), ids[:, :4])
    assert last.tolist() == [3, 1] and m.sum(1).tolist() == [4, 2]


def test_extractor_on_env_observations_reads_only_real_tokens():
    env = make_sb3_vec_env(ENV, num_envs=3, seed=0)
    model = make_sb3_ppo(ENV, num_envs=3, device="cpu", n_steps=8, batch_size=8)
    policy = model.policy
    extractor = policy.features_extractor
    assert isinstance(extractor, TokenFeaturesExtractor) and policy.ortho_init is False
    obs = env.reset()
    obs, *_ = env.step(np.array([7, 8, 9]))
    tensors, _ = policy.obs_to_tensor(obs)
    pre = preprocess_obs(tensors, policy.observation_space)
    ids, _, last = extractor.ids_and_mask(pre)
    np.testing.assert_array_equal(ids.numpy(), obs["input_ids"][:, : ids.shape[1]])
    np.testing.assert_array_equal(last.numpy() + 1, obs["attention_mask"].sum(1))
    with torch.no_grad():
        feats = extractor(pre)
        assert feats.shape == (3, extractor.features_dim)
        padded = {k: v.clone() for k, v in pre.items()}
        padded["input_ids"][:, -1] = 5.0  # a padded position (mask 0): no effect
        torch.testing.assert_close(extractor(padded), feats)
        changed = {k: v.clone() for k, v in pre.items()}
        changed["input_ids"][0, int(last[0])] = 11.0  # the last real token: features change
        assert not torch.allclose(extractor(changed)[0], feats[0])


@pytest.fixture(scope="module")
def tiny_lm():
    from agents.policy.models import build_default_model

    codec = lm_envs.load_codec(None)
    return build_default_model(codec, seed=0, n_layer=1, n_embd=32, n_head=2, n_positions=64)


def test_backbone_survives_sb3_init_and_policy_is_the_lm(tiny_lm):
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    model = make_sb3_ppo(ENV, num_envs=2, device="cpu", backbone=tiny_lm, n_steps=8, batch_size=16, n_epochs=1)
    policy = model.policy
    assert policy.features_extractor.backbone is tiny_lm and policy.features_extractor.features_dim == 32
    for k, v in tiny_lm.state_dict().items():  # ortho_init=False: pretrained weights untouched
        torch.testing.assert_close(v, before[k])

    env = model.env
    env.seed(0)
    obs = env.reset()
    obs, *_ = env.step(np.array([7, 8]))
    tensors, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        dist = policy.get_distribution(tensors).distribution
        for i in range(2):
            n = int(obs["attention_mask"][i].sum())
            ids = torch.as_tensor(obs["input_ids"][i : i + 1, :n])
            lm_logits = tiny_lm(input_ids=ids).logits[0, -1]
            # The SB3 policy is the LM's next-token distribution (head copied by init_action_head_from_lm).
            torch.testing.assert_close(dist.logits[i], torch.log_softmax(lm_logits, -1), atol=1e-4, rtol=0)

    kwargs = sb3_policy_kwargs(None, backbone=tiny_lm, features_dim=16)
    assert kwargs["ortho_init"] is False and kwargs["features_extractor_kwargs"]["features_dim"] == 16
    projected = make_sb3_ppo(ENV, num_envs=2, device="cpu", backbone=tiny_lm, features_dim=16, n_steps=8, batch_size=16)
    with pytest.raises(ValueError, match="pi=\\[\\]"):
        init_action_head_from_lm(projected.policy, tiny_lm)

    model.env.close()
    # A penalty on truncation makes sure a reward arrives (the critic starts at V = 0: no reward, no update).
    model = make_sb3_ppo(ENV, num_envs=2, device="cpu", backbone=tiny_lm, env_kwargs=PENALTY, n_steps=8, batch_size=16)
    model.learn(16)  # the backbone is trained with the policy
    changed = [k for k, v in tiny_lm.state_dict().items() if not torch.equal(v, before[k])]
    assert any("wte" in k for k in changed) and any(".h.0." in k for k in changed)


# ---------------------------------------------------------------------------------- PPO


def test_ppo_end_to_end_on_target_word_changes_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger would make a folder
    model = make_sb3_ppo(
        ENV, num_envs=4, seed=0, device="cpu", env_kwargs=PENALTY, n_steps=16, batch_size=32, n_epochs=2
    )
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(128)
    assert not list(tmp_path.glob("SB3-*"))  # no stray log folder per learn() call
    assert model.num_timesteps == 128
    after = model.policy.state_dict()
    for part in ("features_extractor.embed", "action_net", "value_net", "mlp_extractor.value_net"):
        keys = [k for k in before if k.startswith(part)]
        assert keys and any(not torch.equal(before[k], after[k]) for k in keys), part
    assert len(model.ep_info_buffer) > 0  # Monitor-style stats reached SB3's logger buffer

    model.save(tmp_path / "ppo")
    loaded = type(model).load(tmp_path / "ppo", device="cpu")
    obs = model.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])

    short = train_sb3_ppo(ENV, total_timesteps=32, num_envs=2, seed=1, device="cpu", n_steps=16, batch_size=32)
    assert short.num_timesteps == 32 and isinstance(short.env, SB3VecEnv)


ONE_TOKEN = "Test/SB3OneToken-v0"


@pytest.fixture
def one_token_env():
    """A one-step bandit over the whole vocabulary: reward 1 iff the completion starts with the word 'apple'."""
    codec = lm_envs.load_codec(None)
    target = codec.encode(" apple")
    assert len(target) == 1  # a single token of the default tokenizer
    task = lm_envs.ListTask.from_pairs(train=[("Say apple:", "apple")], test=[("Say apple:", "apple")])
    lm_envs.register(
        ONE_TOKEN,
        task=task,
        reward=lambda problem, completion: float(completion.split()[:1] == ["apple"]),  # not " apples"
        max_prompt_tokens=8,
        max_new_tokens=1,
    )
    yield target[0]
    del gym.registry[ONE_TOKEN]
    protocol._PROTOCOLS.pop(ONE_TOKEN, None)


def test_ppo_learns_the_one_token_env(one_token_env):
    # 956 arms, one pays: a uniform policy finds it about once per 956 samples, so the budget leaves
    # room for a late first success (no success in the first 10k samples: p ~ 3e-5). Advantages are
    # not normalised: with one prompt every zero-reward rollout has identical advantages, which
    # normalisation turns into unit-scale rounding noise that drifts the policy onto random tokens.
    model = make_sb3_ppo(
        ONE_TOKEN,
        num_envs=64,
        seed=0,
        device="cpu",
        n_steps=4,
        batch_size=128,
        n_epochs=4,
        learning_rate=1e-2,
        normalize_advantage=False,
        policy_kwargs={"features_extractor_kwargs": {"embed_dim": 32, "n_layers": 0}},
    )
    before, _ = evaluate_policy(model, model.env, n_eval_episodes=256, deterministic=False)
    assert before < 0.05  # ~1/956 at the start
    model.learn(12288)
    after, _ = evaluate_policy(model, model.env, n_eval_episodes=256, deterministic=False)
    assert after > 0.5, (before, after)
    assert np.mean([e["r"] for e in model.ep_info_buffer]) > 0.5
    obs = model.env.reset()
    assert (model.predict(obs, deterministic=True)[0] == one_token_env).all()
