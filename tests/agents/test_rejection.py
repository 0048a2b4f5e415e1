"""Rejection sampling: best-of-N selectors and curves, the RFT data filter, and RFT learning end to end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
from agents import rejection
from agents.models import build_default_model
from agents.rejection import (
    BestOfNConfig,
    ClassifierScorer,
    PRMScorer,
    RFTConfig,
    Samples,
    answer_classes,
    best_of_n,
    best_of_n_curve,
    build_examples,
    default_ns,
    score_samples,
    select,
    selection_accuracy,
    train_rft,
)
from agents.rollout import collect, policy_logprobs
from agents.sft import SFTConfig, encode_demo, train_sft

torch.set_num_threads(1)

ENV = "LMEnv/TargetWord-v0"
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2}


def samples(completions, returns=None, success=None, scores=None):
    P, N = len(completions), len(completions[0])
    return Samples(
        prompts=[f"q{p}" for p in range(P)],
        completions=completions,
        returns=np.zeros((P, N)) if returns is None else returns,
        success=np.zeros((P, N), bool) if success is None else success,
        scores=scores,
    )


def codec():
    return gym.make(ENV).unwrapped.codec


# ---------------------------------------------------------------- selectors on hand-built samples


def test_majority_vote_groups_equivalent_spellings():
    # "3" appears twice verbatim, but 0.5, 1/2 and \frac{1}{2} are one answer with three votes.
    s = samples([["#### 3", "#### 0.5", "#### 1/2", "#### 3", "#### \\frac{1}{2}", "no answer here"]])
    assert answer_classes(s.completions[0]) == [0, 1, 1, 0, 1, -1]
    assert select(s, "majority").tolist() == [1]  # the first member of the winning class
    assert select(s, "majority", n=4).tolist() == [0]  # first 4: a 2-2 tie, the class seen first wins


def test_majority_vote_ties_go_to_the_first_occurrence_and_no_answer_falls_back_to_column_0():
    s = samples([["nothing", "#### 8", "#### 7", "#### 7", "#### 8"], ["a", "b", "c", "d", "e"]])
    assert select(s, "majority").tolist() == [1, 0]


def test_weighted_majority_sums_verifier_probabilities_per_answer():
    # "8" has two weak votes (0.2 + 0.2), "7" one confident vote (0.9): the weighted vote picks 7,
    # the plain vote 8; an unanswered sample's weight never counts, whatever it is.
    s = samples([["#### 8", "#### 7", "#### 8", "none"]], scores=np.array([[0.2, 0.9, 0.2, np.inf]]))
    assert select(s, "majority").tolist() == [0]
    assert select(s, "weighted_majority").tolist() == [1]
    assert select(s, "weighted_majority", n=1).tolist() == [0]
    s.scores = np.array([[0.5, 0.5, 0.5, 0.1]])  # 8: 1.0 vs 7: 0.5
    assert select(s, "weighted_majority").tolist() == [0]
    curve = best_of_n_curve(s, ("majority", "weighted_majority"), ns=[1, 4])
    assert curve["weighted_majority"] == curve["majority"] == [0.0, 0.0]


@pytest.mark.parametrize("scores", [None, np.array([[-1.0, 2.0]])])
def test_weighted_majority_needs_probabilities_and_says_so(scores):
    s = samples([["#### 1", "#### 2"]], scores=scores)
    with pytest.raises(ValueError, match="probabilities"):
        select(s, "weighted_majority")
    if scores is None:  # the curve refuses before any work, naming the selector
        with pytest.raises(ValueError, match="'weighted_majority' needs learned scores"):
            best_of_n_curve(s, ("majority", "weighted_majority"))


def test_likelihood_picks_the_most_confident_sample_and_needs_logprobs():
    s = samples([["#### 1", "#### 2", "none", "#### 2"], ["x", "y", "z", "w"]])
    with pytest.raises(ValueError, match="'likelihood' needs samples.logprobs"):
        select(s, "likelihood")
    with pytest.raises(ValueError, match="'likelihood' needs samples.logprobs"):
        best_of_n_curve(s, ("majority", "likelihood"))
    s.logprobs = np.array([[-0.9, -0.3, -0.01, -0.5], [-2.0, -1.0, -3.0, -0.5]])
    assert select(s, "likelihood").tolist() == [2, 3]  # whether or not it answers (as reward_model)
    assert select(s, "likelihood", n=2).tolist() == [1, 1]
    assert s.permuted(np.array([[3, 2, 1, 0], [0, 1, 2, 3]])).logprobs[0].tolist() == [-0.5, -0.01, -0.3, -0.9]
    both = Samples.concat([s, s])
    assert both.logprobs.shape == (4, 4) and select(both, "likelihood").tolist() == [2, 3, 2, 3]
    with pytest.raises(ValueError, match="logprobs must be"):
        Samples(["q"], [["a"]], returns=[[0.0]], success=[[False]], logprobs=[[0.0, 1.0]])


def test_env_reward_oracle_and_reward_model_selectors():
    s = samples(
        [["a", "b", "c"], ["d", "e", "f"]],
        returns=[[0.2, 0.9, 0.9], [0.0, 0.0, 0.0]],
        success=[[False, False, True], [False, False, False]],
    )
    assert select(s, "env_reward").tolist() == [1, 0]  # highest return, first on ties
    assert select(s, "oracle").tolist() == [2, 0]
    assert selection_accuracy(s, "oracle") == 0.5 and selection_accuracy(s, "env_reward") == 0.0
    assert selection_accuracy(s, "oracle", n=2) == 0.0

    seen = {}

    def scorer(prompts, completions):  # any callable (prompts, completions) -> scores
        seen["pairs"] = list(zip(prompts, completions))
        return [float(c in ("c", "e")) for c in completions]

    score_samples(s, scorer)
    assert seen["pairs"][:4] == [("q0", "a"), ("q0", "b"), ("q0", "c"), ("q1", "d")]
    assert select(s, "reward_model").tolist() == [2, 1]
    assert selection_accuracy(s, "reward_model") == 0.5


def test_bad_inputs_are_refused_clearly():
    s = samples([["a", "b"]])
    with pytest.raises(ValueError, match="unknown selector"):
        select(s, "best")
    with pytest.raises(ValueError, match="1 <= n <= N=2"):
        select(s, "oracle", n=3)
    with pytest.raises(ValueError, match="1 <= n"):
        select(s, "oracle", n=0)
    with pytest.raises(ValueError, match="needs learned scores"):
        select(s, "reward_model")
    with pytest.raises(ValueError, match="needs learned scores"):
        best_of_n_curve(s, ["reward_model"])
    with pytest.raises(ValueError, match="unknown selector"):
        best_of_n_curve(s, ["vote"])
    with pytest.raises(ValueError, match="scores for"):
        score_samples(s, lambda p, c: [1.0])
    with pytest.raises(ValueError, match="N >= 1"):
        default_ns(0)
    with pytest.raises(ValueError, match=r"\(problems, samples\)"):
        Samples(["q"], [["a"]], returns=[[0.0, 1.0]], success=[[False, True]])
    model = build_default_model(codec(), **TINY)
    with pytest.raises(ValueError, match="N >= 1"):
        best_of_n(model, ENV, BestOfNConfig(n=0))
    with pytest.raises(ValueError, match="needs a scorer"):
        best_of_n(model, ENV, BestOfNConfig(n=2, selectors=("reward_model",)))
    with pytest.raises(ValueError, match="temperature 0"):
        best_of_n(model, ENV, BestOfNConfig(n=2, temperature=0.0))
    for bad, match in [
        ({"keep": "top"}, "rft.keep"),
        ({"group_size": 0}, "group_size"),
        ({"prompts_per_round": 0}, "prompts_per_round"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": 0.0}, "identical greedy"),
        ({"lr": 0.0}, "lr"),
    ]:
        with pytest.raises(ValueError, match=match):
            train_rft(model, ENV, RFTConfig(**bad), rounds=1)
    with pytest.raises(ValueError, match="non-negative"):
        train_rft(model, ENV, RFTConfig(), rounds=-1)


def test_best_of_n_curve_is_a_table_and_the_oracle_never_decreases():
    rng = np.random.default_rng(0)
    P, N = 40, 16
    success = rng.random((P, N)) < 0.15
    s = samples([[f"#### {int(x)}" for x in row] for row in success], returns=success * 1.0, success=success)
    for trials in (1, 5):
        curve = best_of_n_curve(s, ["oracle", "env_reward", "majority"], trials=trials)
        assert curve["n"] == [1, 2, 4, 8, 16]
        assert {len(v) for v in curve.values()} == {5}
        oracle = curve["oracle"]
        assert all(a <= b for a, b in zip(oracle, oracle[1:])) and oracle[-1] > oracle[0]
        assert all(curve["majority"][i] <= oracle[i] for i in range(5))
    first = best_of_n_curve(s, ["oracle"])
    assert first["oracle"] == [float(success[:, :n].any(1).mean()) for n in first["n"]]
    assert first["pass@n"][-1] == first["oracle"][-1]  # with all N samples both are "any correct"
    assert "env_reward" not in first


# ---------------------------------------------------------------- best-of-N through the env


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> str:
    """A random GPT-2 sequence classifier with one output, saved with the env's tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from lm_envs.core.tokenizer import save_codec

    c = codec()
    path = tmp_path_factory.mktemp("rm")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=c.vocab_size, n_layer=1, n_embd=32, n_head=2, num_labels=1)
    cfg.pad_token_id = c.pad_token_id
    GPT2ForSequenceClassification(cfg).save_pretrained(path)
    save_codec(c, path)
    return str(path)


