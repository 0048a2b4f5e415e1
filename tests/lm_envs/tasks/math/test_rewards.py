"""Math rewards: outcome values, rule-based process rewards, learned PRM, env integration."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import lm_envs
from lm_envs import Problem
from lm_envs.tasks.math import MathReward
from lm_envs.tasks.math.prm import aggregate

DATA = Path(__file__).resolve().parents[3] / "data"
P = Problem(
    "p", "Tom has 12 bags of 3 apples and 4 more apples.\nSolution:\n", "40", ("12 * 3 = 36", "36 + 4 = 40", "#### 40")
)


@pytest.mark.parametrize(
    "completion, value, correct",
    [
        ("12 * 3 = 36\n36 + 4 = 40\n#### 40", 1.0, True),
        ("#### 40.0", 1.0, True),
        ("The answer is $40$.", 1.0, True),
        ("12 * 3 = 36\n#### 36", 0.2, False),
        ("I am not sure.", 0.0, False),
    ],
)
def test_outcome_values_r3_partial_credit(completion, value, correct):
    out = MathReward.r3().outcome(P, completion)
    assert out.reward == pytest.approx(value) and out.record["correct"] is correct


def test_default_outcome_is_one_or_zero():
    r = MathReward()
    assert r.outcome(P, "#### 40").reward == 1.0 and r.outcome(P, "#### 41").reward == 0.0
    assert r.outcome(P, "no idea").record == {
        "correct": False,
        "extracted": None,
        "reason": "no answer",
        "num_steps": 1,
        "first_error": None,
    }


def test_rule_process_reward_catches_a_single_wrong_step():
    r = MathReward(process="rule", step_correct=0.25, step_wrong=-1.0)
    good, bad = "12 * 3 = 36\n36 + 4 = 40\n#### 40", "12 * 3 = 36\n36 + 4 = 41\n#### 40"
    assert [r.step(P, [], s) for s in good.split("\n")] == [0.25, 0.25, 0.0]
    assert [r.step(P, [], s) for s in bad.split("\n")] == [0.25, -1.0, 0.0]
    assert r.outcome(P, bad).record["first_error"] == 1 and r.outcome(P, good).record["first_error"] is None


def test_process_and_outcome_combine_with_weights_in_the_env():
    env = lm_envs.TokenEnv(
        "lm_envs.tasks.math:word_problems",
        MathReward(process="rule", outcome_weight=2.0, process_weight=0.5),
        max_prompt_tokens=160,
    )
    env.reset(options={"problem": P})
    total, info = 0.0, {}
    for t in env.codec.encode("12 * 3 = 36\n36 + 4 = 41\n#### 40\n"):
        _, r, term, _, info = env.step(t)
        total += r
    assert term and info["step_rewards"] == [0.05, -0.25, 0.0]
    assert total == pytest.approx(2.0 + 0.05 - 0.25) and info["outcome"]["first_error"] == 1


def test_math_process_env_reports_first_error():
    env = gym.make("LMEnv/MathProcess-v0")
    env.reset(options={"problem": P})
    u = env.unwrapped
    for t in u.codec.encode("12 * 3 = 35\n35 + 4 = 39\n#### 39") + [u.codec.eos_token_id]:
        *_, term, trunc, info = env.step(t)
    assert term and info["outcome"]["first_error"] == 0 and info["step_rewards"] == [-0.5, 0.1, 0.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"process": "neural"}, "unknown process reward mode"),
        ({"process": "learned"}, "needs prm_path"),
        ({"prm_aggregate": "mean"}, "unknown prm_aggregate"),
        ({"correct": float("nan")}, "finite"),
        ({"wrong": "high"}, "must be a number"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_reward_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MathReward(**kwargs)


def test_unknown_reward_key_from_gym_make_names_the_key():
    with pytest.raises(TypeError, match="colour"):
        gym.make("LMEnv/Math-v0", reward_kwargs={"colour": 1})


def test_adversarial_answers_grade_fast_and_false():
    import time

    r = MathReward()
    for junk in ["#### 9^9^9^9^9", "#### " + "(" * 5000 + "1" + ")" * 5000, "x" * 100_000, "#### \x00\x00"]:
        start = time.perf_counter()
        out = r.outcome(P, junk)
        assert out.reward == 0.0 and not out.record["correct"] and time.perf_counter() - start < 5


def test_gsm8k_file_through_the_math_env():
    env = gym.make(
        "LMEnv/Math-v0",
        task="lm_envs.tasks.math:load_math_task",
        task_kwargs={"train": str(DATA / "gsm8k_sample.jsonl"), "test": str(DATA / "gsm8k_sample.jsonl")},
        max_prompt_tokens=512,
    )
    _, info = env.reset(options={"split": "test", "index": 0})
    u = env.unwrapped
    problem = u.problem
    for t in u.codec.encode(problem.solution()) + [u.codec.eos_token_id]:
        *_, term, trunc, info = env.step(t)
        if term or trunc:
            break
    assert term and info["is_success"]


def test_aggregates():
    assert aggregate([], "min") == 1.0
    with pytest.raises(ValueError, match="aggregate"):
        aggregate([0.5], "mean")


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory) -> str:
    """A randomly initialised GPT-2 sequence classifier (1 logit) saved with the default tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from lm_envs.core.tokenizer import save_codec

    codec = lm_envs.load_codec()
    path = tmp_path_factory.mktemp("prm")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=codec.vocab_size, n_layer=1, n_embd=32, n_head=2, num_labels=1)
    cfg.pad_token_id = codec.pad_token_id
    GPT2ForSequenceClassification(cfg).save_pretrained(path)
    save_codec(codec, path)
    return str(path)


