"""Compute-optimal test-time search: the strategy and budget per problem from its estimated difficulty.

Snell et al. (2024) found that which search wins depends on how hard a problem is for the policy: at small
budgets, PRM beam search helps on hard problems while best-of-N (or even one sample) serves easy ones,
where beam search over-optimises the verifier. Their compute-optimal strategy bins problems by a
*model-predicted* difficulty (no gold answer needed) and uses, per bin, the setting that did best on
held-out problems of that bin within the budget. Here:

1. :func:`estimate_difficulty`: ``probe`` samples per problem through the search engine, scored by the
   verifier; difficulty = 1 - the mean of their final scores (a verifier that trusts them: easy);
2. :func:`difficulty_bins`: thirds (or any quantiles) of that estimate;
3. :func:`fit_table`: per bin, the candidate :class:`~agents.search.tree.SearchConfig` with the best accuracy
   on development problems among those whose mean generated tokens (probe included) fit the budget;
4. :func:`compute_optimal_search`: probe, bin, then run each bin's chosen setting on its problems; the
   probe's tokens are counted with the search's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from agents.search.tree import SearchConfig, SearchResult, StepScorer, aggregate, search

#: Names of the difficulty bins, easiest first.
BINS = ("easy", "medium", "hard")


@dataclass
class Table:
    """The fitted choice: a setting per difficulty bin, and the bin edges of the estimate it was fitted with."""

    edges: list[float]
    choice: dict[str, SearchConfig]
    dev_accuracy: dict[str, dict[str, float]]  # bin -> candidate name -> accuracy on the dev problems
    dev_tokens: dict[str, float]  # candidate name -> mean generated tokens per dev problem


def name_of(cfg: SearchConfig) -> str:
    """A short name: ``beam@16/4``, ``best_of_n@8``.

    Example:
        >>> name_of(SearchConfig(strategy="dvts", n=16, width=4)), name_of(SearchConfig(strategy="best_of_n", n=8))
        ('dvts@16/4', 'best_of_n@8')
    """
    return f"{cfg.strategy}@{cfg.n}" + ("" if cfg.strategy == "best_of_n" else f"/{cfg.width}")


@torch.no_grad()
def estimate_difficulty(
    model: torch.nn.Module,
    env_id: str,
    scorer: StepScorer,
    indices: Sequence[int],
    probe: int = 4,
    split: str = "test",
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    how: str = "last",
) -> tuple[np.ndarray, np.ndarray]:
    """Model-predicted difficulty of each problem (0 easy .. 1 hard) and the probe's generated tokens.

    ``probe`` independent samples per problem, each scored by the verifier (its step scores aggregated by ``how``:
    the last step's, Snell et al.'s choice, or ``min`` for a checker that rates answer lines alike); no grader is
    read.
    """
    cfg = SearchConfig(strategy="best_of_n", n=probe, aggregate=how)
    result = search(model, env_id, cfg, scorer, indices, split=split, seed=seed, env_kwargs=env_kwargs)
    trust = [np.mean([aggregate(c["step_scores"], how) for c in cands]) for cands in result.candidates]
    return 1.0 - np.asarray(trust, dtype=np.float64), np.asarray(result.generated_tokens, dtype=np.float64)


def difficulty_bins(difficulty: np.ndarray, edges: Sequence[float] | None = None) -> tuple[np.ndarray, list[float]]:
    """Bin index of each problem (0 easy, 1 medium, 2 hard) and the edges used (thirds of ``difficulty`` if none).

    Example:
        >>> difficulty_bins(np.array([0.1, 0.5, 0.9, 0.2]), edges=[0.3, 0.6])[0].tolist()
        [0, 1, 2, 0]
    """
    if edges is None:
        edges = np.quantile(difficulty, [1 / 3, 2 / 3]).tolist() if len(difficulty) else [0.0, 0.0]
    return np.searchsorted(np.asarray(edges), difficulty, side="left").clip(0, len(BINS) - 1), list(edges)


def fit_table(
    success: dict[str, np.ndarray],
    tokens: dict[str, float],
    bins: np.ndarray,
    budget: float,
    configs: dict[str, SearchConfig],
    edges: Sequence[float],
) -> Table:
    """Per bin, the candidate with the best dev accuracy among those within ``budget`` tokens per problem.

    Ties go to the cheaper candidate. A bin without dev problems takes the best candidate overall.

    Raises:
        ValueError: When no candidate fits the budget.
    """
    affordable = [name for name in success if tokens[name] <= budget]
    if not affordable:
        cheapest = min(tokens, key=tokens.get)  # type: ignore[arg-type]
        raise ValueError(
            f"no candidate fits {budget:.0f} generated tokens per problem (the cheapest, {cheapest}, needs "
            f"{tokens[cheapest]:.0f} with the probe); raise the budget or add smaller candidates."
        )
    accuracy: dict[str, dict[str, float]] = {}
    choice: dict[str, SearchConfig] = {}
    overall = max(affordable, key=lambda n: (float(np.mean(success[n])), -tokens[n]))
    for b, label in enumerate(BINS):
        mask = bins == b
        accuracy[label] = {n: float(np.mean(success[n][mask])) for n in success if mask.any()}
        best = max(affordable, key=lambda n: (accuracy[label][n], -tokens[n])) if mask.any() else overall
        choice[label] = configs[best]
    return Table(list(edges), choice, accuracy, dict(tokens))


def fit(
    model: torch.nn.Module,
    env_id: str,
    scorer: StepScorer,
    candidates: Sequence[SearchConfig],
    dev_indices: Sequence[int],
    budget: float,
    probe: int = 4,
    split: str = "train",
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    how: str = "last",
) -> Table:
    """Run every candidate on development problems (graded), bin them by estimated difficulty, fit the table."""
    difficulty, probe_tokens = estimate_difficulty(
        model, env_id, scorer, dev_indices, probe, split, seed, env_kwargs, how
    )
    bins, edges = difficulty_bins(difficulty)
    success, tokens, configs = {}, {}, {}
    for cfg in candidates:
        name = name_of(cfg)
        result = search(model, env_id, cfg, scorer, dev_indices, split=split, seed=seed, env_kwargs=env_kwargs)
        success[name] = np.asarray(result.success, dtype=float)
        tokens[name] = result.mean_tokens + float(probe_tokens.mean())
        configs[name] = cfg
    return fit_table(success, tokens, bins, budget, configs, edges)


def compute_optimal_search(
    model: torch.nn.Module,
    env_id: str,
    scorer: StepScorer,
    table: Table,
    indices: Sequence[int],
    probe: int = 4,
    split: str = "test",
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    how: str = "last",
) -> tuple[SearchResult, list[str]]:
    """Probe, bin with the table's edges, and run each bin's setting; returns the merged result and each bin name.

    Each problem's generated tokens include its probe's; ``how`` must be the one the table was fitted with.
    """
    indices = list(indices)
    difficulty, probe_tokens = estimate_difficulty(model, env_id, scorer, indices, probe, split, seed, env_kwargs, how)
    bins, _ = difficulty_bins(difficulty, table.edges)
    merged: dict[int, tuple[list[dict[str, Any]], int, bool, int]] = {}
    for b, label in enumerate(BINS):
        mine = [i for i, k in zip(indices, bins, strict=True) if k == b]
        if not mine:
            continue
        cfg = replace(table.choice[label])
        result = search(model, env_id, cfg, scorer, mine, split=split, seed=seed, env_kwargs=env_kwargs)
        for j, index in enumerate(result.indices):
            merged[index] = (result.candidates[j], result.chosen[j], result.success[j], result.generated_tokens[j])
    out = SearchResult([], [], [], [], [])
    for pos, index in enumerate(indices):
        cands, chosen, ok, spent = merged[index]
        out.indices.append(index)
        out.candidates.append(cands)
        out.chosen.append(chosen)
        out.success.append(ok)
        out.generated_tokens.append(int(spent + probe_tokens[pos]))
    return out, [BINS[int(k)] for k in bins]