def test_best_of_n_through_the_env_with_a_reward_model_and_a_prm(tiny_classifier):
    model = build_default_model(codec(), **TINY)
    s = rejection.sample_groups(model, ENV, n=4, num_problems=8, batch_size=16)  # two rollouts of 4 problems
    assert s.returns.shape == (8, 4) and s.indices == list(range(8))
    assert s.prompts[3] == "Repeat the word: seven\nAnswer:"
    # each sample's mean token log-prob (the likelihood selector's score) is a fresh forward's
    venv = gym.make_vec(ENV, num_envs=8, autoreset_mode="Disabled")
    rollout = collect(model, venv, seed=1, options={"group_size": 4}, temperature=1.0)
    with torch.no_grad():
        fresh = policy_logprobs(model, rollout, torch.arange(8))[0]
    mask = rollout.mask.float()
    expect = ((fresh * mask).sum(1) / mask.sum(1)).view(2, 4).numpy()
    assert Samples.from_rollout(rollout).logprobs == pytest.approx(expect, abs=1e-5)
    rm = ClassifierScorer(tiny_classifier)
    batched = rm(["q", "a longer prompt"], [" x", " y z"])
    alone = rm(["a longer prompt"], [" y z"])
    assert batched[1] == pytest.approx(alone[0], abs=1e-5)  # padding does not change a score
    score_samples(s, rm)
    assert s.scores.shape == (8, 4)
    curve = best_of_n_curve(s, ["oracle", "env_reward", "majority", "reward_model", "likelihood"])
    assert curve["n"] == [1, 2, 4]
    assert set(curve) == {"n", "pass@n", "oracle", "env_reward", "majority", "reward_model", "likelihood"}

    prm = PRMScorer(tiny_classifier, how="min")
    texts = ["step one\nstep two", "only"]
    scores = prm(["Q:", "Q:"], texts)
    p = prm.prm.probabilities(["Q:step one\n", "Q:step one\nstep two\n", "Q:only\n"])
    assert scores == pytest.approx([min(p[0], p[1]), p[2]], abs=1e-6)
    assert PRMScorer(prm.prm, how="product")(["Q:"], texts[:1]) == pytest.approx([p[0] * p[1]], abs=1e-6)
    with pytest.raises(ValueError, match="PRM aggregate"):
        PRMScorer(prm.prm, how="mean")

    out = best_of_n(model, ENV, BestOfNConfig(n=2, num_problems=4, selectors=("oracle", "reward_model")), scorer=rm)
    assert out["n"] == [1, 2] and len(out["reward_model"]) == 2
    default = best_of_n(model, ENV, BestOfNConfig(n=2, num_problems=4))  # no scorer needed: all free selectors
    assert {"oracle", "env_reward", "majority", "likelihood"} <= set(default)