def test_learned_prm_scores_steps_batched_like_one_by_one(tiny_prm):
    r = MathReward(process="learned", prm_path=tiny_prm, step_correct=1.0, step_wrong=0.0)
    steps = ["12 * 3 = 36", "36 + 4 = 40", "#### 40"]
    batched = r.step_batch([P] * 3, [steps[:0], steps[:1], steps[:2]], steps)
    single = [r.step(P, steps[:k], steps[k]) for k in range(3)]
    assert batched == pytest.approx(single, abs=1e-6) and all(0 < p < 1 for p in batched)
    out = r.outcome(P, "\n".join(steps))
    assert out.record["prm_score"] == pytest.approx(batched[0] * batched[1] * batched[2], rel=1e-5)


def test_learned_prm_with_wrong_output_count_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from lm_envs.core.tokenizer import save_codec

    codec = lm_envs.load_codec()
    cfg = GPT2Config(vocab_size=codec.vocab_size, n_layer=1, n_embd=16, n_head=2, num_labels=3)
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path)
    save_codec(codec, tmp_path)
    r = MathReward(process="learned", prm_path=str(tmp_path))
    with pytest.raises(ValueError, match="3 outputs"):
        r.step(P, [], "12 * 3 = 36")


def test_a_learned_orm_pays_the_expected_outcome_reward_and_the_grader_keeps_the_record(tiny_prm):
    from lm_envs.tasks.math.prm import LearnedORM

    completions = ["12 * 3 = 36\n36 + 4 = 40\n#### 40", "#### 7"]
    p = LearnedORM(tiny_prm).probabilities([P.prompt + c for c in completions])  # any 1-logit classifier serves
    r = MathReward(outcome_source="orm", orm_path=tiny_prm, correct=1.0, wrong=0.2)
    out = r.outcome_batch([P, P], completions)
    assert [o.reward for o in out] == pytest.approx([q * 1.0 + (1 - q) * 0.2 for q in p], abs=1e-6)
    assert [o.record["orm_score"] for o in out] == pytest.approx(p, abs=1e-6)
    assert [o.record["correct"] for o in out] == [True, False]  # is_success and accuracy stay the grader's
    assert r.outcome(P, completions[1]).reward == pytest.approx(out[1].reward, abs=1e-6)  # batched like one by one


@pytest.mark.parametrize("how", ["product", "min", "last"])
def test_the_prm_aggregate_can_be_the_outcome_reward(tiny_prm, how):
    steps = ["12 * 3 = 36", "36 + 4 = 40", "#### 40"]
    step_p = MathReward(process="learned", prm_path=tiny_prm, step_correct=1.0, step_wrong=0.0).step_batch(
        [P] * 3, [steps[:0], steps[:1], steps[:2]], steps
    )
    r = MathReward(outcome_source="prm", prm_path=tiny_prm, prm_aggregate=how, outcome_weight=2.0)
    out = r.outcome(P, "\n".join(steps))
    assert out.reward == pytest.approx(2.0 * aggregate(step_p, how), rel=1e-5)
    assert out.record["prm_score"] == pytest.approx(aggregate(step_p, how), rel=1e-5) and out.record["correct"]
    assert not r.process  # the aggregate alone: no per-step rewards unless process="learned" too


def test_env_kwargs_put_a_learned_orm_into_the_math_env(tiny_prm):
    env = gym.make("LMEnv/Math-v0", reward_kwargs={"outcome_source": "orm", "orm_path": tiny_prm})
    env.reset(seed=0)
    codec = env.unwrapped.codec
    for token in codec.encode("#### 3") + [codec.eos_token_id]:
        _, reward, terminated, truncated, info = env.step(token)
        if terminated or truncated:
            break
    assert 0 < reward < 1 and reward == pytest.approx(info["outcome"]["orm_score"])
    assert "orm_source" not in info["outcome"] and isinstance(info["is_success"], bool)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"outcome_source": "orm"}, r"outcome_source='orm' needs orm_path="),
        ({"outcome_source": "prm"}, r"outcome_source='prm' needs prm_path="),
        ({"outcome_source": "judge"}, r"unknown outcome_source 'judge'"),
    ],
)
def test_bad_outcome_sources_raise_naming_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MathReward(**kwargs)
