"""The lm-envs leaderboard: submissions, validation, a SQL store, a CLI, and a web page with an API.

Users train an agent, evaluate it under the env's protocol (:func:`lm_envs.get_protocol`), build a
submission with :func:`build_submission`, and submit it (``lm-envs leaderboard submit result.json``,
or to a server with ``--server URL --token TOKEN``). Others browse the tables
(``lm-envs leaderboard serve``) or export them (Markdown, CSV, static HTML).

Importing this package is light: the store (SQLAlchemy) and the server (FastAPI) load on first use.

Example:
    >>> import leaderboard
    >>> leaderboard.SCHEMA_VERSION
    2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leaderboard.aggregate import aggregate_scores, iqm, stratified_bootstrap_ci
from leaderboard.envs import UnknownEnvError, dataset_identity, spec_hash
from leaderboard.hashing import config_hash, episodes_hash
from leaderboard.schema import MAX_SUBMISSION_BYTES, SCHEMA_VERSION, SUBMISSION_SCHEMA
from leaderboard.submission import build_submission, write_submission
from leaderboard.validate import (
    DuplicateSubmissionError,
    SubmissionError,
    SubmissionTooLargeError,
    ValidSubmission,
    validate_submission,
)

if TYPE_CHECKING:
    from leaderboard.store import Entry, LeaderboardStore

__all__ = [
    "MAX_SUBMISSION_BYTES",
    "SCHEMA_VERSION",
    "SUBMISSION_SCHEMA",
    "DuplicateSubmissionError",
    "Entry",
    "LeaderboardStore",
    "SubmissionError",
    "SubmissionTooLargeError",
    "UnknownEnvError",
    "ValidSubmission",
    "aggregate_scores",
    "build_submission",
    "config_hash",
    "dataset_identity",
    "episodes_hash",
    "iqm",
    "spec_hash",
    "stratified_bootstrap_ci",
    "validate_submission",
    "write_submission",
]


def __getattr__(name: str) -> Any:
    if name in ("LeaderboardStore", "Entry"):
        from leaderboard import store

        return getattr(store, name)
    raise AttributeError(f"module 'leaderboard' has no attribute {name!r}")
