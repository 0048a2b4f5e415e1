"""TokenEnv semantics: rewards on the right tokens, termination, truncation, start states, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lm_envs
from lm_envs import Problem, TokenEnv


def rollout(env: TokenEnv, text: str, eos: bool = True) -> tuple[list[float], bool, bool, dict]:
    """Feed the tokens of ``text`` (then EOS) until the episode ends; return per-token rewards."""
    ids = env.codec.encode(text) + ([env.codec.eos_token_id] if eos else [])
    rewards, term, trunc, info = [], False, False, {}
    for t in ids:
        _, r, term, trunc, info = env.step(t)
        rewards.append(r)
        if term or trunc:
            break
    return rewards, term, trunc, info


def test_gold_solution_pays_process_rewards_on_closing_tokens_and_outcome_at_the_end(step_task, step_reward):
    env = TokenEnv(step_task, step_reward)
    _, info = env.reset(options={"index": 0})
    assert info["prompt"] == step_task.problem("train", 0).prompt
    text = "3 * 4 = 12\n2 + 12 = 14\n#### 14\n"
    rewards, term, trunc, info = rollout(env, text, eos=False)
    ids = env.codec.encode(text)
    # The stop rule ends the episode on the token that closes '#### 14', before any EOS.
    assert term and not trunc and len(rewards) == len(ids)
    closing = [k for k, t in enumerate(ids) if b"\n" in env.codec.token_bytes[t]]
    paid = [k for k, r in enumerate(rewards) if r != 0]
    assert paid == closing[:2] + [len(ids) - 1]
    assert rewards[closing[0]] == rewards[closing[1]] == 0.5
    assert rewards[-1] == pytest.approx(1.0)  # '#### 14' pays 0 as a step, 1 as the outcome
    assert info["completion"] == text and info["is_success"] is True
    assert info["step_rewards"] == [0.5, 0.5, 0.0]
    assert sum(rewards) == pytest.approx(2.0)


def test_single_wrong_step_is_penalised_where_it_closes(step_task, step_reward):
    env = TokenEnv(step_task, step_reward)
    env.reset(options={"index": 0})
    rewards, term, _, info = rollout(env, "3 * 4 = 13\n2 + 13 = 15\n#### 15\n", eos=False)
    assert term and info["step_rewards"] == [-0.5, 0.5, 0.0]
    assert info["outcome"] == {"correct": False, "extracted": "15"}
    assert sum(rewards) == pytest.approx(0.0)


def test_eos_closes_the_last_step(step_task, step_reward):
    env = TokenEnv(step_task, step_reward)
    env.reset(options={"index": 3})
    _, term, _, info = rollout(env, "9 + 9 = 18")  # no newline: EOS closes the step
    assert term and info["step_rewards"] == [0.5] and info["outcome_reward"] == 0.0


def test_text_after_the_stopping_step_in_the_same_token_is_cut(step_task, step_reward):
    from tokenizers import Tokenizer

    codec = lm_envs.load_codec()
    backend = Tokenizer.from_str(codec.backend.to_str())
    backend.add_tokens(["\njunk"])  # a token that closes a step and carries more text
    custom = lm_envs.TextCodec(backend, "test", codec.eos_token_id, codec.pad_token_id)
    env = TokenEnv(step_task, step_reward, tokenizer=custom)
    env.reset(options={"index": 3})
    ids = custom.encode("#### 18\njunk")
    assert custom.token_bytes[ids[-1]] == b"\njunk"
    rewards, term, _, info = rollout(env, "#### 18\njunk", eos=False)
    assert term and len(rewards) == len(ids)
    assert info["completion"] == "#### 18\n" and rewards[-1] == pytest.approx(1.0)


def test_stop_rule_off_only_eos_or_the_budget_ends_the_episode(step_task, step_reward):
    text = "3 * 4 = 12\n2 + 12 = 14\n#### 14\nDone."
    env = TokenEnv(step_task, step_reward, stop_rule=False)
    env.reset(options={"index": 0})
    rewards, term, trunc, info = rollout(env, text)  # then EOS
    assert term and not trunc and len(rewards) == len(env.codec.encode(text)) + 1  # past the answer line, to EOS
    assert info["completion"] == text and info["step_rewards"][:3] == [0.5, 0.5, 0.0]
    assert sum(rewards) == pytest.approx(sum(info["step_rewards"]) + info["outcome_reward"])
    # the same text as one action: the text env cuts nothing either, and pays the same
    text_env = lm_envs.TextEnv(step_task, step_reward, stop_rule=False)
    text_env.reset(options={"index": 0})
    _, total, *_, text_info = text_env.step(text)
    assert text_info["completion"] == text and total == pytest.approx(sum(rewards))
    # default: the closed answer line ends it
    env = TokenEnv(step_task, step_reward)
    env.reset(options={"index": 0})
    assert rollout(env, text)[3]["completion"] == "3 * 4 = 12\n2 + 12 = 14\n#### 14\n"
    with pytest.raises(ValueError, match="stop_rule must be True"):
        TokenEnv(step_task, step_reward, stop_rule="no")


def test_stop_rule_off_in_the_vector_env_and_through_gym_make():
    venv = lm_envs.TokenVectorEnv(
        2, "lm_envs.tasks.math:word_problems", "lm_envs.tasks.math:MathReward", stop_rule=False
    )
    assert venv.episodes.stops is None and not venv.episodes.track_steps
    env = gym.make("LMEnv/Math-v0", stop_rule=False).unwrapped
    assert env.episodes.stops is None
    assert gym.make("LMEnv/Math-v0").unwrapped.episodes.stops is not None


def test_truncation_at_budget_with_penalty_and_unfinished_step_unpaid(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, max_new_tokens=5, truncation_penalty=-0.25)
    env.reset(options={"index": 0})
    rewards, term, trunc, info = rollout(env, "3 * 4 = 12 and so on and on", eos=False)
    assert trunc and not term and len(rewards) == 5
    assert rewards[-1] == pytest.approx(-0.25) and info["step_rewards"] == []
    assert info["num_tokens"] == 5


def test_observation_buffer_holds_prompt_then_generated_tokens(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, max_prompt_tokens=40, max_new_tokens=10)
    obs, info = env.reset(options={"index": 1})
    p = info["prompt_tokens"]
    assert obs["input_ids"].shape == (50,) and obs["attention_mask"][:p].all() and not obs["attention_mask"][p:].any()
    assert obs["input_ids"][:p].tolist() == env.codec.encode(step_task.problem("train", 1).prompt)
    tok = env.codec.encode("10")[0]
    obs, *_ = env.step(tok)
    assert obs["input_ids"][p] == tok and obs["attention_mask"][: p + 1].all()
    assert obs in env.observation_space


def test_prefix_start_state_counts_as_history_but_is_not_paid(step_task, step_reward):
    env = TokenEnv(step_task, step_reward)
    prefix = step_task.problem("train", 0).prefix(1)
    _, info = env.reset(options={"index": 0, "prefix": prefix})
    assert info["prefix"] == "3 * 4 = 12\n"
    _, _, info = rollout(env, "2 + 12 = 14\n#### 14\n", eos=False)[1:]
    assert info["step_rewards"] == [0.5, 0.0] and info["is_success"]
    assert info["completion"] == "2 + 12 = 14\n#### 14\n"
    # A prefix that ends mid-step continues that step.
    env.reset(options={"index": 0, "prefix": "3 * 4 ="})
    _, _, info = rollout(env, " 12\n#### 14")[1:]
    assert info["step_rewards"] == [0.5, 0.0]


def test_decoding_is_incremental_and_exact(step_task, step_reward):
    env = TokenEnv(step_task, lambda p, c: 0.0, max_new_tokens=64)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(4, env.codec.vocab_size, size=40).tolist()
    for t in ids:
        env.step(t)
    assert env.episodes.completion(0) == env.codec.backend.decode(ids)


@pytest.mark.parametrize("action", [-1, 10**9, 2.5, "a", None])
def test_invalid_token_raises_clear_error(step_task, step_reward, action):
    env = TokenEnv(step_task, step_reward)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="token id|one token id"):
        env.step(action)


def test_step_before_reset_and_after_end_raise(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, max_new_tokens=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(5)
    env.reset(seed=0)
    *_, trunc, _ = env.step(5)
    assert trunc
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(5)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"indx": 0}, "unknown reset option"),
        ({"index": 99}, "out of range"),
        ({"index": "0"}, "out of range"),
        ({"split": "validation"}, "no split"),
        ({"prefix": 3}, "must be a str"),
        ({"problem": "2+2"}, "must be a lm_envs.Problem"),
    ],
)
def test_malformed_reset_options_raise(step_task, step_reward, options, match):
    env = TokenEnv(step_task, step_reward)
    with pytest.raises(ValueError, match=match):
        env.reset(options=options)


def test_reset_with_a_problem_object_and_long_prompt_error(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, max_prompt_tokens=8)
    _, info = env.reset(options={"problem": Problem("x", "1+1=", "2")})
    assert info["problem_id"] == "x" and info["index"] == -1
    with pytest.raises(ValueError, match="raise max_prompt_tokens"):
        env.reset(options={"problem": Problem("y", "word " * 50, "2")})


def test_tokenizer_that_does_not_fit_the_action_space_raises(step_task, step_reward):
    with pytest.raises(ValueError, match="pass vocab_size >="):
        TokenEnv(step_task, step_reward, vocab_size=10)
    env = TokenEnv(step_task, step_reward, vocab_size=lm_envs.load_codec().vocab_size + 64)
    env.reset(seed=0)
    _, _, _, trunc, _ = env.step(env.action_space.n - 1)  # padding ids past the vocab are valid, decode to ""
    assert not trunc


def test_bad_construction_arguments_raise(step_task, step_reward):
    with pytest.raises(ValueError, match="max_new_tokens"):
        TokenEnv(step_task, step_reward, max_new_tokens=0)
    with pytest.raises(ValueError, match="step_separator"):
        TokenEnv(step_task, step_reward, step_separator="")
    with pytest.raises(TypeError, match="lm_envs.Reward"):
        TokenEnv(step_task, 3)
    with pytest.raises(ValueError, match="no split"):
        TokenEnv(step_task, step_reward, split="dev")
    with pytest.raises(ValueError, match="cannot import"):
        TokenEnv("no_such_module:Task", step_reward)


def test_unknown_env_id_raises_with_suggestion():
    with pytest.raises(gym.error.Error, match="TargetWord"):
        gym.make("LMEnv/TargetWrd-v0")


def test_non_finite_reward_is_rejected(step_task):
    env = TokenEnv(step_task, lambda p, c: float("nan"), max_new_tokens=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        env.step(5)


def test_render_ansi_shows_prompt_and_completion(step_task, step_reward):
    env = TokenEnv(step_task, step_reward, render_mode="ansi")
    env.reset(options={"index": 3})
    for t in env.codec.encode("9 + 9"):
        env.step(t)
    assert env.render() == step_task.problem("train", 3).prompt + "9 + 9"
