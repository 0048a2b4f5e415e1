"""Evaluation records of multi-turn envs carry the turns, why the episode ended and how many tokens were the env's."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import lm_envs  # noqa: F401  (registers the built-in ids)
from agents.evaluate import EvalConfig, evaluate
from agents.policy.models import load_model


def scripted(env_id: str, text: str) -> torch.nn.Module:
    """The tiny default model made to emit one token greedily, always: ``text``'s single token, or EOS for ``""``."""
    codec = gym.make(env_id).unwrapped.codec
    ids = codec.encode(text) if text else [codec.eos_token_id]
    assert len(ids) == 1, ids
    model = load_model(None, codec, seed=0)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[ids[0]] = 10.0
    model.lm_head = head
    return model.eval()


def env_tokens(env_id: str, text: str) -> int:
    return len(gym.make(env_id).unwrapped.codec.encode(text))


def test_two_turn_records_count_turns_and_env_tokens():
    result = evaluate(scripted("LMEnv/DigitTurns-v0", "1"), "LMEnv/DigitTurns-v0", EvalConfig())
    (record,) = result["records"]
    # "1" ends the first turn, the env appends " next:", "1" ends the second and the task ends the episode
    reply = env_tokens("LMEnv/DigitTurns-v0", " next:")
    assert record["turns"] == 2 and record["end_reason"] == "task"
    assert record["policy_tokens"] == 2 and record["env_tokens"] == reply
    assert record["num_tokens"] == 2 + reply and record["return"] == 1.0
    assert result["mean_turns"] == 2.0 and result["mean_env_tokens"] == reply


def test_retry_records_count_every_attempt_and_the_verifier_text():
    cfg = EvalConfig(num_episodes=4)
    result = evaluate(scripted("LMEnv/MathRetry-v0", ""), "LMEnv/MathRetry-v0", cfg)
    feedback = env_tokens("LMEnv/MathRetry-v0", "\nVerifier: wrong answer. Try again.\n")
    for record in result["records"]:  # three empty (wrong) attempts: two verifier replies between them
        assert record["turns"] == 3 and record["end_reason"] == "eos"
        assert record["policy_tokens"] == 3 and record["env_tokens"] == 2 * feedback
        assert record["completion"].count("Verifier: wrong answer.") == 2


def test_a_call_that_never_closes_is_reported_as_truncated_by_the_turn_budget():
    result = evaluate(scripted("LMEnv/MathTools-v0", "1"), "LMEnv/MathTools-v0", EvalConfig(num_episodes=2))
    for record in result["records"]:
        # a turn cut by its budget is not a completed turn (the env's own count, info["num_turns"])
        assert record["turns"] == 0 and record["end_reason"] == "max_turn_tokens"
        assert record["policy_tokens"] == 96 and record["env_tokens"] == 0  # the per-turn budget


@pytest.mark.parametrize("env_id", ["LMEnv/Math-v0", "LMEnv/Digits-v0"])
def test_single_turn_records_are_unchanged(env_id):
    result = evaluate(scripted(env_id, ""), env_id, EvalConfig(num_episodes=2))
    assert set(result["records"][0]) == {
        "index",
        "sample",
        "problem_id",
        "return",
        "success",
        "completion",
        "num_tokens",
        "outcome",
    }
    assert "mean_turns" not in result
