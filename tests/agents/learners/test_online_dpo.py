"""Online DPO and self-rewarding: pairs, agreement metrics and the judge's score against hand-computed values,
learning on the toy env, the reward-model and self rankers, and the config errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

import lm_envs  # noqa: F401
from agents.learners.base import RunContext
from agents.learners.online_dpo import (
    OnlineDPOConfig,
    OnlineDPOLearner,
    best_worst_pairs,
    choice_token_ids,
    judge_scores,
    pairwise_accuracy,
    ranking_metrics,
    spearman,
)
from agents.policy.models import build_default_model, frozen_copy
from agents.run import to_run_config
from agents.run.config import register_configs

register_configs()

JUDGE = "Answer: {response}\nTo: {prompt}\nScore: "


@pytest.fixture(scope="module")
def codec():
    return gym.make("LMEnv/Digits-v0").unwrapped.codec


def tiny(codec, seed: int = 0):
    return build_default_model(codec, seed=seed, n_layer=1, n_embd=32, n_head=2, n_positions=96)


def ctx_for(codec, env_id: str = "LMEnv/Digits-v0") -> RunContext:
    return RunContext(env_id, {"vocab_size": codec.vocab_size}, None, codec, 0, torch.device("cpu"))


def test_pairs_are_each_groups_best_and_worst_and_ties_are_skipped():
    s = torch.tensor([0.2, 0.9, 0.1, 0.5, 0.5, 0.5, 1.0, 0.0, 0.0])
    assert best_worst_pairs(s, 3) == [(1, 2), (6, 7)]
    assert best_worst_pairs(torch.zeros(4), 2) == []


def test_agreement_metrics_match_hand_computation():
    assert pairwise_accuracy([3, 1, 2, 2], [1, 0, 0, 1], 2) == 0.75  # group 1 right, group 2 a judge tie
    assert math.isnan(pairwise_accuracy([1, 2], [0, 0], 2))
    assert spearman([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [2, 2, 1]) == pytest.approx(-math.sqrt(3) / 2)  # ranks (2.5, 2.5, 1)
    m = ranking_metrics(
        torch.tensor([0.9, 0.1, 0.2, 0.8]),
        torch.tensor([1.0, 0.0, 1.0, 0.0]),
        torch.tensor([5.0, 3.0, 2.0, 9.0]),
        [(0, 1), (3, 2)],
        2,
    )
    assert m["rank/pairwise_accuracy"] == 0.5 and m["rank/pair_env_accuracy"] == 0.5
    assert m["rank/length_spearman"] == pytest.approx(spearman([0.9, 0.1, 0.2, 0.8], [5, 3, 2, 9]))


class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token logits at every position are ``logits``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def test_the_judge_score_is_the_expected_choice_under_its_next_token_distribution(codec):
    env_config = gym.make("LMEnv/Digits-v0").unwrapped.episodes.config
    ids = choice_token_ids(codec, ["1", "2", "3", "4", "5"])
    logits = torch.full((codec.vocab_size,), -5.0)
    logits[ids] = 0.0  # uniform over the choices: expected score 3
    got = judge_scores(FixedLogits(logits), codec, env_config, JUDGE, ["p", "q"], ["a", "bb"], ids)
    assert got.tolist() == pytest.approx([3.0, 3.0])
    logits[ids[4]] = math.log(3.0)  # p = (1, 1, 1, 1, 3) / 7
    got = judge_scores(FixedLogits(logits), codec, env_config, JUDGE, ["p"], ["a"], ids)
    assert got.item() == pytest.approx((1 + 2 + 3 + 4 + 15) / 7)
    with pytest.raises(ValueError, match=r"judge choice 'Score: ' is \d+ tokens.*agent.judge_choices"):
        choice_token_ids(codec, ["1", "Score: "])


def test_online_dpo_raises_the_toy_envs_reward_within_seconds(codec):
    torch.manual_seed(0)
    lm = tiny(codec)
    ref = frozen_copy(lm)
    cfg = OnlineDPOConfig(num_envs=32, group_size=4, lr=1e-2, beta=1.0, iterations=4)
    learner = OnlineDPOLearner(cfg, lm, ctx_for(codec))
    returns = [learner.iteration(it, ref)["rollout/return_mean"] for it in range(30)]
    assert np.mean(returns[:3]) < 0.1 and np.mean(returns[-5:]) > 0.6
    m = learner.iteration(30, ref)
    assert {"pairs/formed", "pairs/tied_fraction", "rollout/success"} <= set(m)
    assert "rank/spearman" not in m  # the env ranks: nothing to agree with


def test_self_rewarding_judges_with_the_policy_and_logs_agreement_and_length_bias(codec):
    lm = tiny(codec)
    cfg = OnlineDPOConfig(num_envs=16, group_size=4, lr=1e-3, ranker="self", judge_template=JUDGE)
    learner = OnlineDPOLearner(cfg, lm, ctx_for(codec))
    m = learner.iteration(0, frozen_copy(lm))
    assert m["pairs/formed"] == 4  # a continuous judge never ties
    assert 1.0 <= m["rank/score_mean"] <= 5.0
    for key in ("rank/pairwise_accuracy", "rank/spearman", "rank/pair_env_accuracy", "rank/length_spearman"):
        assert key in m
    assert {"pairs/chosen_length", "pairs/rejected_length", "dpo/accuracy"} <= set(m)


def test_a_reward_model_ranks_the_samples_on_prompt_plus_completion(tmp_path, codec):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from lm_envs.core.tokenizer import save_codec
    from lm_envs.tasks.chat.reward import load_scorer

    torch.manual_seed(0)
    rm = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=codec.vocab_size, n_layer=1, n_embd=16, n_head=2, num_labels=1, pad_token_id=0)
    )
    rm.save_pretrained(tmp_path)
    save_codec(codec, tmp_path)
    lm = tiny(codec)
    cfg = OnlineDPOConfig(num_envs=8, group_size=4, ranker="reward_model", reward_model=str(tmp_path))
    learner = OnlineDPOLearner(cfg, lm, ctx_for(codec))
    m = learner.iteration(0, frozen_copy(lm))
    assert m["pairs/formed"] == 2 and "rank/spearman" in m
    from agents.learners.base import collect_iteration

    rollout, _ = collect_iteration(lm, learner.venv, cfg, learner.ctx, 5, learner.ctx.generator(5))
    texts = [r["prompt"] + i["completion"] for r, i in zip(rollout.reset_infos, rollout.infos, strict=True)]
    assert learner.rank(rollout).tolist() == pytest.approx(load_scorer(str(tmp_path)).score(texts))


def _cfg(tmp_path, agent, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", f"agent={agent}", *overrides])


@pytest.mark.parametrize(
    "agent, overrides, message",
    [
        ("online_dpo", ("agent.group_size=1",), r"agent.group_size must be >= 2, got 1"),
        ("online_dpo", ("agent.ranker=self",), r"agent.ranker=self \(self-rewarding\) needs a judge prompt"),
        ("self_rewarding", ("agent.judge_template='Rate {response}'",), r"needs a judge prompt.*\{prompt\}"),
        ("self_rewarding", ("agent.judge_choices=[1]",), r"agent.judge_choices must be >= 2 distinct"),
        ("online_dpo", ("agent.ranker=reward_model",), r"agent.ranker=reward_model needs agent.reward_model="),
        ("online_dpo", ("agent.ranker=oracle",), r"unknown agent.ranker 'oracle'"),
        ("online_dpo", ("agent.loss=ipo", "agent.label_smoothing=0.2"), r"loss=sigmoid only"),
    ],
)
def test_bad_online_dpo_settings_fail_in_validate_naming_the_keys(tmp_path, agent, overrides, message):
    with pytest.raises(ValueError, match=message):
        to_run_config(_cfg(tmp_path, agent, *overrides))


def test_the_shipped_self_rewarding_option_validates(tmp_path):
    cfg = to_run_config(_cfg(tmp_path, "self_rewarding"))
    assert cfg.agent.ranker == "self" and "{response}" in cfg.agent.judge_template
