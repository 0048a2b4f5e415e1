"""Reward-model training: the Bradley-Terry loss, learning on the synthetic set, PRM labels, saving and loading,
Hydra configs and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from agents.reward_models.train import (
    RewardModelConfig,
    Solution,
    bradley_terry_loss,
    build_reward_model,
    check_config,
    classifier_loss,
    contrastive_step_pairs,
    evaluate_pairs,
    math_examples,
    perturbed_solutions,
    rule_step_labels,
    shepherd_step_labels,
    train_reward_model,
    wrong_results,
)
from agents.train_rm import register_configs, to_config
from lm_envs import Problem
from lm_envs.tasks.chat.default_rm import default_reward_model_path
from lm_envs.tasks.chat.preferences import PreferencePair, synthetic_preferences
from lm_envs.tasks.math import word_problems

register_configs()
CONF = Path(__file__).resolve().parents[3] / "conf"
RM_OPTIONS = sorted(p.stem for p in (CONF / "rm").glob("*.yaml"))
TINY = dict(n_layer=1, n_embd=32, n_head=2, max_length=192, eval_every=0, threads=1)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ----------------------------------------------------------------------------------------------- loss


def test_bradley_terry_loss_and_gradients_match_hand_computed_values():
    rc = torch.tensor([2.0, 0.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0], requires_grad=True)
    loss, metrics = bradley_terry_loss(rc, rr)
    # -log sigmoid(2) = 0.126928, -log sigmoid(-1) = 1.313262
    assert loss.item() == pytest.approx((0.126928 + 1.313262) / 2, abs=1e-6)
    loss.backward()
    # d/dr+ of -log sigmoid(d) / B is -(1 - sigmoid(d)) / B; d/dr- is the opposite.
    expected = torch.tensor([-(1 - sigmoid(2.0)) / 2, -(1 - sigmoid(-1.0)) / 2])
    torch.testing.assert_close(rc.grad, expected)
    torch.testing.assert_close(rr.grad, -expected)
    assert metrics["accuracy"] == 0.5 and metrics["margin"] == pytest.approx(0.5)


def test_margin_and_centering_terms():
    rc = torch.tensor([2.0, 0.0], requires_grad=True)
    rr = torch.tensor([0.0, 1.0], requires_grad=True)
    loss, _ = bradley_terry_loss(rc, rr, margin=1.0, center_coef=0.01)
    # -log sigmoid(1) = 0.313262, -log sigmoid(-2) = 2.126928; centering 0.01 * mean(2^2, 1^2) = 0.025
    assert loss.item() == pytest.approx((0.313262 + 2.126928) / 2 + 0.025, abs=1e-6)
    loss.backward()
    # pair 0: -(1 - sigmoid(1)) / 2 + 0.01 * 2 * (2 + 0) / 2
    assert rc.grad[0].item() == pytest.approx(-(1 - sigmoid(1.0)) / 2 + 0.02, abs=1e-6)
    per_pair, _ = bradley_terry_loss(rc.detach(), rr.detach(), margin=torch.tensor([1.0, 0.0]))
    assert per_pair.item() == pytest.approx((0.313262 + 1.313262) / 2, abs=1e-6)


def test_classifier_loss_takes_soft_labels():
    loss = classifier_loss(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.25]))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # logit 0: -log(1/2) whatever the label


# ----------------------------------------------------------------------------------------------- learning


def test_default_rm_beats_chance_on_held_out_synthetic_pairs():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lm_envs.tasks.chat.reward import prepare_tokenizer

    path = default_reward_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path), model)
    held = synthetic_preferences(200, split="test")
    accuracy = evaluate_pairs(model, tokenizer, held, max_length=256)["accuracy"]
    # 200 pairs: chance is 0.5 +- 0.035 (1 sd); the default recipe reaches about 0.76.
    assert accuracy > 0.65
    assert model.config.heldout_accuracy == pytest.approx(accuracy, abs=0.01)


def test_short_preference_run_saves_a_loadable_rm_that_changed(tmp_path):
    cfg = RewardModelConfig(output_dir=str(tmp_path), num_pairs=64, steps=3, batch_size=4, lr=1e-3, **TINY)
    torch.manual_seed(cfg.seed)
    before, _ = build_reward_model(cfg)
    result = train_reward_model(cfg)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["heldout"] == result["heldout"]
    from transformers import AutoModelForSequenceClassification

    after = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert after.config.num_labels == 1 and hasattr(after.config, "reward_mean")
    changed = any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    assert changed
    from lm_envs.tasks.chat.reward import ChatReward
    from lm_envs.tasks.chat.task import SyntheticInstructions

    problem = SyntheticInstructions().problem("test", 0)
    out = ChatReward(reward_model=str(tmp_path), normalize=True).outcome(problem, " Some green words.")
    assert math.isfinite(out.reward) and "gold" in out.record


@pytest.mark.slow
def test_preference_run_learns_the_rubric(tmp_path):
    cfg = RewardModelConfig(
        output_dir=str(tmp_path), num_pairs=1000, steps=200, lr=4e-3, n_layer=2, n_embd=48, n_head=2, max_length=256
    )
    assert train_reward_model(cfg)["heldout"]["accuracy"] > 0.65


# ----------------------------------------------------------------------------------------------- PRM labels

P = Problem("p", "Q: 12 * 3 + 4?\nA:\n", "40", ("12 * 3 = 36", "36 + 4 = 40", "#### 40"))


def test_rule_labels_are_good_until_the_first_error():
    assert rule_step_labels(P, ["12 * 3 = 36", "36 + 4 = 40", "#### 40"]) == [1.0, 1.0, 1.0]
    assert rule_step_labels(P, ["12 * 3 = 38", "38 + 4 = 42", "#### 42"]) == [0.0, 0.0, 0.0]
    # a wrong step after good ones; a right answer cannot repair an earlier error
    assert rule_step_labels(P, ["12 * 3 = 36", "36 + 4 = 41", "#### 40"]) == [1.0, 0.0, 0.0]
    # every claim right but the final answer wrong
    assert rule_step_labels(P, ["12 * 3 = 36", "Then add four.", "#### 41"]) == [1.0, 1.0, 0.0]


def scripted_completer(table):
    """A completer that continues a prefix with the texts ``table[prefix]`` (cycled to k)."""
    calls = []

    def complete(problems, prefixes, k):
        calls.append(len(prefixes))
        return [[table[p][j % len(table[p])] for j in range(k)] for p in prefixes]

    complete.calls = calls
    return complete


def test_shepherd_hard_and_soft_labels_on_hand_built_solutions():
    good = Solution(P, ["12 * 3 = 36", "36 + 4 = 40", "#### 40"], True)
    bad = Solution(P, ["12 * 3 = 38", "38 + 4 = 42", "#### 42"], False)
    table = {
        "12 * 3 = 36\n": ["36 + 4 = 40\n#### 40", "#### 41", "36 + 4 = 40\n#### 40", "no idea"],
        "12 * 3 = 36\n36 + 4 = 40\n": ["#### 40"],
        "12 * 3 = 38\n": ["#### 42", "38 + 2 = 40\n#### 40", "#### 42", "#### 42"],  # a lucky recovery
        "12 * 3 = 38\n38 + 4 = 42\n": ["#### 42"],
    }
    completer = scripted_completer(table)
    hard = shepherd_step_labels([good, bad], completer, k=4)
    assert hard == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert completer.calls == [4]  # every step prefix of every solution in one batched call
    soft = shepherd_step_labels([good, bad], scripted_completer(table), k=4, soft=True)
    assert soft == [[0.5, 1.0, 1.0], [0.25, 0.0, 0.0]]


def test_shepherd_labels_check_the_completer():
    sol = Solution(P, ["12 * 3 = 36", "#### 36"], False)
    with pytest.raises(ValueError, match="2 completions"):
        shepherd_step_labels([sol], lambda problems, prefixes, k: [["x"]], k=2)


def test_prm_examples_use_the_learned_prm_text_format():
    from lm_envs.tasks.math.prm import step_text

    cfg = RewardModelConfig(kind="prm")
    texts, labels = math_examples(cfg, [Solution(P, ["12 * 3 = 36", "36 + 4 = 41", "#### 41"], False)])
    assert texts[1] == step_text(P, ["12 * 3 = 36"], "36 + 4 = 41") == P.prompt + "12 * 3 = 36\n36 + 4 = 41\n"
    assert labels == [1.0, 0.0, 0.0]
    texts, labels = math_examples(RewardModelConfig(kind="orm"), [Solution(P, ["#### 40"], True)])
    assert texts == [P.prompt + "#### 40"] and labels == [1.0]


def test_perturbed_solutions_hold_right_and_wrong_ones():
    sols = perturbed_solutions(word_problems("easy"), "train", 20, 4, seed=0)
    assert len(sols) == 80 and 0.2 < np.mean([s.correct for s in sols]) < 0.9
    assert all(s.correct for s in sols[::4])  # copy 0 is the gold solution
    labels = [rule_step_labels(s.problem, s.steps) for s in sols]
    assert any(0.0 in y for y, s in zip(labels, sols) if s.correct)  # right answer after a wrong step


def test_first_problem_labels_problems_past_an_sft_start_s_demonstrations(tmp_path):
    task = word_problems("easy")
    sols = perturbed_solutions(task, "train", 3, 2, seed=0, first=5)
    assert [s.problem.id for s in sols[::2]] == [task.problem("train", i).id for i in (5, 6, 7)]
    cfg = RewardModelConfig(
        kind="orm", output_dir=str(tmp_path), num_problems=2, samples_per_problem=2, heldout_problems=2,
        first_problem=3, steps=1, batch_size=2, **TINY,
    )  # fmt: skip
    import gymnasium as gym

    import agents.reward_models.train as train
    from agents.policy.models import build_default_model
    from lm_envs.core.tokenizer import load_codec

    policy = build_default_model(load_codec(None), n_layer=1, n_embd=16, n_head=2)
    solutions = train.policy_solutions(cfg, "train", 2, policy, first=3)
    math_task = gym.make(cfg.env_id).unwrapped.task
    assert [s.problem.id for s in solutions[::2]] == [math_task.problem("train", i).id for i in (3, 4)]
    with pytest.raises(ValueError, match="first_problem must be >= 0"):
        check_config(RewardModelConfig(kind="orm", first_problem=-1))


def test_contrastive_step_pairs_differ_in_the_claimed_result_only():
    from lm_envs.tasks.math.steps import check_step

    sols = perturbed_solutions(word_problems("easy"), "train", 10, 3, seed=0)
    pairs = contrastive_step_pairs(sols, negatives=2, seed=0)
    claims = sum(check_step(st).verdict != "unverifiable" for s in sols for st in s.steps)
    assert claims > 10 and len(pairs) >= 2 * claims - 2  # two wrong results per claim (pool rarely smaller)
    for right, wrong in pairs:
        head, _, tail = right.rpartition("= ")
        assert wrong.startswith(head + "= ") and wrong != right  # same prefix and step, another result
        assert check_step(right.rstrip("\n").split("\n")[-1]).verdict == "correct"
        assert check_step(wrong.rstrip("\n").split("\n")[-1]).verdict == "wrong"
    # the prefix is kept as given, wrong steps included; the policy's own wrong result is one of the negatives
    p = Problem("p", "Q?\n", "72")
    own = contrastive_step_pairs([Solution(p, ["4 * 3 = 13", "13 * 6 = 78", "#### 78"], False)], 2, seed=1)
    assert [r for r, _ in own] == ["Q?\n4 * 3 = 12\n"] * 2 + ["Q?\n4 * 3 = 13\n13 * 6 = 78\n"] * 2
    assert own[0][1] == "Q?\n4 * 3 = 13\n" and own[2][1] != own[3][1]
    assert contrastive_step_pairs(perturbed_solutions(word_problems("easy"), "train", 10, 3, 0), 2, 0) == pairs


def test_wrong_results_are_near_misses():
    import random

    for value, lhs in ((72, "12 * 6"), (7, "3 + 4"), (0, "5 - 5"), (-3, "2 - 5")):
        got = wrong_results(lhs, value, random.Random(0), 6)
        assert len(got) == len(set(got)) == 6 and value not in got
        assert all(abs(w - value) <= max(10, 9 * abs(value)) for w in got)
        assert value < 0 or min(got) >= 0
    assert 27 in wrong_results("12 * 6", 72, random.Random(0), 100)  # two digits swapped
    assert {60, 72, 55, 77} <= set(wrong_results("11 * 6", 66, random.Random(0), 100))  # neighbouring facts


@pytest.mark.parametrize("kind", ["orm", "prm"])
def test_math_rms_train_and_load_where_they_are_used(tmp_path, kind):
    cfg = RewardModelConfig(
        kind=kind, output_dir=str(tmp_path), num_problems=8, heldout_problems=4, steps=2, batch_size=4, **TINY
    )
    result = train_reward_model(cfg)
    held = result["heldout"]
    assert 0.0 <= held["accuracy"] <= 1.0 and result["data"]["train_texts"] > 0
    # the metrics that matter for selection, and the majority-class rate the accuracy must beat
    assert held["majority_class_rate"] >= 0.5 and 0.0 <= held["balanced_accuracy"] <= 1.0
    assert held["problems_with_both"] > 0 and 0.0 <= held["within_problem_auc"] <= 1.0
    assert held["random_pick_accuracy"] <= held["oracle_accuracy"] and 0 <= held["selection_accuracy"] <= 1
    if kind == "prm":
        assert {"within_problem_auc_last", "within_problem_auc_product"} <= set(held)
    if kind == "orm":
        from agents.search.best_of_n import ClassifierScorer

        scores = ClassifierScorer(str(tmp_path))([P.prompt], ["#### 40"])
        assert len(scores) == 1 and math.isfinite(scores[0])
    else:
        from lm_envs.tasks.math.rewards import MathReward

        reward = MathReward(process="learned", prm_path=str(tmp_path), prm_aggregate="min")
        out = reward.outcome(P, "12 * 3 = 36\n36 + 4 = 40\n#### 40")
        assert 0.0 <= out.record["prm_score"] <= 1.0 and out.record["correct"]


# ----------------------------------------------------------------------------------------------- bad input


def test_identical_or_empty_training_pairs_fail_naming_the_fix(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "Q:", "chosen": " a", "rejected": " b"}) + "\n")
    data.write_text(data.read_text() + json.dumps({"prompt": "Q:", "chosen": " same", "rejected": " same"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: chosen and rejected are identical.*drop it"):
        train_reward_model(RewardModelConfig(output_dir=str(tmp_path / "rm"), data=str(data), **TINY))


def test_multi_output_models_and_mismatched_tokenizers_are_refused(tmp_path):
    from transformers import AutoModelForSequenceClassification

    cfg = RewardModelConfig(output_dir=str(tmp_path / "src"), **TINY)
    model, tokenizer = build_reward_model(cfg)
    config = model.config.to_dict()
    two = AutoModelForSequenceClassification.from_config(model.config.__class__(**{**config, "num_labels": 2}))
    two.save_pretrained(tmp_path / "two")
    tokenizer.save_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="2 outputs.*exactly one"):
        build_reward_model(RewardModelConfig(output_dir=str(tmp_path / "x"), model=str(tmp_path / "two")))
    from lm_envs.tasks.chat.reward import RewardModelScorer

    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelScorer(str(tmp_path / "two"))
    small = model.config.__class__(**{**model.config.to_dict(), "vocab_size": 100})
    AutoModelForSequenceClassification.from_config(small).save_pretrained(tmp_path / "small")
    tokenizer.save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="do not belong together"):
        RewardModelScorer(str(tmp_path / "small"))


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="choose one of"):
        check_config(RewardModelConfig(kind="dpo"))
    with pytest.raises(ValueError, match="policy=<dir"):
        check_config(RewardModelConfig(kind="prm", labels="shepherd"))
    with pytest.raises(ValueError, match="heldout_samples"):
        check_config(RewardModelConfig(kind="orm", heldout_samples=0))
    with pytest.raises(ValueError, match="empty"):
        from lm_envs.tasks.chat.preferences import check_pair

        check_pair(PreferencePair("Q:", " ", " b"))


def test_a_run_directory_as_policy_asks_for_an_export(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ValueError, match=r"run directory; export its trained model first \(lm-envs export"):
        check_config(RewardModelConfig(kind="orm", policy=str(tmp_path)))


def test_within_problem_metrics_ignore_which_problems_are_easy():
    from agents.reward_models.train import within_problem

    # scores that only know problem "a" is easy: perfect pooled, chance within each problem
    scores = [0.9, 0.9, 0.1, 0.1]
    correct = [True, False, True, False]
    m = within_problem(scores, correct, ["a", "a", "b", "b"])
    assert m["within_problem_auc"] == 0.5 and m["selection_accuracy"] == 1.0  # ties go to the first
    m = within_problem([0.2, 0.8, 0.1, 0.3], correct, ["a", "a", "b", "b"])
    assert m["within_problem_auc"] == 0.0 and m["selection_accuracy"] == 0.0 and m["oracle_accuracy"] == 1.0


def test_pairwise_orm_compares_solutions_of_one_problem_only(tmp_path, monkeypatch):
    import agents.reward_models.train as train

    cfg = RewardModelConfig(
        kind="orm", objective="pairwise", output_dir=str(tmp_path), num_problems=12, heldout_problems=3, steps=3,
        batch_size=4, **TINY,
    )  # fmt: skip
    sols = train.perturbed_solutions(word_problems("easy"), "train", 12, 4, 0)
    problem_of = {s.problem.prompt + "\n".join(s.steps): (s.problem.id, s.correct) for s in sols}
    batches = []
    real = train.score_texts

    def spy(model, tokenizer, texts, max_length):
        batches.append(list(texts))
        return real(model, tokenizer, texts, max_length)

    monkeypatch.setattr(train, "score_texts", spy)
    result = train_reward_model(cfg)
    assert result["data"]["pairwise_problems"] > 0
    for texts in batches[:3]:  # the training steps: [right, wrong] of one problem, pair after pair
        assert len(texts) == 4
        for right, wrong in zip(texts[::2], texts[1::2]):
            (p1, ok1), (p2, ok2) = problem_of[right], problem_of[wrong]
            assert p1 == p2 and ok1 and not ok2
    with pytest.raises(ValueError, match="use it with rm=orm"):
        check_config(RewardModelConfig(kind="prm", objective="pairwise"))


def test_balanced_draws_see_each_class_half_the_time():
    from agents.reward_models.train import balanced_draws

    labels = [1.0] * 9 + [0.0] + [0.7] * 5  # soft labels count by their side of 0.5
    p = balanced_draws(labels)
    positive = np.asarray(labels) > 0.5
    assert p.sum() == pytest.approx(1.0) and p[positive].sum() == pytest.approx(0.5) and p[9] == pytest.approx(0.5)
    assert balanced_draws([1.0, 1.0]) is None


# ----------------------------------------------------------------------------------------------- Hydra


def compose_rm(*overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="reward_model", overrides=["output_dir=/tmp/unused", *overrides])


@pytest.mark.parametrize("option", RM_OPTIONS)
def test_every_rm_option_composes_and_validates(option):
    cfg = to_config(compose_rm(f"rm={option}"))
    assert isinstance(cfg, RewardModelConfig) and cfg.kind == option
    fixes = {"prm": {"labels": "rule"}, "contrastive": {"policy": "runs/x/policy"}}  # what the option's user sets
    check_config(RewardModelConfig(**{**cfg.__dict__, **fixes.get(option, {})}))


def test_rm_options_cover_every_kind():
    assert RM_OPTIONS == ["contrastive", "orm", "preference", "prm"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({}, "set policy=<dir of a causal LM>"),
        ({"policy": "p", "negatives": 0}, "negatives must be >= 1"),
        ({"policy": "p", "model": "other"}, "starts from the policy itself"),
        ({"policy": "p", "objective": "pairwise"}, "has its own objective"),
    ],
)
def test_contrastive_config_errors_name_the_fix(overrides, match):
    with pytest.raises(ValueError, match=match):
        check_config(RewardModelConfig(kind="contrastive", **overrides))


def test_train_rm_contrastive_from_the_cli_saves_a_verifier_and_reports_it_beside_the_likelihood(tmp_path):
    # lm-envs train-rm rm=contrastive policy=DIR: the policy fine-tuned on contrastive claim steps, saved as a
    # causal LM with the policy's tokenizer; held-out metrics beside the policy's own likelihood
    from agents.cli import main
    from agents.policy.models import build_default_model, load_model
    from agents.reward_models.contrastive import LikelihoodStepScorer
    from lm_envs.core.tokenizer import load_codec, save_codec

    codec = load_codec(None)
    policy = build_default_model(codec, n_layer=1, n_embd=32, n_head=2)
    policy.save_pretrained(tmp_path / "policy")
    save_codec(codec, tmp_path / "policy")
    out = tmp_path / "verifier"
    rc = main(
        [
            "train-rm",
            "rm=contrastive",
            f"policy={tmp_path / 'policy'}",
            f"hydra.run.dir={out}",
            "num_problems=3",
            "samples_per_problem=2",
            "heldout_problems=3",
            "steps=3",
            "batch_size=4",
            "lr=1e-3",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "contrastive" and metrics["data"]["train_pairs"] > 0
    assert metrics["data"]["pair_source"] == "gold"  # a random policy writes no checkable claim
    held = metrics["heldout"]
    for key in ("accuracy", "within_problem_auc", "selection_accuracy", "policy_within_problem_auc"):
        assert key in held
    assert metrics["history"][-1]["step"] == 3
    lm = load_model(str(out), load_codec(str(out)))
    before = dict(policy.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in lm.named_parameters())  # it was fine-tuned
    assert LikelihoodStepScorer(lm, load_codec(str(out))).shares_tokenizer(codec)


@pytest.mark.parametrize("override", ["lrr=0.1", "steps=many", "rm=dpo"])
def test_bad_rm_overrides_fail_naming_the_key(override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)) as err:
        to_config(compose_rm(override))
    assert override.split("=")[0 if override != "rm=dpo" else 1] in str(err.value) + str(err.value.__cause__)


def test_train_rm_cli_runs_hydra_end_to_end(tmp_path):
    from agents.cli import main

    rc = main(
        [
            "train-rm",
            f"hydra.run.dir={tmp_path}",
            "num_pairs=32",
            "steps=2",
            "batch_size=4",
            "n_layer=1",
            "n_embd=32",
            "eval_every=0",
        ]
    )
    assert rc == 0 and (tmp_path / "config.json").is_file() and (tmp_path / "metrics.jsonl").is_file()


def test_shepherd_prm_from_a_policy_samples_labels_and_trains(tmp_path):
    from agents.policy.models import build_default_model
    from agents.reward_models.train import policy_completer
    from lm_envs.core.tokenizer import load_codec, save_codec

    codec = load_codec(None)
    policy = build_default_model(codec, n_layer=1, n_embd=32, n_head=2)
    policy.save_pretrained(tmp_path / "policy")
    save_codec(codec, tmp_path / "policy")
    complete = policy_completer(policy, "LMEnv/Math-v0", batch_size=4)
    out = complete([P, P, P], ["12 * 3 = 36\n", "", "12 * 3 = 36\n36 + 4 = 40\n"], 2)
    assert [len(c) for c in out] == [2, 2, 2] and all(isinstance(t, str) for c in out for t in c)
    cfg = RewardModelConfig(
        kind="prm",
        labels="shepherd",
        soft_labels=True,
        shepherd_rollouts=2,
        policy=str(tmp_path / "policy"),
        output_dir=str(tmp_path / "prm"),
        num_problems=2,
        samples_per_problem=2,
        heldout_problems=2,
        steps=1,
        batch_size=2,
        **TINY,
    )
    result = train_reward_model(cfg)
    assert result["data"]["train_solutions"] == 4 and (tmp_path / "prm" / "config.json").is_file()


# ----------------------------------------------------------------------------------------------- weak-to-strong


def test_confidence_loss_mixes_weak_labels_with_hardened_predictions():
    from agents.reward_models.train import conf_alpha, confidence_loss

    logits, weak = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([0.9, 0.8, 0.1, 0.2])
    assert confidence_loss(logits, weak, 0.0).item() == pytest.approx(classifier_loss(logits, weak).item())
    # alpha = 1 with threshold 0: targets are [1, 0, 1, 0] (the logits' signs)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    by_hand = -np.mean(
        [math.log(sigmoid(x)) if t else math.log(1 - sigmoid(x)) for x, t in zip(logits.tolist(), target)]
    )
    assert confidence_loss(logits, weak, 1.0, threshold=0.0).item() == pytest.approx(by_hand, rel=1e-5)
    # the adaptive threshold hardens the top half (weak labels' mean is 0.5): [1, 0, 1, 0] again
    assert confidence_loss(logits, weak, 1.0).item() == pytest.approx(by_hand, rel=1e-5)
    assert conf_alpha(0, 100, 0.5) == 0.0 and conf_alpha(10, 100, 0.5) == 0.25 and conf_alpha(50, 100, 0.5) == 0.5


def test_pgr_matches_hand_computed_values():
    from agents.reward_models.train import performance_gap_recovered as pgr

    assert pgr(0.6, 0.8, 0.8) == pytest.approx(1.0)
    assert pgr(0.6, 0.6, 0.8) == pytest.approx(0.0)
    assert pgr(0.58, 0.70, 0.80) == pytest.approx(0.12 / 0.22)
    assert math.isnan(pgr(0.8, 0.7, 0.8))  # no gap to recover


def test_weak_labels_replace_the_gold_order_and_held_out_stays_gold(tmp_path):
    from agents.reward_models.train import preference_data

    weak = tmp_path / "weak"
    train_reward_model(RewardModelConfig(output_dir=str(weak), num_pairs=32, steps=2, batch_size=4, **TINY))
    cfg = RewardModelConfig(
        output_dir=str(tmp_path / "student"), num_pairs=32, pair_offset=32, steps=2, batch_size=4, **TINY
    )
    cfg.label_model, cfg.conf_coef = str(weak), 0.5
    result = train_reward_model(cfg)
    assert 0.0 <= result["data"]["label_agreement"] <= 1.0 and result["data"]["train_pairs"] == 32
    # held-out accuracy is on the gold-ordered test pairs, whatever the training labels
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lm_envs.tasks.chat.reward import prepare_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(tmp_path / "student"), model)
    gold_pairs = synthetic_preferences(len(preference_data(cfg)[1]), split="test")
    assert result["heldout"]["accuracy"] == pytest.approx(evaluate_pairs(model, tok, gold_pairs, 192)["accuracy"])
    # pair_offset: the training pairs are the synthetic set from instruction 32 on
    train, held = preference_data(cfg)
    assert [p.prompt for p in train] == [p.prompt for p in synthetic_preferences(64)[32:]]
    assert all(p.metadata["gold_chosen"] > p.metadata["gold_rejected"] for p in held)
    with pytest.raises(ValueError, match="label model"):
        train_reward_model(
            RewardModelConfig(output_dir=str(tmp_path / "x"), label_model=str(tmp_path / "none"), **TINY)
        )
    with pytest.raises(ValueError, match="conf_coef"):
        check_config(RewardModelConfig(conf_coef=2.0))
    with pytest.raises(ValueError, match="label_model"):
        check_config(RewardModelConfig(kind="prm", label_model=str(weak)))


# ------------------------------------------------------------------------ pretrained students (chat template, probe)

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chat_backbone(path: Path) -> str:
    """A tiny GPT-2 causal LM saved with the embedded tokenizer and a ChatML template: a stand-in pretrained model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import lm_envs
    from lm_envs.core.tokenizer import save_codec

    codec = lm_envs.load_codec()
    save_codec(codec, path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHATML}))
    torch.manual_seed(0)
    gpt = GPT2Config(vocab_size=codec.vocab_size, n_layer=1, n_embd=32, n_head=2, n_positions=192)
    GPT2LMHeadModel(gpt).save_pretrained(path)
    return str(path)


