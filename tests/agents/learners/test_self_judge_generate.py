"""Self-rewarding's generated judgement (agent.judge_mode=generate, LLM-as-a-judge as in Yuan et al. 2024): a
scripted judge model writes known texts, the score is parsed from them, unparsable judgements leave their
samples out of pairing (counted in judge/unparsed), and the bad settings fail in validate naming the keys."""

from __future__ import annotations

import math
from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch
from hydra import compose, initialize_config_module

import agents.learners.online_dpo as online_dpo
import lm_envs  # noqa: F401
from agents.learners.base import RunContext
from agents.learners.online_dpo import (
    OnlineDPOConfig,
    OnlineDPOLearner,
    best_worst_pairs,
    judge_generate,
    parse_judgement,
    ranking_metrics,
)
from agents.policy.models import build_default_model, frozen_copy
from agents.run import to_run_config
from agents.run.config import register_configs

register_configs()

JUDGE = "Answer: {response}\nTo: {prompt}\nScore: "
YUAN = r"Score: *(\d+)"


@pytest.fixture(scope="module")
def digits():
    env = gym.make("LMEnv/Digits-v0").unwrapped
    return env.codec, env.episodes.config


class ScriptedJudge(torch.nn.Module):
    """A 'model' that, after each known judge prompt, greedily writes its script and then EOS."""

    def __init__(self, codec, env_config, template, prompts, responses, scripts) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # judge_generate reads the device from a parameter
        self.vocab, self.eos = codec.vocab_size, codec.eos_token_id
        self.rows = [
            (env_config.encode_prompt(codec, template.format(prompt=p, response=r)), codec.encode(t) + [self.eos])
            for p, r, t in zip(prompts, responses, scripts, strict=True)
        ]
        self.forwards = 0

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        self.forwards += 1
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b in range(len(input_ids)):
            real = input_ids[b][attention_mask[b] == 1].tolist()  # left padding and after-EOS padding dropped
            prompt, script = next((p, s) for p, s in self.rows if real[: len(p)] == p)
            k = len(real) - len(prompt)  # tokens written so far
            logits[b, -1, script[k] if k < len(script) else self.eos] = 10.0
        return SimpleNamespace(logits=logits)


def test_the_judge_writes_greedily_until_eos_or_its_budget_and_the_score_is_parsed(digits):
    codec, env_config = digits
    prompts, responses = ["12", "345", "6", "78"], ["1", "22", "333", "4"]
    scripts = ["Score: 4", "it is fine. Score: 2 overall", "no idea", "Score: 9"]
    judge = ScriptedJudge(codec, env_config, JUDGE, prompts, responses, scripts)
    texts = judge_generate(judge, codec, env_config, JUDGE, prompts, responses, max_new_tokens=40)
    assert texts == scripts
    choices = ["1", "2", "3", "4", "5"]
    assert [parse_judgement(t, YUAN, choices) for t in texts][:2] == [4.0, 2.0]
    assert all(math.isnan(parse_judgement(t, YUAN, choices)) for t in texts[2:])  # no match; 9 is off the scale
    assert judge.forwards == max(len(codec.encode(t)) for t in scripts) + 1  # stops once every row wrote EOS
    # a budget shorter than the judgement cuts it: "Score: 4" needs all its tokens
    short = len(codec.encode("Score: 4")) - 1
    cut = judge_generate(judge, codec, env_config, JUDGE, prompts[:1], responses[:1], max_new_tokens=short)
    assert cut == [codec.decode(codec.encode("Score: 4")[:short])] and math.isnan(
        parse_judgement(cut[0], YUAN, choices)
    )
    # the default pattern takes the first integer; Yuan et al.'s additive 0-5 scale maps to positions 1..6
    assert parse_judgement("3 points", r"(\d+)", choices) == 3.0
    assert parse_judgement("Score: 0", YUAN, [str(i) for i in range(6)]) == 1.0


def test_unscored_samples_take_no_part_in_pairs_or_agreement():
    nan = float("nan")
    scores = torch.tensor([5.0, 1.0, nan, 3.0, 2.0, nan, nan, nan, 3.0, 3.0, nan, nan, nan, nan, nan, nan])
    assert best_worst_pairs(scores, 4) == [(0, 1)]  # group 1: one scored; group 2: a tie; group 3: none
    returns = torch.tensor([1.0, 0.0, 1.0, 0.0] * 4)
    m = ranking_metrics(scores, returns, torch.arange(16.0), [(0, 1)], 4)
    # pairs with differing returns and both scored: group 0's (0, 1) and (0, 3), both ordered right; group 2's
    # (8, 9), a judge tie (half); every other pair has an unscored sample
    assert m["rank/pairwise_accuracy"] == pytest.approx(2.5 / 3)
    assert m["rank/score_mean"] == pytest.approx((5 + 1 + 3 + 2 + 3 + 3) / 6)
    assert m["rank/pair_env_accuracy"] == 1.0 and not math.isnan(m["rank/spearman"])