def test_classifier_scorer_refuses_a_two_output_model(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    GPT2ForSequenceClassification(
        GPT2Config(vocab_size=50, n_layer=1, n_embd=16, n_head=2, num_labels=2)
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="2 outputs"):
        ClassifierScorer(str(tmp_path))
    with pytest.raises(ValueError, match="cannot load"):
        ClassifierScorer(str(tmp_path / "missing"))


# ---------------------------------------------------------------- RFT data: exactly the env's tokens


@pytest.fixture(scope="module")
def half_trained():
    """A tiny model with a short SFT warm start: it repeats the word sometimes, not always."""
    env = gym.make(ENV).unwrapped
    model = build_default_model(env.codec, seed=0, **TINY)
    train_sft(model, env.task, env.codec, SFTConfig(steps=100, batch_size=8, lr=3e-3, warmup_steps=2), seed=0)
    return model


def grouped_rollout(model, prompts, k):
    """``k`` samples of each of the first ``prompts`` train words, consecutive per prompt."""
    venv = gym.make_vec(ENV, num_envs=prompts * k, autoreset_mode="Disabled")
    options = {"index": [i // k for i in range(prompts * k)], "group_size": k}
    return venv, collect(model, venv, options=options, generator=torch.Generator().manual_seed(0))


def test_build_examples_keeps_only_correct_samples_made_of_the_env_tokens(half_trained):
    venv, rollout = grouped_rollout(half_trained, prompts=8, k=4)
    success = rollout.success().bool()
    assert 0 < success.sum() < 32, "the warm start should make some but not all samples correct"
    examples, stats = build_examples(rollout, keep="correct", dedupe=False)
    assert len(examples) == int(success.sum()) == stats["kept"]
    buf, plen, length = venv.episodes.tokens, venv.episodes.prompt_length, venv.episodes.length
    for (prompt, generated), i in zip(examples, success.nonzero()[:, 0].tolist()):
        # the env's own buffer holds exactly these tokens: prompt as encoded, then the actions it received
        assert prompt == buf[i, : plen[i]].tolist()
        assert generated == buf[i, plen[i] : length[i]].tolist()
        # ... and so do the rollout tensors
        assert prompt == rollout.prompt_ids[i][rollout.prompt_mask[i].bool()].tolist()
        assert generated == rollout.tokens[i][rollout.mask[i]].tolist()
        assert prompt == venv.codec.encode(rollout.reset_infos[i]["prompt"], add_special_tokens=True)

    deduped, dstats = build_examples(rollout, keep="correct", dedupe=True)
    assert len(deduped) == len(set(map(lambda e: (tuple(e[0]), tuple(e[1])), examples)))
    assert dstats["kept"] + dstats["duplicates"] == len(examples) and dstats["duplicates"] > 0

    best, bstats = build_examples(rollout, keep="best", dedupe=False)
    assert len(best) == 8 and bstats["groups_kept"] == 8  # RAFT: top-1 of each group of 4
    top = rollout.returns.view(8, 4).max(1).values
    assert bstats["kept_return_sum"] == pytest.approx(float(top.sum()))
    strict, _ = build_examples(rollout, keep="best", min_reward=1.0, dedupe=False)
    assert len(strict) == int((top >= 1.0).sum())
    with pytest.raises(ValueError, match="keep mode"):
        build_examples(rollout, keep="all")


# ---------------------------------------------------------------- RFT training


def test_rounds_that_keep_nothing_are_logged_and_change_nothing():
    model = build_default_model(codec(), seed=0, **TINY)
    before = [p.detach().clone() for p in model.parameters()]
    logs = []
    cfg = RFTConfig(group_size=2, prompts_per_round=4, keep="correct", sft_steps=3)
    train_rft(model, ENV, cfg, rounds=2, seed=0, log=lambda r, m: logs.append((r, m)))  # untrained: never exactly right
    assert [r for r, _ in logs] == [0, 1]
    assert all(m["rft/kept"] == 0 and m["rft/sft_steps"] == 0 for _, m in logs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_rest_em_fine_tunes_every_round_from_the_base_weights(monkeypatch):
    finetune, starts, base, optimizers = rejection.finetune, [], [], []

    def spy(model, examples, cfg, pad_id, rng, **kwargs):
        starts.append(all(torch.equal(a, b) for a, b in zip(base, model.parameters())))
        optimizers.append(kwargs["optimizer"])
        return finetune(model, examples, cfg, pad_id, rng, **kwargs)

    monkeypatch.setattr(rejection, "finetune", spy)
    for from_base, expected in [(False, [True, False]), (True, [True, True])]:
        model = build_default_model(codec(), seed=0, **TINY)
        base[:] = [p.detach().clone() for p in model.parameters()]
        starts.clear()
        cfg = RFTConfig(group_size=2, prompts_per_round=2, keep="best", sft_steps=2, lr=1e-2, from_base=from_base)
        train_rft(model, ENV, cfg, rounds=2, seed=0)
        assert starts == expected  # RFT/RAFT keep training the latest model; ReST-EM restarts from the base
        # ... each round with a fresh AdamW (None: finetune builds it); only expert iteration continues one
        assert optimizers[-2:] == [None, None]
        assert not all(torch.equal(a, b) for a, b in zip(base, model.parameters()))


def test_raft_learns_target_word_from_an_untrained_model():
    model = build_default_model(codec(), seed=0, **TINY)
    before = [p.detach().clone() for p in model.parameters()]
    logs = []
    # RAFT on a dense reward. An untrained model rarely types even the right first letter, so K=128 samples
    # per word find one almost every round; 8 prompts = every word once keeps the kept set balanced (with
    # few words over-represented the model collapses onto them); min_reward drops zero-credit "bests".
    cfg = RFTConfig(
        group_size=128,
        prompts_per_round=8,
        keep="best",
        min_reward=0.1,
        sft_steps=20,
        batch_size=8,
        lr=2e-3,
    )
    train_rft(model, ENV, cfg, rounds=8, seed=0, log=lambda r, m: logs.append(m))
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert len(logs) == 8 and all(0 <= m["rft/kept_fraction"] <= 1 for m in logs)
    assert logs[0]["rft/sample_return"] < 0.05  # untrained: random tokens
    venv = gym.make_vec(ENV, num_envs=64, autoreset_mode="Disabled", split="test")
    after = collect(
        model, venv, options={"index": [i % 8 for i in range(64)]}, generator=torch.Generator().manual_seed(1)
    )
    assert after.returns.mean() > logs[0]["rft/sample_return"] + 0.3, [m["rft/sample_return"] for m in logs]


def test_expert_iteration_pools_the_kept_samples_of_every_round_and_mixes_in_demonstrations(monkeypatch):
    finetune, seen = rejection.finetune, []

    def spy(model, examples, cfg, pad_id, rng, optimizer=None, demos=None):
        seen.append((list(examples), optimizer, demos(3) if demos else None))
        return finetune(model, examples, cfg, pad_id, rng, optimizer=optimizer, demos=demos)

    monkeypatch.setattr(rejection, "finetune", spy)
    model = build_default_model(codec(), seed=0, **TINY)
    logs = []
    cfg = RFTConfig(
        group_size=4, prompts_per_round=2, keep="best", sft_steps=2, batch_size=4, accumulate=True, demo_fraction=0.5
    )
    train_rft(model, ENV, cfg, rounds=3, seed=0, log=lambda r, m: logs.append(m), demo_problems=2)
    pools = [examples for examples, _, _ in seen]
    # each round trains on everything kept so far: the earlier rounds' samples first, then its new ones
    assert (
        [len(p) for p in pools] == [m["rft/pool"] for m in logs] == list(np.cumsum([m["rft/pool_new"] for m in logs]))
    )
    assert all(pools[i] == pools[i + 1][: len(pools[i])] for i in range(2))
    keys = [(tuple(p), tuple(t)) for p, t in pools[-1]]
    assert len(keys) == len(set(keys))  # deduplicated across rounds
    # one AdamW continues through the rounds
    assert seen[0][1] is not None and all(opt is seen[0][1] for _, opt, _ in seen)
    # demonstrations are gold solutions of the split's first demo_problems problems, as SFT encodes them
    env = gym.make(ENV).unwrapped
    gold = [encode_demo(env.codec, env.task.problem("train", i)) for i in range(2)]
    assert all(d in gold for _, _, demos in seen for d in demos)


@pytest.fixture
def batches(monkeypatch):
    """The examples of every batch ``rejection.finetune`` collates, in order."""
    rows = []
    real_collate = rejection.collate
    monkeypatch.setattr(rejection, "collate", lambda ex, pad: rows.append(list(ex)) or real_collate(ex, pad))
    return rows


def test_finetune_mixes_demonstrations_into_every_batch(batches):
    model = build_default_model(codec(), seed=0, **TINY)
    kept, demo = ([5, 6], [7, 8]), ([5, 6], [9, 10])
    cfg = RFTConfig(sft_steps=3, batch_size=8, demo_fraction=0.25)
    rejection.finetune(model, [kept] * 20, cfg, 0, np.random.default_rng(0), demos=lambda n: [demo] * n)
    assert [(b.count(kept), b.count(demo)) for b in batches] == [(6, 2)] * 3


def test_demo_fraction_one_is_the_demonstrations_only_control_and_below_one_keeps_a_sample_row(batches):
    model = build_default_model(codec(), seed=0, **TINY)
    kept, demo = ([5, 6], [7, 8]), ([5, 6], [9, 10])
    before = [p.detach().clone() for p in model.parameters()]
    losses = rejection.finetune(
        model,
        [],
        RFTConfig(sft_steps=2, batch_size=8, demo_fraction=1.0),
        0,
        np.random.default_rng(0),
        demos=lambda n: [demo] * n,
    )
    assert len(losses) == 2 and batches == [[demo] * 8] * 2  # trains with nothing kept: demonstrations only
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    batches.clear()
    cfg = RFTConfig(sft_steps=1, batch_size=8, demo_fraction=0.99)  # rounds to 8 demos: one row stays a sample
    rejection.finetune(model, [kept] * 4, cfg, 0, np.random.default_rng(0), demos=lambda n: [demo] * n)
    assert [(b.count(kept), b.count(demo)) for b in batches] == [(1, 7)]


def test_a_demonstrations_only_round_trains_though_it_keeps_nothing():
    model = build_default_model(codec(), seed=0, **TINY)
    cfg = RFTConfig(group_size=2, prompts_per_round=2, sft_steps=2, batch_size=4, demo_fraction=1.0, num_envs=4)
    metrics = rejection.rft_round(model, ENV, cfg, 0)
    assert metrics["rft/kept"] == 0 and metrics["rft/sft_steps"] == 2  # an untrained policy solves nothing


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_demo_fraction_out_of_range_names_the_fix(bad):
    with pytest.raises(ValueError, match=r"demo_fraction must be in \[0, 1\]"):
        train_rft(build_default_model(codec(), seed=0, **TINY), ENV, RFTConfig(demo_fraction=bad), rounds=1)


def test_accumulate_without_a_pool_names_the_fix():
    with pytest.raises(ValueError, match="pass the same list as pool="):
        rejection.rft_round(build_default_model(codec(), seed=0, **TINY), ENV, RFTConfig(accumulate=True), 0)


def test_max_group_success_keeps_only_prompts_the_policy_finds_hard(half_trained):
    _, rollout = grouped_rollout(half_trained, prompts=8, k=8)
    rate = rollout.success().view(8, 8).mean(1)
    everything, _ = build_examples(rollout, dedupe=False)
    hard, stats = build_examples(rollout, dedupe=False, max_group_success=0.5)
    expected = int(sum(8 * r for r in rate.tolist() if r <= 0.5))
    assert len(hard) == expected < len(everything), rate.tolist()
    assert stats["groups_kept"] == int(((rate > 0) & (rate <= 0.5)).sum())
    with pytest.raises(ValueError, match=r"max_group_success must be in \(0, 1\]"):
        train_rft(half_trained, ENV, RFTConfig(max_group_success=0.0), rounds=1)