def test_a_chat_template_student_trains_its_head_on_rendered_pairs_labelled_by_a_plain_weak_model(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from agents.reward_models.train import head_features, label_pairs, load_label_model, preference_data, score_texts
    from lm_envs.tasks.chat.reward import prepare_tokenizer

    backbone = chat_backbone(tmp_path / "backbone")
    weak = tmp_path / "weak"
    train_reward_model(RewardModelConfig(output_dir=str(weak), num_pairs=32, steps=2, batch_size=4, **TINY))
    settings = dict(num_pairs=32, pair_offset=32, steps=3, batch_size=4, lr=1e-2, label_model=str(weak), **TINY)
    cfg = RewardModelConfig(output_dir=str(tmp_path / "student"), model=backbone, freeze_backbone=True, **settings)
    result = train_reward_model(cfg)
    plain = train_reward_model(RewardModelConfig(output_dir=str(tmp_path / "plain"), **settings))
    assert result["data"]["chat_template"] and not plain["data"]["chat_template"]
    # the weak model labelled the pairs as it was trained (plain prompts): the same labels for both students
    assert result["data"]["label_agreement"] == plain["data"]["label_agreement"]
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(tmp_path / "student"), student)
    assert student.config.lm_envs_chat_template is True
    train, held = preference_data(cfg, backbone)
    assert train[0].prompt.startswith("<|im_start|>user\n") and train[0].prompt.endswith("<|im_start|>assistant\n")
    assert [p.chosen for p in train] == [p.chosen for p in preference_data(cfg)[0]]  # only the prompts differ
    assert [p.prompt for p in label_pairs(cfg, train, *load_label_model(cfg))] == [
        p.prompt for p in preference_data(cfg)[0]
    ]
    # held-out accuracy is the saved model's own, on the rendered test pairs
    assert result["heldout"]["accuracy"] == pytest.approx(evaluate_pairs(student, tok, held, 192)["accuracy"])
    # freeze_backbone: every weight but the head is the backbone's, the head trained
    before, after = load_file(str(Path(backbone) / "model.safetensors")), student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k in after and "lm_head" not in k)
    assert sum(k in after for k in before) >= len(after) - 1  # all but the new head came from the backbone
    initial, _ = build_reward_model(cfg)  # the head as seeded before training
    assert not torch.equal(initial.score.weight, student.score.weight)
    texts = [t for p in held[:4] for t in p.texts()]
    assert torch.allclose(
        student.score(head_features(student, tok, texts, 192))[:, 0], score_texts(student, tok, texts, 192)
    )
    # chat_template=false keeps plain prompts with the same backbone
    cfg_plain = RewardModelConfig(output_dir=str(tmp_path / "p2"), model=backbone, chat_template=False, **settings)
    assert not train_reward_model(cfg_plain)["data"]["chat_template"]


