"""LMEnv/MathTools-v0 (calculator) and LMEnv/MathRetry-v0 (self-correction): replies, rewards, metrics, bad input."""

from __future__ import annotations

import time

import gymnasium as gym
import pytest

import lm_envs  # noqa: F401
from lm_envs import Problem
from lm_envs.tasks.math.multi_turn import RetryReward, calculate, split_attempts

PROBLEM = Problem("t", "Ann has 12 boxes of 37 pens. How many pens?\nSolution:\n", "444")


def play(env, pieces, problem=PROBLEM):
    """Reset on ``problem`` and feed each text piece's tokens; return the steps until the episode ends."""
    env.reset(seed=0, options={"problem": problem})
    steps = []
    for piece in pieces:
        for t in env.codec.encode(piece) if isinstance(piece, str) else [piece]:
            steps.append(env.step(t))
            if steps[-1][2] or steps[-1][3]:
                return steps
    return steps


def test_a_calculator_call_gets_its_exact_value_appended_and_the_answer_is_graded():
    env = gym.make("LMEnv/MathTools-v0").unwrapped
    steps = play(env, ["<calc>12*37</calc>", " pens\n#### 444\n"])
    replies = [s[4] for s in steps if "env_tokens" in s[4]]
    assert [r["env_text"] for r in replies] == [" = 444"] and replies[0]["reply"] == {"result": "444"}
    final = steps[-1][4]
    assert steps[-1][2] and final["is_success"] and steps[-1][1] == 1.0
    assert final["completion"] == "<calc>12*37</calc> = 444 pens\n#### 444\n"
    assert final["turns"] == ["<calc>12*37</calc>", " pens\n#### 444\n"] and final["end_reason"] == "stop"


@pytest.mark.parametrize(
    "expression, answer",
    [
        ("12*37", "444"),
        ("7 / 2", "3.5"),
        ("1/3", "1/3"),
        ("(2 + 3) x 4 - 10%", "19.9"),
        ("1/0", "error: division by zero"),
        ("2**99999", "error: exponent too large"),
        ("9" * 5000, "error: expression longer than 200 characters"),
        ("(" * 40 + "1" + ")" * 40, "error: nesting deeper than 32"),
        ("__import__('os').system('true')", "error: not a plain arithmetic expression"),
        ("10^10^10^10", "error: exponent too large"),
        ("", "error: empty expression"),
    ],
)
def test_the_calculator_is_exact_bounded_and_never_evaluates_code(expression, answer):
    start = time.perf_counter()
    assert calculate(expression) == answer
    assert time.perf_counter() - start < 1.0


def test_bad_tool_calls_end_clearly():
    env = gym.make("LMEnv/MathTools-v0").unwrapped
    never_closed = play(env, ["<calc>" + "1+" * 200])
    assert never_closed[-1][3] and never_closed[-1][4]["end_reason"] == "max_turn_tokens"
    unopened = play(env, ["oops</calc>"])
    assert unopened[-1][4]["env_text"] == " = error: </calc> without <calc>" and not unopened[-1][2]
    many = play(env, ["<calc>1</calc>"] * 20)
    assert many[-1][3] and many[-1][4]["end_reason"] == "max_turns" and many[-1][4]["num_turns"] == 8


def test_retry_hands_the_turn_back_after_a_wrong_answer_and_pays_for_the_final_attempt():
    env = gym.make("LMEnv/MathRetry-v0").unwrapped
    steps = play(env, ["12 * 37 = 434\n#### 434\n", "12 * 37 = 444\n#### 444\n"])
    replies = [s[4]["env_text"] for s in steps if "env_tokens" in s[4]]
    assert replies == ["Verifier: wrong answer. Try again.\n"]
    final = steps[-1][4]
    assert steps[-1][1] == 1.0 and sum(s[1] for s in steps) == 1.0
    assert final["outcome"]["attempts"] == 2 and final["outcome"]["attempt_correct"] == [False, True]
    # a right first answer ends the episode at once
    assert play(env, ["#### 444\n"])[-1][4]["outcome"]["attempts"] == 1


def test_retry_stops_after_its_attempts_points_to_the_wrong_step_and_discounts():
    env = gym.make(
        "LMEnv/MathRetry-v0",
        task_kwargs={"attempts": 2, "point_to_step": True},
        reward_kwargs={"attempt_discount": 0.5},
    ).unwrapped
    steps = play(env, ["12 * 37 = 434\n#### 434\n", "#### 444\n", "never read"])
    assert [s[4]["env_text"] for s in steps if "env_tokens" in s[4]] == [
        "Verifier: wrong answer; step 1 looks wrong. Try again.\n"
    ]
    assert steps[-1][1] == 0.5 and steps[-1][4]["outcome"]["attempts"] == 2
    wrong_twice = play(env, ["#### 1\n", "#### 2\n"])
    assert wrong_twice[-1][4]["outcome"]["attempt_correct"] == [False, False] and wrong_twice[-1][1] == 0.0


def test_retry_metrics_count_first_attempt_accuracy_accuracy_at_k_and_correct_to_wrong_changes():
    reward = RetryReward()
    records = [
        reward.outcome(PROBLEM, "#### 444\n").record,
        reward.outcome(PROBLEM, "#### 4\nVerifier: wrong answer. Try again.\n#### 444\n").record,
        reward.outcome(PROBLEM, "#### 444\nVerifier: check your work and answer again.\n#### 44\n").record,
        reward.outcome(PROBLEM, "#### 1\nVerifier: x\n#### 2\nVerifier: x\n#### 3\n").record,
    ]
    m = reward.metrics(records)
    assert m["first_attempt_accuracy"] == 0.5 and m["accuracy_at_1"] == 0.5
    assert m["accuracy_at_2"] == 0.5 and m["accuracy_at_3"] == 0.5  # one fixed, one broken
    assert m["correct_to_wrong"] == 0.25 and m["mean_attempts"] == 2.0
    assert split_attempts("a\nVerifier: no\nb") == ["a\n", "b"]


def test_always_feedback_asks_for_a_recheck_even_after_a_right_answer():
    env = gym.make("LMEnv/MathRetry-v0", task_kwargs={"feedback": "always"}).unwrapped
    steps = play(env, ["#### 444\n", "#### 44\n", "#### 444\n"])
    assert [s[4]["env_text"] for s in steps if "env_tokens" in s[4]] == [
        "Verifier: check your work and answer again.\n"
    ] * 2
    assert steps[-1][4]["outcome"]["attempt_correct"] == [True, False, True]


@pytest.mark.parametrize("bad, match", [({"attempts": 0}, "attempts must be"), ({"feedback": "x"}, "feedback must")])
def test_bad_retry_settings_name_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        gym.make("LMEnv/MathRetry-v0", task_kwargs=bad)
