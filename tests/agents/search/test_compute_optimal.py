"""Compute-optimal search: difficulty from the verifier, a setting per bin fitted on dev problems, tokens counted."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agents.search.compute_optimal import (
    compute_optimal_search,
    difficulty_bins,
    estimate_difficulty,
    fit,
    fit_table,
    name_of,
)
from agents.search.tree import SearchConfig

ENV = "LMEnv/Math-v0"
BON = SearchConfig(strategy="best_of_n", n=4)
BEAM = SearchConfig(strategy="beam", n=8, width=4)


def test_each_bin_takes_its_best_affordable_setting():
    bins = np.array([0, 0, 1, 1, 2, 2])
    success = {"best_of_n@4": np.array([1, 1, 1, 0, 0, 0]), "beam@8/4": np.array([1, 0, 1, 0, 1, 1])}
    configs = {"best_of_n@4": BON, "beam@8/4": BEAM}
    table = fit_table(success, {"best_of_n@4": 300.0, "beam@8/4": 500.0}, bins, 600, configs, [0.3, 0.6])
    assert table.choice["easy"] is BON and table.choice["hard"] is BEAM
    assert table.choice["medium"] is BON  # a tie goes to the cheaper setting
    # a budget that only the cheaper fits: it serves every bin
    table = fit_table(success, {"best_of_n@4": 300.0, "beam@8/4": 500.0}, bins, 400, configs, [0.3, 0.6])
    assert {cfg.strategy for cfg in table.choice.values()} == {"best_of_n"}
    with pytest.raises(ValueError, match=r"no candidate fits 100 generated tokens.*best_of_n@4"):
        fit_table(success, {"best_of_n@4": 300.0, "beam@8/4": 500.0}, bins, 100, configs, [0.3, 0.6])


def test_difficulty_bins_by_thirds_or_given_edges():
    bins, edges = difficulty_bins(np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.4]))
    assert bins.tolist() == [2, 0, 1, 0, 2, 1] and len(edges) == 2
    assert difficulty_bins(np.array([0.1, 0.95]), [0.3, 0.6])[0].tolist() == [0, 2]
    assert name_of(BEAM) == "beam@8/4"


def test_difficulty_is_what_the_verifier_thinks_of_the_probe_samples(model):
    def distrust_problem_one(problems, histories, steps):
        return [0.1 if p.prompt.startswith(one) else 0.9 for p in problems]

    import gymnasium as gym

    one = gym.make(ENV).unwrapped.task.problem("test", 1).prompt
    difficulty, tokens = estimate_difficulty(model, ENV, distrust_problem_one, [0, 1, 2], probe=2)
    assert difficulty[1] > difficulty[0] and difficulty[1] > difficulty[2] and (tokens > 0).all()


def test_fit_then_search_counts_the_probe_and_uses_the_fitted_settings(model):
    rng = random.Random(0)

    def scorer(problems, histories, steps):
        return [rng.random() for _ in steps]

    table = fit(model, ENV, scorer, [BON, BEAM], dev_indices=range(6), budget=10_000, probe=2)
    assert set(table.choice) == {"easy", "medium", "hard"} and set(table.dev_tokens) == {"best_of_n@4", "beam@8/4"}
    result, bins = compute_optimal_search(model, ENV, scorer, table, [0, 1, 2, 3], probe=2)
    assert result.indices == [0, 1, 2, 3] and len(bins) == 4
    for cands, label, spent in zip(result.candidates, bins, result.generated_tokens):
        n = table.choice[label].n
        assert len(cands) == n
        # the search's own tokens plus the probe's: more than the longest finished candidate alone
        assert spent > max(c["num_tokens"] for c in cands)
