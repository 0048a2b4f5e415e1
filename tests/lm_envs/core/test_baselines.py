"""Reference policies: the format-only answers of every task, scored through TextEnv, and the no-signal RandomReward."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest

import lm_envs
from lm_envs import ListTask, Problem, TokenEnv, make_text
from lm_envs.core.baselines import RandomReward, evaluate_text_policy, format_only_policy, protocol_score

DIGITS_SPEC = "lm_envs.tasks.digits:DigitCountReward"


def test_every_builtin_env_declares_a_format_only_policy():
    builtin = [env_id for env_id in lm_envs.registered_ids() if env_id.startswith("LMEnv/")]  # not tests' own
    assert len(builtin) >= 12
    for env_id in builtin:
        task = make_text(env_id).task
        assert task.has_format_only, env_id
        problem = task.problem(lm_envs.get_protocol(env_id).split, 0)
        assert isinstance(task.format_only(problem, random.Random(0)), str)


def test_math_format_only_is_a_graded_guess_and_every_math_variant_makes_the_same_guesses():
    results = {
        env_id: evaluate_text_policy(env_id, format_only_policy, seed=3, num_episodes=60)
        for env_id in ("LMEnv/Math-v0", "LMEnv/MathTools-v0", "LMEnv/MathProcess-v0")
    }
    math = results["LMEnv/Math-v0"]
    assert math["num_episodes"] == 60
    for record in math["records"]:
        assert record["completion"].startswith("#### ")
        assert record["outcome"]["extracted"] == record["completion"][5:]  # graded by the env's own reward
    assert math["accuracy"] < 0.1  # a guess in [0, 100] is right about 1 time in 100
    completions = [[r["completion"] for r in res["records"]] for res in results.values()]
    assert completions[0] == completions[1] == completions[2]
    assert results["LMEnv/MathTools-v0"]["accuracy"] == math["accuracy"]
    # another seed guesses other numbers
    other = evaluate_text_policy("LMEnv/Math-v0", format_only_policy, seed=4, num_episodes=60)
    assert [r["completion"] for r in other["records"]] != completions[0]


def test_the_harness_measures_rather_than_assumes():
    """The gold answer in the format-only shape scores 1 through the same path; a wrong one 0."""
    gold = evaluate_text_policy("LMEnv/Math-v0", lambda t, p, o, rng: f"#### {p.answer}", num_episodes=20)
    assert gold["accuracy"] == 1.0 and gold["mean_return"] == 1.0
    wrong = evaluate_text_policy("LMEnv/Math-v0", lambda t, p, o, rng: "#### -1", num_episodes=20)
    assert wrong["accuracy"] == 0.0
    retry = evaluate_text_policy("LMEnv/MathRetry-v0", lambda t, p, o, rng: "#### -1", num_episodes=5)
    assert {r["turns"] for r in retry["records"]} == {3}  # three attempts, the policy asked once per turn


def test_qa_format_only_abstains_and_earns_exactly_zero():
    result = evaluate_text_policy("LMEnv/KnowledgeQA-v3", format_only_policy)
    assert result["num_episodes"] == 570 and result["mean_return"] == 0.0
    assert all(r["outcome"]["abstained"] for r in result["records"])
    assert protocol_score("mean_return", result) == 0.0


def test_digits_format_only_is_the_task_itself():
    assert evaluate_text_policy("LMEnv/Digits-v0", format_only_policy)["mean_return"] == 1.0
    turns = evaluate_text_policy("LMEnv/DigitTurns-v0", format_only_policy)
    assert turns["mean_return"] == 1.0 and turns["records"][0]["turns"] == 2


def test_chat_format_only_is_one_fixed_reply_scored_by_the_reward_model():
    result = evaluate_text_policy("LMEnv/Chat-v0", format_only_policy, num_episodes=3)
    assert {r["completion"] for r in result["records"]} == {" Sure, here is a short answer for you."}
    assert all(r["outcome"]["rm_score"] == r["return"] for r in result["records"])


def test_a_task_without_the_hook_says_how_to_add_it():
    task = ListTask.from_pairs(train=[("1+1=", "2")], test=[("2+2=", "4")])
    assert not task.has_format_only
    lm_envs.register("Test/NoFormat-v0", task=task, reward=lambda p, c: float(c.strip() == p.answer))
    with pytest.raises(NotImplementedError, match=r"override Task.format_only\(problem, rng\)"):
        evaluate_text_policy("Test/NoFormat-v0", format_only_policy)
    with pytest.raises(ValueError, match="a str"):
        evaluate_text_policy("Test/NoFormat-v0", lambda t, p, o, rng: 7)
    with pytest.raises(KeyError, match="no metric 'pass@4'"):
        protocol_score("pass@4", {"accuracy": 1.0})


def test_random_reward_is_a_seeded_coin_that_ignores_the_text_and_keeps_the_true_record():
    reward = RandomReward(DIGITS_SPEC, p=0.5, seed=1)
    problem = Problem("test/0", "Write a long number:\n", "12345678")
    texts = [f"{i:08d}" for i in range(400)] + [f"word{i}" for i in range(400)]
    outcomes = reward.outcome_batch([problem] * len(texts), texts)
    paid = [o.reward for o in outcomes]
    assert set(paid) == {0.0, 1.0}
    assert 0.4 < sum(paid[:400]) / 400 < 0.6 and 0.4 < sum(paid[400:]) / 400 < 0.6  # right or wrong: same odds
    truth = [o.record["true_correct"] for o in outcomes]
    assert all(truth[:400]) and not any(truth[400:])
    # what learners read (the reward, and is_success through "correct", which RFT filters on) is the coin only
    assert [o.record["correct"] for o in outcomes] == [p == 1.0 for p in paid]
    assert outcomes[0].record["true_reward"] == 1.0 and outcomes[0].record["random_reward"] == paid[0]
    assert [o.reward for o in RandomReward(DIGITS_SPEC, seed=1).outcome_batch([problem] * 800, texts)] == paid
    assert [o.reward for o in RandomReward(DIGITS_SPEC, seed=2).outcome_batch([problem] * 800, texts)] != paid
    # one text written again and again gets a fresh coin each time: no string is worth learning to write
    same = [reward.outcome(problem, "00000000").reward for _ in range(400)]
    assert 0.4 < sum(same) / 400 < 0.6
    assert RandomReward(p=1.0, high=2.0).outcome(problem, "x").reward == 2.0
    for bad in ({"p": 1.5}, {"p": True}, {"seed": 0.5}, {"high": float("nan")}, {"high": 0.0}):
        with pytest.raises(ValueError, match="RandomReward"):
            RandomReward(**bad)


def test_random_reward_replaces_turn_rewards_and_pays_the_same_in_token_and_text_envs():
    kwargs = {"reward": "lm_envs.core.baselines:RandomReward", "reward_kwargs": {"p": 0.0, "seed": 0}}
    text_env = make_text("LMEnv/DigitTurns-v0", **kwargs)
    text_env.reset(options={"index": 0})
    _, first, *_ = text_env.step("1")
    _, second, terminated, _, _ = text_env.step("2")
    assert terminated and first == second == 0.0  # the task's two 0.5 turn rewards are not paid
    plain = make_text("LMEnv/DigitTurns-v0")
    plain.reset(options={"index": 0})
    assert plain.step("1")[1] == 0.5
    # the same text pays the same coin at token level and at text level
    kwargs = {"reward": "lm_envs.core.baselines:RandomReward", "reward_kwargs": {"reward": DIGITS_SPEC, "seed": 5}}
    token_env: TokenEnv = gym.make("LMEnv/Digits-v0", **kwargs).unwrapped
    text_env = make_text("LMEnv/Digits-v0", **kwargs)
    for text in ("12", "ab", "7", "hello 3"):
        ids = token_env.codec.encode(text) + [token_env.codec.eos_token_id]
        token_env.reset(options={"index": 0})
        total = 0.0
        for t in ids:
            _, r, term, trunc, info = token_env.step(t)
            total += r
            if term or trunc:
                break
        text_env.reset(options={"index": 0})
        assert text_env.step(text)[1] == total
        assert info["outcome"]["true_reward"] == digits_reward(text)


def digits_reward(text: str) -> float:
    return min(sum(c.isdigit() for c in text), 8) / 8


def test_random_reward_state_round_trips_and_bad_state_is_refused():
    """The repeat counts are RandomReward's state (checkpointed by training runs); other rewards have none."""
    from lm_envs.core.reward import FunctionReward

    problem = Problem("q1", "2+2=", "4")
    r = RandomReward(p=0.5, seed=11)
    [r.coin(problem, "4") for _ in range(3)]
    state = r.state_dict()
    assert list(state["seen"].values()) == [3]
    later = [r.coin(problem, t) for t in ("4", "5", "4")]
    fresh = RandomReward(p=0.5, seed=11)
    fresh.load_state_dict(state)
    assert [fresh.coin(problem, t) for t in ("4", "5", "4")] == later
    for bad in ({}, {"seen": {"zz": 1}}, {"seen": {"ab": 1}}, {"seen": {"00" * 16: 0}}, {"seen": [1]}, "x"):
        with pytest.raises(ValueError, match="RandomReward.state_dict"):
            RandomReward().load_state_dict(bad)
    stateless = FunctionReward(lambda p, c: 1.0)
    assert stateless.state_dict() == {}
    stateless.load_state_dict({"anything": 1})  # nothing to restore
