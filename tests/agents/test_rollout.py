"""KV-cached rollouts through the token env: token in, token out."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

import lm_envs  # noqa: F401
from agents.models import build_default_model, logits_width
from agents.rollout import left_pad_prompts, sample_episodes


def test_sampling_logprobs_match_a_full_forward_on_the_tokens_the_env_received():
    venv = gym.make_vec("LMEnv/TargetWord-v0", num_envs=5, autoreset_mode="Disabled")
    model = build_default_model(venv.codec, seed=1)
    assert logits_width(model) == venv.single_action_space.n
    episodes = sample_episodes(model, venv, seed=3, generator=torch.Generator().manual_seed(0))
    obs = venv.episodes.observation()  # the env's buffers: prompt + exactly the tokens it received
    for i in range(venv.num_envs):
        n = int(episodes.mask[i].sum())
        p = int(venv.episodes.prompt_length[i])
        ids = torch.from_numpy(obs["input_ids"][i, : p + n])[None]
        np.testing.assert_array_equal(ids[0, p:].numpy(), episodes.tokens[i, :n])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, p - 1 : p + n - 1].float(), -1)
        full = logp.gather(1, ids[0, p:, None])[:, 0].numpy()
        np.testing.assert_allclose(episodes.logprobs[i, :n], full, atol=1e-4)
    assert np.allclose(episodes.returns, episodes.rewards.sum(1))


def test_left_padding_keeps_each_prompt_at_the_end():
    obs = {
        "input_ids": np.array([[5, 6, 7, 1], [8, 9, 1, 1]]),
        "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]]),
    }
    ids, att = left_pad_prompts(obs, pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [1, 8, 9]] and att.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_demo_runs_and_gold_beats_the_untrained_model(capsys):
    from agents import demo

    result = demo.main("LMEnv/TargetWord-v0", num_envs=8, seed=0)
    assert result["gold"] == 1.0 and result["model"] < 0.5
    assert "mean return" in capsys.readouterr().out