def test_self_rewarding_with_generated_judgements_pairs_only_scored_samples(digits, monkeypatch):
    codec, _ = digits
    texts = ["Score: 5", "Score: 1", "garbage", "Score: 3"]  # group 0: a pair (0, 1)
    texts += ["Score: 2", "none", "nope", "?"]  # group 1: one scored sample, no pair
    texts += ["Score: 3", "Score: 3", "?", "?"]  # group 2: scored samples tie, no pair
    texts += ["?"] * 4  # group 3: nothing scored
    calls = []

    def scripted(model, codec, env_config, template, prompts, responses, max_new_tokens, max_length=None):
        calls.append((template, max_new_tokens))
        return texts[: len(prompts)]

    monkeypatch.setattr(online_dpo, "judge_generate", scripted)
    lm = build_default_model(codec, seed=0, n_layer=1, n_embd=32, n_head=2, n_positions=96)
    before = frozen_copy(lm)
    cfg = OnlineDPOConfig(
        num_envs=16, group_size=4, lr=1e-2, ranker="self", judge_template=JUDGE, judge_mode="generate",
        judge_pattern=YUAN, judge_max_tokens=12,
    )  # fmt: skip
    ctx = RunContext("LMEnv/Digits-v0", {"vocab_size": codec.vocab_size}, None, codec, 0, torch.device("cpu"))
    learner = OnlineDPOLearner(cfg, lm, ctx)
    m = learner.iteration(0, frozen_copy(lm))
    assert calls == [(JUDGE, 12)] and learner.judgements == texts
    assert m["pairs/formed"] == 1 and m["pairs/tied_fraction"] == 0.75
    assert m["judge/unparsed"] == 10 and m["judge/unparsed_fraction"] == 10 / 16
    assert m["dpo/loss"] == pytest.approx(math.log(2), abs=1e-5)  # one step on the one pair, from the reference
    assert any(not torch.equal(a, b) for a, b in zip(lm.state_dict().values(), before.state_dict().values()))
    assert m["rank/score_mean"] == pytest.approx((5 + 1 + 3 + 2 + 3 + 3) / 6)


def _cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", *overrides])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent=self_rewarding", "agent.judge_mode=sample"], r"unknown agent.judge_mode 'sample'"),
        (["agent=online_dpo", "agent.judge_mode=generate"], r"agent.judge_mode=generate .* agent.ranker=self"),
        (["agent=self_rewarding", "agent.judge_mode=generate", "agent.judge_pattern=Score"], r"has 0 groups"),
        (["agent=self_rewarding", "agent.judge_mode=generate", "agent.judge_pattern='('"], r"not a regular exp"),
        (["agent=self_rewarding", "agent.judge_mode=generate", "agent.judge_max_tokens=0"], r"judge_max_tokens"),
    ],
)
def test_bad_judge_settings_fail_in_validate_naming_the_keys(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        to_run_config(_cfg(tmp_path, *overrides))


def test_the_generate_mode_validates_with_yuans_scale(tmp_path):
    choices = "agent.judge_choices=['0','1','2','3','4','5']"
    cfg = to_run_config(_cfg(tmp_path, "agent=self_rewarding", "agent.judge_mode=generate", choices))
    assert cfg.agent.judge_mode == "generate" and cfg.agent.judge_choices[0] == "0"


def test_a_real_untrained_judge_runs_and_its_unparsable_judgements_are_counted(digits):
    codec, _ = digits
    lm = build_default_model(codec, seed=0, n_layer=1, n_embd=32, n_head=2, n_positions=96)
    cfg = OnlineDPOConfig(
        num_envs=8, group_size=4, ranker="self", judge_template=JUDGE, judge_mode="generate", judge_max_tokens=4
    )
    ctx = RunContext("LMEnv/Digits-v0", {"vocab_size": codec.vocab_size}, None, codec, 0, torch.device("cpu"))
    learner = OnlineDPOLearner(cfg, lm, ctx)
    m = learner.iteration(0, frozen_copy(lm))
    assert len(learner.judgements) == 8  # one greedy judgement of at most 4 tokens per sample
    scored = 8 - m["judge/unparsed"]
    assert 0 <= m["judge/unparsed_fraction"] <= 1 and m["pairs/formed"] <= scored // 2
    assert ("dpo/loss" in m) == (m["pairs/formed"] > 0)