def test_lora_adapters_train_and_the_saved_model_is_the_merged_adapted_one(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lm_envs.tasks.chat.reward import prepare_tokenizer

    backbone = chat_backbone(tmp_path / "backbone")
    cfg = RewardModelConfig(
        output_dir=str(tmp_path / "rm"), model=backbone, lora_r=4, num_pairs=32, steps=3, batch_size=4, lr=1e-2, **TINY
    )
    result = train_reward_model(cfg)
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(tmp_path / "rm"), saved)
    assert not any("lora_" in k for k in saved.state_dict())  # merged: a plain transformers classifier
    from agents.reward_models.train import preference_data

    held = preference_data(cfg, backbone)[1]
    assert result["heldout"]["accuracy"] == pytest.approx(evaluate_pairs(saved, tok, held, 192)["accuracy"])
    assert result["heldout"]["reward_mean"] == pytest.approx(evaluate_pairs(saved, tok, held, 192)["reward_mean"])
    before = load_file(str(Path(backbone) / "model.safetensors"))
    changed = [k for k in before if k in saved.state_dict() and not torch.equal(before[k], saved.state_dict()[k])]
    assert changed and all(k.endswith("weight") for k in changed)  # adapted linear weights moved, nothing else
    assert not any("ln_" in k or "wpe" in k or "wte" in k for k in changed)
    with pytest.raises(ValueError, match="freeze_backbone"):
        check_config(RewardModelConfig(lora_r=4, freeze_backbone=True))
    with pytest.raises(ValueError, match="lora_r"):
        check_config(RewardModelConfig(lora_r=-1))


