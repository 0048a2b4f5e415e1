"""Leaderboard tables: one per env, ranked, with the env's protocol (what pages and exports show).

Example:
    >>> from leaderboard.store import LeaderboardStore
    >>> "LMEnv/TargetWord-v0" in [b.env_id for b in boards(LeaderboardStore("sqlite://"))]
    True
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from leaderboard.envs import leaderboard_env_ids
from leaderboard.store import Baseline, Entry, LeaderboardStore
from lm_envs.core.protocol import get_protocol

AGGREGATE_LABELS = {"iqm": "IQM", "mean": "Mean"}


@dataclass(frozen=True)
class Board:
    """The table of one env.

    Attributes:
        env_id: The env id with version.
        metric: The primary metric.
        higher_is_better: The metric's direction.
        aggregate: The ranking aggregate (``"iqm"`` or ``"mean"``).
        protocol: The protocol of the env as registered in this process, or ``None`` when the env
            is no longer registered (entries of a retired version stay browsable).
        entries: The entries, best first.
        baselines: The env's reference baselines (:mod:`leaderboard.baselines`), format-only first.
    """

    env_id: str
    metric: str
    higher_is_better: bool
    aggregate: str
    protocol: dict[str, Any] | None
    entries: list[Entry] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)

    @property
    def format_only(self) -> Baseline | None:
        """The format-only baseline, if one is stored (and measured under this board's metric and direction)."""
        return next((b for b in self.usable_baselines if b.kind == "format-only"), None)

    @property
    def usable_baselines(self) -> list[Baseline]:
        """The baselines measured with this board's metric, direction and aggregate (others are not comparable)."""
        return [
            b
            for b in self.baselines
            if (b.metric, b.higher_is_better, b.aggregate) == (self.metric, self.higher_is_better, self.aggregate)
        ]

    def below_format_only(self, entry: Entry) -> bool:
        """Whether ``entry`` does not beat the format-only baseline (its score is at or below it)."""
        baseline = self.format_only
        return baseline is not None and baseline.not_beaten_by(entry)

    def baseline_positions(self, rows: list[Row]) -> list[tuple[int, Baseline]]:
        """Where each baseline falls among ``rows`` (best first): ``(number of rows that beat it, baseline)``.

        Example:
            >>> Board("X-v0", "accuracy", True, "iqm", None).baseline_positions([])
            []
        """
        return [(sum(not b.beats(r.entry.score) for r in rows), b) for b in self.usable_baselines]

    @property
    def aggregate_label(self) -> str:
        """``"IQM"`` or ``"Mean"``."""
        return AGGREGATE_LABELS.get(self.aggregate, self.aggregate)

    @property
    def range_label(self) -> str:
        """The metric's declared range as text (``"[0, 1]"``, ``"[-1, ∞)"``), or ``""`` when none is declared."""
        bounds = (self.protocol or {}).get("metric_range")
        if not bounds:
            return ""
        low, high = bounds
        return f"{'(-∞' if low is None else f'[{low:g}'}, {'∞)' if high is None else f'{high:g}]'}"

    @property
    def verified_count(self) -> int:
        """How many entries are verified."""
        return sum(e.verified for e in self.entries)

    def rows(self, query: str | None = None, *, verified_only: bool = False) -> list[Row]:
        """The ranked rows, optionally filtered (ranks stay those of the full table).

        Args:
            query: Keep entries whose agent, model or submitter contains this text (case-insensitive).
            verified_only: Keep verified entries only.
        """
        rows = ranked_rows(self.entries, self.higher_is_better)
        if query:
            needle = query.casefold()
            rows = [
                r
                for r in rows
                if any(
                    needle in (t or "").casefold()
                    for t in (r.entry.agent_name, r.entry.model_name, r.entry.submitted_by)
                )
            ]
        if verified_only:
            rows = [r for r in rows if r.entry.verified]
        return rows


@dataclass(frozen=True)
class Row:
    """An entry in its table.

    Attributes:
        position: 1-based position in the full ranking (by score, then interval, then age).
        rank: 1 + the number of entries whose 95% interval lies entirely better than this entry's
            (entries whose intervals overlap share a rank: the data cannot tell them apart).
        tied: Whether another entry has the same ``rank``.
        entry: The entry.
    """

    position: int
    rank: int
    tied: bool
    entry: Entry


def ranked_rows(entries: list[Entry], higher_is_better: bool) -> list[Row]:
    """Rows of ranked ``entries`` (best first) with interval-aware ranks, in O(n log n).

    Example:
        >>> ranked_rows([], True)
        []
    """
    if higher_is_better:  # o is better than e when o.ci_low > e.ci_high
        keys = sorted(e.ci_low for e in entries)
        better = [len(keys) - bisect.bisect_right(keys, e.ci_high) for e in entries]
    else:  # o is better than e when o.ci_high < e.ci_low
        keys = sorted(e.ci_high for e in entries)
        better = [bisect.bisect_left(keys, e.ci_low) for e in entries]
    ranks = [b + 1 for b in better]
    counts: dict[int, int] = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    return [Row(i + 1, r, counts[r] > 1, e) for i, (r, e) in enumerate(zip(ranks, entries))]


def boards(store: LeaderboardStore, env_id: str | None = None, *, include_empty: bool = True) -> list[Board]:
    """The tables of every env (or one), in env id order.

    Args:
        store: Where the entries are.
        env_id: Only this env's table.
        include_empty: Also give registered envs that have no entries yet (so a new env shows up as
            soon as it declares a protocol).

    Returns:
        One :class:`Board` per env; an unknown ``env_id`` without entries gives an empty list.
    """
    entries = store.entries(env_id)
    by_env: dict[str, list[Entry]] = {}
    for entry in entries:
        by_env.setdefault(entry.env_id, []).append(entry)
    references: dict[str, list[Baseline]] = {}
    for baseline in store.baselines(env_id):
        references.setdefault(baseline.env_id, []).append(baseline)
    registered = set(leaderboard_env_ids())
    ids = set(by_env)
    if include_empty:
        ids |= registered if env_id is None else registered & {env_id}
    result = []
    for eid in sorted(ids):
        rows = by_env.get(eid, [])
        if eid in registered:
            protocol = get_protocol(eid).to_dict()
            metric, hib, agg = protocol["metric"], protocol["higher_is_better"], protocol["aggregate"]
        else:
            protocol = None
            metric, hib, agg = rows[0].metric, rows[0].higher_is_better, rows[0].aggregate
        result.append(Board(eid, metric, hib, agg, protocol, rows, references.get(eid, [])))
    return result
