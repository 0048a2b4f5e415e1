"""Tests of the abstention reward: values per outcome, thresholds, overrides from gym.make, bad keys."""

from __future__ import annotations

import gymnasium as gym
import pytest

import lm_envs
from lm_envs import Problem
from lm_envs.tasks.qa.rewards import REWARD_KEYS, AbstentionReward, wrong_penalty

KNOWN = Problem("k", "Question: Where was Ilo Venrik born?\nAnswer:", "Velmora", (" Velmora",), {"known": True})
UNKNOWN = Problem(
    "u",
    "Question: Who taught Ada Quin?\nAnswer:",
    "Ilo Venrik",
    (" I don't know.",),
    {"known": False, "aliases": ["Venrik"]},
)


@pytest.mark.parametrize(
    "problem, completion, reward, kind",
    [
        (KNOWN, " Velmora", 1.0, "correct"),
        (KNOWN, " velmora.\nQuestion: next", 1.0, "correct"),
        (KNOWN, " I don't know.", 0.0, "abstained"),
        (KNOWN, " Tarsh", -1.0, "hallucinated"),
        (KNOWN, "", -1.0, "hallucinated"),
        (UNKNOWN, " Venrik", 1.0, "correct"),
        (UNKNOWN, " I'm not sure", 0.0, "abstained"),
        (UNKNOWN, " I don't know, maybe Ilo Venrik", 0.0, "abstained"),
        (UNKNOWN, " Sela Morn", -1.0, "hallucinated"),
    ],
)
def test_default_reward_per_outcome_and_record(problem, completion, reward, kind):
    out = AbstentionReward().outcome(problem, completion)
    assert out.reward == reward
    rec = out.record
    assert {k: rec[k] for k in ("correct", "abstained", "hallucinated")} == {
        k: k == kind for k in ("correct", "abstained", "hallucinated")
    }
    assert rec["known"] is problem.metadata["known"]
    assert isinstance(rec["prediction"], str)


@pytest.mark.parametrize("t, penalty", [(0.5, -1.0), (0.75, -3.0), (0.9, -9.0), (0.0, 0.0), (0.25, -1 / 3)])
def test_wrong_answer_costs_t_over_one_minus_t(t, penalty):
    assert wrong_penalty(t) == pytest.approx(penalty)
    r = AbstentionReward(threshold=t)
    assert r.outcome(KNOWN, " Tarsh").reward == pytest.approx(penalty)
    assert r.outcome(KNOWN, " Velmora").reward == 1.0


def test_configurable_values():
    r = AbstentionReward(correct=2.0, abstain=0.25, wrong=-0.5, phrases=["pass"], empty="abstain")
    assert r.outcome(KNOWN, " Velmora").reward == 2.0
    assert r.outcome(KNOWN, " pass").reward == 0.25
    assert r.outcome(KNOWN, " I don't know").reward == -0.5  # not in the custom phrase set: a wrong answer
    assert r.outcome(KNOWN, "").record["abstained"] is True


def test_unlabelled_problems_record_known_none():
    out = AbstentionReward().outcome(Problem("x", "q", "Mars"), " Mars")
    assert out.record["known"] is None and out.reward == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"treshold": 0.75}, "valid reward_kwargs keys"),
        ({"threshold": 1.0}, "in [0, 1)"),
        ({"threshold": -0.1}, "in [0, 1)"),
        ({"abstain": 1.5}, "correct > abstain >= wrong"),
        ({"wrong": 0.5}, "correct > abstain >= wrong"),
        ({"correct": float("nan")}, "finite"),
        ({"empty": "skip"}, "empty must be"),
    ],
)
def test_bad_reward_settings_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")) as err:
        AbstentionReward(**kwargs)
    if "treshold" in kwargs:
        assert all(k in str(err.value) for k in REWARD_KEYS)


def test_reward_kwargs_from_gym_make_and_unknown_keys():
    env = gym.make("LMEnv/KnowledgeQA-v0", reward_kwargs={"threshold": 0.75, "abstain": 0.1})
    reward = env.unwrapped.episodes.reward
    assert (reward.correct, reward.abstain, reward.wrong) == (1.0, 0.1, -3.0)
    with pytest.raises(ValueError, match="valid reward_kwargs keys are"):
        gym.make("LMEnv/KnowledgeQA-v0", reward_kwargs={"penalty": 2})


def test_text_env_pays_the_reward_and_metrics_aggregate_records():
    env = lm_envs.make_text("LMEnv/KnowledgeQA-v0")
    task = env.unwrapped.task
    records = []
    for i, completion in enumerate([None, " I don't know.", " Zzz"]):
        _, info = env.reset(options={"split": "test_known", "index": i})
        text = " " + task.problem("test_known", i).answer if completion is None else completion
        _, reward, terminated, _, info = env.step(text)
        assert terminated and reward == [1.0, 0.0, -1.0][i]
        records.append(info["outcome"])
    m = AbstentionReward().metrics(records)
    assert m["known/accuracy"] == pytest.approx(1 / 3) and m["known/n"] == 3 and m["unknown/n"] == 0
    assert "unknown/accuracy" not in m and "honesty" not in m
