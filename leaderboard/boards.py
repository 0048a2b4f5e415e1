"""Leaderboard tables: one per env, ranked, with the env's protocol (what pages and exports show).

Example:
    >>> from leaderboard.store import LeaderboardStore
    >>> "LMEnv/TargetWord-v0" in [b.env_id for b in boards(LeaderboardStore("sqlite://"))]
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leaderboard.envs import leaderboard_env_ids
from leaderboard.store import Entry, LeaderboardStore
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
    """

    env_id: str
    metric: str
    higher_is_better: bool
    aggregate: str
    protocol: dict[str, Any] | None
    entries: list[Entry] = field(default_factory=list)

    @property
    def aggregate_label(self) -> str:
        """``"IQM"`` or ``"Mean"``."""
        return AGGREGATE_LABELS.get(self.aggregate, self.aggregate)


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
        result.append(Board(eid, metric, hib, agg, protocol, rows))
    return result
