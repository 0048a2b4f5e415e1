"""Best-of-N at test time: selectors, curves, scorers, through the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
from agents.learners.rft import RFTConfig, train_rft
from agents.policy.models import build_default_model
from agents.policy.sampling import collect
from agents.policy.scoring import policy_logprobs
from agents.search import best_of_n as best_of_n_module
from agents.search.best_of_n import (
    BestOfNConfig,
    ClassifierScorer,
    PRMScorer,
    Samples,
    answer_classes,
    best_of_n,
    best_of_n_curve,
    default_ns,
    score_samples,
    select,
    selection_accuracy,
)

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
        ({"keep": "top"}, "agent.keep"),
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
    s = best_of_n_module.sample_groups(model, ENV, n=4, num_problems=8, batch_size=16)  # two rollouts of 4 problems
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


# ------------------------------------------------------------------ analytic best-of-n (over-optimization)


def test_best_of_n_kl_matches_the_formula_by_hand():
    from agents.search.best_of_n import best_of_n_kl

    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(4) == pytest.approx(np.log(4) - 3 / 4)  # 0.6363
    assert best_of_n_kl(64) == pytest.approx(4.158883 - 0.984375, abs=1e-6)
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n_kl(0)


def test_best_of_n_kl_is_the_kl_of_the_max_of_n_uniform_ranks():
    # On m equally likely outcomes with distinct proxy scores, best-of-n picks rank i with
    # P(i) = ((i+1)^n - i^n) / m^n; its KL to uniform tends to log n - (n-1)/n as m grows.
    from agents.search.best_of_n import best_of_n_kl

    m, n = 20000, 8
    i = np.arange(m, dtype=np.float64)
    p = ((i + 1) / m) ** n - (i / m) ** n
    kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * m)))
    assert kl == pytest.approx(best_of_n_kl(n), abs=1e-3)


def test_best_of_n_expectation_equals_the_mean_over_all_subsets():
    import itertools

    from agents.search.best_of_n import best_of_n_expectation, best_of_n_weights

    rng = np.random.default_rng(0)
    proxy, gold = rng.random((3, 7)), rng.random((3, 7))
    for n in (1, 2, 5, 7):
        by_hand = np.mean(
            [
                np.mean([gold[p][list(s)][np.argmax(proxy[p][list(s)])] for s in itertools.combinations(range(7), n)])
                for p in range(3)
            ]
        )
        assert best_of_n_expectation(proxy, gold, [n])[0] == pytest.approx(by_hand)
    assert best_of_n_weights(7, 3).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="draw more samples"):
        best_of_n_weights(4, 5)
    with pytest.raises(ValueError, match="one shape"):
        best_of_n_expectation(proxy, gold[:, :3], [1])