def test_train_rm_cli_takes_the_backbone_as_model_equals(tmp_path):
    """``model=`` names the reward model's backbone although conf/model/ is the policy's config group."""
    from agents.cli import main
    from agents.policy.models import build_default_model
    from agents.train_rm import split_backbone
    from lm_envs.core.tokenizer import load_codec, save_codec

    assert split_backbone(["+model='x'", "steps=1"]) == (["steps=1"], "x")
    codec = load_codec(None)
    backbone = build_default_model(codec, n_layer=1, n_embd=32, n_head=2)
    backbone.save_pretrained(tmp_path / "backbone")
    save_codec(codec, tmp_path / "backbone")
    run_dir = tmp_path / "rm"
    argv = ["train-rm", f"hydra.run.dir={run_dir}", f"model={tmp_path / 'backbone'}", "num_pairs=32", "steps=2"]
    assert main([*argv, "batch_size=4", "eval_every=0"]) == 0
    saved = json.loads((run_dir / "config.json").read_text())  # the backbone's size, not the tiny RM default's
    assert (saved["n_layer"], saved["n_embd"]) == (1, 32) != (RewardModelConfig().n_layer, RewardModelConfig().n_embd)
    assert main(["train-rm", "-m", "model=a,b"]) == 2  # a sweep over backbones is refused, naming the fix
