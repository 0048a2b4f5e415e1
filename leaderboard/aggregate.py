"""Aggregating per-seed scores: mean, interquartile mean, and stratified-bootstrap confidence intervals.

Follows rliable (Agarwal et al., 2021, "Deep RL at the Edge of the Statistical Precipice"): the
interquartile mean (IQM) is the 25%-trimmed mean over all runs, and intervals are percentile
intervals of a bootstrap that resamples runs *within* each task (stratified). A leaderboard table
is one env, i.e. one task, so the bootstrap resamples seeds.

The bootstrap draws its indices from the raw output of a PCG64 bit generator with a fixed seed:
numpy guarantees bit-generator streams across versions, so the same scores give the same interval
everywhere and validation can recompute and compare the aggregates a submission reports.

Example:
    >>> agg = aggregate_scores([0.5, 0.75, 0.25, 1.0], metric="accuracy", higher_is_better=True, primary="iqm")
    >>> agg["mean"], agg["iqm"], agg["n_seeds"]
    (0.625, 0.625, 4)
    >>> agg["iqm_ci"][0] <= agg["iqm"] <= agg["iqm_ci"][1]
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Bootstrap resamples per interval.
BOOTSTRAP_REPS = 10_000
#: Seed of the PCG64 bit generator that draws the resamples.
BOOTSTRAP_SEED = 0
#: Coverage of the intervals.
CONFIDENCE = 0.95
#: Name recorded in ``aggregate.ci.method``.
CI_METHOD = "stratified-bootstrap-percentile"


def iqm(scores: Sequence[float] | np.ndarray) -> float:
    """The interquartile mean: the mean of the scores left after cutting 25% from each end.

    Identical to ``scipy.stats.trim_mean(scores, 0.25)`` over all values (``int(0.25 * n)`` values
    are cut from each end), as rliable's ``aggregate_iqm``.

    Args:
        scores: Any number of finite scores (flattened).

    Returns:
        The IQM.

    Raises:
        ValueError: If ``scores`` is empty.

    Example:
        >>> iqm([0.0, 1.0, 2.0, 100.0])
        1.5
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("iqm() needs at least one score.")
    return float(_trimmed_mean(x[None, :])[0])


def _trimmed_mean(samples: np.ndarray) -> np.ndarray:
    """Row-wise 25%-trimmed mean of a ``(reps, n)`` array."""
    n = samples.shape[1]
    cut = int(0.25 * n)
    return np.sort(samples, axis=1)[:, cut : n - cut].mean(axis=1)


def _mean(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1)


STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mean": _mean, "iqm": _trimmed_mean}


def stratified_bootstrap_ci(
    scores: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    statistic: str = "iqm",
    *,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """A percentile confidence interval from a stratified bootstrap over runs.

    Each resample draws, for every task (column) independently, ``num_runs`` runs with replacement,
    then applies ``statistic`` to all resampled values, as rliable's ``StratifiedBootstrap``.

    Args:
        scores: ``(num_runs,)`` scores of one task, or a ``(num_runs, num_tasks)`` array.
        statistic: ``"iqm"`` or ``"mean"``.
        reps: Number of bootstrap resamples.
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the PCG64 bit generator drawing the resamples.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: If ``scores`` is empty or not finite, or an argument is out of range.

    Example:
        >>> lo, hi = stratified_bootstrap_ci([0.2, 0.4, 0.6, 0.8, 1.0], "mean")
        >>> 0.2 <= lo < 0.6 < hi <= 1.0
        True
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (num_runs,) or (num_runs, num_tasks) array, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite numbers (no NaN or infinity).")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps!r}.")
    num_runs, num_tasks = x.shape
    bits = np.random.PCG64(seed)
    columns = []
    for task in range(num_tasks):
        # Raw 64-bit draws are stable across numpy versions; the modulo bias is ~num_runs / 2**64.
        idx = (bits.random_raw(reps * num_runs) % np.uint64(num_runs)).astype(np.int64).reshape(reps, num_runs)
        columns.append(x[idx, task])
    samples = np.concatenate(columns, axis=1)
    stats = STATISTICS[statistic](samples)
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [alpha, 100.0 - alpha])
    return float(low), float(high)


def aggregate_scores(
    scores: Sequence[float],
    *,
    metric: str,
    higher_is_better: bool,
    primary: str,
) -> dict[str, Any]:
    """The ``aggregate`` block of a submission, computed from the per-seed scores.

    Args:
        scores: The per-seed scores of the protocol's metric, in seed order.
        metric: The protocol's metric name (recorded).
        higher_is_better: The protocol's direction (recorded).
        primary: The protocol's ranking aggregate, ``"iqm"`` or ``"mean"``.

    Returns:
        ``{"metric", "higher_is_better", "primary", "n_seeds", "mean", "mean_ci", "iqm", "iqm_ci", "ci"}``
        where ``*_ci`` are ``[low, high]`` 95% stratified-bootstrap intervals and ``ci`` records how
        they were computed.

    Raises:
        ValueError: If ``scores`` is empty or holds a non-finite value, or ``primary`` is unknown.
    """
    if primary not in STATISTICS:
        raise ValueError(f"primary aggregate must be one of {sorted(STATISTICS)}, got {primary!r}.")
    x = np.asarray(list(scores), dtype=np.float64)
    if x.size == 0:
        raise ValueError("aggregate_scores() needs at least one per-seed score.")
    if not np.isfinite(x).all():
        raise ValueError(f"per-seed scores must be finite numbers, got {x.tolist()}.")
    return {
        "metric": metric,
        "higher_is_better": bool(higher_is_better),
        "primary": primary,
        "n_seeds": int(x.size),
        "mean": float(x.mean()),
        "mean_ci": list(stratified_bootstrap_ci(x, "mean")),
        "iqm": iqm(x),
        "iqm_ci": list(stratified_bootstrap_ci(x, "iqm")),
        "ci": {"method": CI_METHOD, "confidence": CONFIDENCE, "reps": BOOTSTRAP_REPS, "seed": BOOTSTRAP_SEED},
    }
