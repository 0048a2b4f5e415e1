"""Aggregates: IQM as rliable defines it, deterministic stratified-bootstrap intervals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from leaderboard.aggregate import BOOTSTRAP_REPS, aggregate_scores, iqm, stratified_bootstrap_ci


def trim_mean_reference(x, proportion=0.25):
    """scipy.stats.trim_mean, written out."""
    x = np.sort(np.asarray(x, dtype=float).ravel())
    cut = int(proportion * x.size)
    return x[cut : x.size - cut].mean()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 10, 17])
def test_iqm_is_the_25_percent_trimmed_mean(n):
    x = np.random.default_rng(n).normal(size=n)
    assert iqm(x) == pytest.approx(trim_mean_reference(x))


def test_iqm_ignores_outliers_that_move_the_mean():
    assert iqm([0.0, 1.0, 2.0, 1000.0]) == 1.5
    assert iqm([1.0, 2.0, 3.0]) == 2.0  # int(0.75) == 0: nothing cut from three seeds


def test_iqm_rejects_empty():
    with pytest.raises(ValueError, match="at least one"):
        iqm([])


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    x = [0.31, 0.52, 0.47, 0.66, 0.58]
    for statistic, point in (("mean", np.mean(x)), ("iqm", iqm(x))):
        lo, hi = stratified_bootstrap_ci(x, statistic)
        assert (lo, hi) == stratified_bootstrap_ci(x, statistic)
        assert min(x) <= lo <= point <= hi <= max(x)
    assert stratified_bootstrap_ci(x, "mean", seed=1) != stratified_bootstrap_ci(x, "mean", seed=0)


def test_bootstrap_of_two_runs_matches_the_exact_distribution():
    # Resampling two runs {0, 1}: the mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4.
    lo, hi = stratified_bootstrap_ci([0.0, 1.0], "mean")
    assert (lo, hi) == (0.0, 1.0)
    lo, hi = stratified_bootstrap_ci([0.0, 1.0], "mean", confidence=0.4)
    assert (lo, hi) == (0.5, 0.5)


def test_bootstrap_quantiles_agree_with_exact_enumeration():
    x = np.array([0.1, 0.4, 0.5, 0.9])
    n = len(x)
    means = np.array([x[list(idx)].mean() for idx in itertools.product(range(n), repeat=n)])
    lo, hi = stratified_bootstrap_ci(x, "mean")
    exact_lo, exact_hi = np.percentile(means, [2.5, 97.5])
    assert lo == pytest.approx(exact_lo, abs=0.03) and hi == pytest.approx(exact_hi, abs=0.03)


def test_bootstrap_is_stratified_over_tasks():
    # Two tasks with constant scores: every resample keeps both tasks, so the interval is a point.
    scores = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert stratified_bootstrap_ci(scores, "mean") == (0.5, 0.5)


def test_bootstrap_uses_the_stable_pcg64_stream():
    # Pinned values: numpy guarantees bit-generator streams, so these hold on every numpy version.
    assert np.random.PCG64(0).random_raw(2).tolist() == [11749869230777074271, 4976686463289251617]
    x = [0.13, 0.29, 0.41, 0.55, 0.62, 0.97]
    assert stratified_bootstrap_ci(x, "mean", reps=BOOTSTRAP_REPS) == pytest.approx(
        (0.29666666666666663, 0.7166666666666667)
    )
    assert stratified_bootstrap_ci(x, "iqm", reps=BOOTSTRAP_REPS) == pytest.approx((0.25, 0.76))


@pytest.mark.parametrize(
    "bad, match",
    [([], "non-empty"), ([1.0, float("nan")], "finite")],
)
def test_bootstrap_rejects_bad_scores(bad, match):
    with pytest.raises(ValueError, match=match):
        stratified_bootstrap_ci(bad)


def test_aggregate_block():
    agg = aggregate_scores([0.5, 0.75, 0.25], metric="accuracy", higher_is_better=True, primary="iqm")
    assert agg["n_seeds"] == 3 and agg["mean"] == agg["iqm"] == 0.5
    assert agg["ci"] == {"method": "stratified-bootstrap-percentile", "confidence": 0.95, "reps": 10000, "seed": 0}
    assert agg["mean_ci"][0] <= 0.5 <= agg["mean_ci"][1]
    with pytest.raises(ValueError, match="primary"):
        aggregate_scores([1.0], metric="m", higher_is_better=True, primary="median")
