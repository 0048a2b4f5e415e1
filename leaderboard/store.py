"""The leaderboard store: submissions and API tokens in a SQL database (SQLAlchemy 2).

One URL setting chooses the database: ``--db`` on the command line, else ``$LM_ENVS_LEADERBOARD_URL``,
else a SQLite file under the lm-envs cache directory (``$LM_ENVS_CACHE/leaderboard.sqlite``, default
``~/.cache/lm_envs/leaderboard.sqlite``). Any SQLAlchemy URL works, e.g.
``postgresql+psycopg://user:password@localhost/leaderboard``; a plain file path means a SQLite file.

SQLite runs in WAL mode with a busy timeout, and write transactions start with ``BEGIN IMMEDIATE``,
so concurrent writers (server threads, a CLI next to a running server) queue instead of failing.
Duplicates are refused by a unique fingerprint column, which also holds under concurrent writers
on PostgreSQL.

Moderation: an admin can hide an entry (it leaves every listing and page but keeps its fingerprint,
so it cannot be resubmitted), unhide it, or delete it; revoking a token can hide or delete the
entries that came through it. Every such action (and every token issued or revoked, and every
verification) is recorded in an append-only audit log (:meth:`LeaderboardStore.audit_log`).
Opening a store upgrades a database created by an older version in place (new columns and tables
are added; nothing is dropped).

Example:
    >>> store = LeaderboardStore("sqlite://")  # in memory
    >>> store.entries()
    []
    >>> token = store.issue_token("alice")
    >>> store.authenticate(token), store.authenticate(token + "x")
    ('alice', None)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, deferred, mapped_column, undefer
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import UniqueConstraint

from leaderboard.schema import MAX_SUBMISSION_BYTES
from leaderboard.tokens import hash_secret, new_token, parse_token, verify_secret
from leaderboard.validate import (
    DuplicateSubmissionError,
    ValidSubmission,
    normalize_name,
    text_problems,
    validate_submission,
)

#: Environment variable holding the store URL.
URL_ENV = "LM_ENVS_LEADERBOARD_URL"
#: Largest entry id (ids are 32-bit integer columns on every database).
MAX_ENTRY_ID = 2**31 - 1


def _valid_id(entry_id: Any) -> int | None:
    try:
        value = int(entry_id)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if 1 <= value <= MAX_ENTRY_ID else None


def _valid_env_filter(env_id: str) -> bool:
    """Whether ``env_id`` could name stored entries (ids are 1-200 characters without control characters).

    PostgreSQL refuses NUL bytes in text parameters; such a filter matches nothing anyway.
    """
    return isinstance(env_id, str) and 0 < len(env_id) <= 200 and not any(ord(c) < 32 or ord(c) == 127 for c in env_id)


def default_store_url() -> str:
    """``$LM_ENVS_LEADERBOARD_URL`` if set, else a SQLite file under the lm-envs cache directory."""
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    from lm_envs.core.tokenizer import cache_dir

    return f"sqlite:///{(cache_dir() / 'leaderboard.sqlite').resolve()}"


def resolve_store_url(url: str | os.PathLike[str] | None = None) -> str:
    """Turn a ``--db`` value into a SQLAlchemy URL.

    Args:
        url: ``None`` for :func:`default_store_url`; a SQLAlchemy URL; or a file path (a SQLite file).
            ``postgresql://`` URLs use psycopg 3 when psycopg2 is not installed.

    Returns:
        The URL string.

    Example:
        >>> resolve_store_url("/tmp/lb.sqlite")
        'sqlite:////tmp/lb.sqlite'
    """
    if url is None:
        url = default_store_url()
    url = os.fspath(url)
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            parsed = parsed.set(drivername="postgresql+psycopg")
            return parsed.render_as_string(hide_password=False)
    return url


class _Base(DeclarativeBase):
    pass


class _SubmissionRow(_Base):
    __tablename__ = "lb_submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env_id: Mapped[str] = mapped_column(String(200), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    agent_name: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(200))
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    aggregate: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    mean: Mapped[float] = mapped_column(Float)
    iqm: Mapped[float] = mapped_column(Float)
    n_seeds: Mapped[int] = mapped_column(Integer)
    seed_scores: Mapped[str] = mapped_column(Text)
    evaluated_at: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True))
    document: Mapped[str] = deferred(mapped_column(Text))
    # Added in the second store version (ALTER TABLE on older databases, see _migrate).
    hidden_at: Mapped[_dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    hidden_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    verification: Mapped[str | None] = mapped_column(String(16), nullable=True)
    verified_at: Mapped[_dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    verification_detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class _AuditRow(_Base):
    __tablename__ = "lb_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32), index=True)
    entry_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class _BaselineRow(_Base):
    __tablename__ = "lb_baselines"
    __table_args__ = (UniqueConstraint("env_id", "kind", name="uq_lb_baselines_env_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(200))
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    aggregate: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    seed_scores: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True))


#: The reference baselines an env can have (see :mod:`leaderboard.baselines`), in display order.
BASELINE_KINDS = ("format-only", "random-reward")


#: Columns added to lb_submissions after the first release, with their SQL types (see _migrate).
_ADDED_COLUMNS = ("hidden_at", "hidden_reason", "verification", "verified_at", "verification_detail")


class _TokenRow(_Base):
    __tablename__ = "lb_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    secret_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[_dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


@dataclass(frozen=True)
class Entry:
    """One leaderboard entry.

    Attributes:
        id: The entry's id (stable; the entry page is ``/entry/<id>``).
        env_id: The env id with version.
        agent_name: The agent's name as submitted (untrusted text: escape it when displaying).
        model_name: The model's name as submitted (untrusted text).
        metric: The protocol's metric.
        higher_is_better: The metric's direction.
        aggregate: The ranking aggregate (``"iqm"`` or ``"mean"``).
        score: The ranking value (the aggregate of the per-seed scores).
        ci_low: Lower end of the score's 95% stratified-bootstrap interval.
        ci_high: Upper end of that interval.
        mean: Mean of the per-seed scores.
        iqm: Interquartile mean of the per-seed scores.
        seed_scores: The per-seed scores, in submitted order.
        evaluated_at: The submission's ``date``.
        submitted_by: Name of the API token it came through (``None`` for local submissions).
        created_at: When the store accepted it (UTC).
        document: The full submission (``None`` in listings; :meth:`LeaderboardStore.get` loads it).
        hidden: Whether a moderator hid it (hidden entries appear only to admin commands).
        verification: ``"verified"`` when a re-run of the protocol on its checkpoints reproduced every
            per-seed score within the protocol's tolerance, ``"mismatch"`` when it did not, ``None``
            while self-reported.
        verified_at: When the last verification ran (UTC), or ``None``.
    """

    id: int
    env_id: str
    agent_name: str
    model_name: str
    metric: str
    higher_is_better: bool
    aggregate: str
    score: float
    ci_low: float
    ci_high: float
    mean: float
    iqm: float
    seed_scores: list[float]
    evaluated_at: str
    submitted_by: str | None
    created_at: _dt.datetime
    document: dict[str, Any] | None = None
    hidden: bool = False
    verification: str | None = None
    verified_at: _dt.datetime | None = None

    @property
    def verified(self) -> bool:
        """Whether the entry's scores were reproduced from its published checkpoints."""
        return self.verification == "verified"

    @property
    def n_seeds(self) -> int:
        """Number of seeds."""
        return len(self.seed_scores)

    def summary(self) -> dict[str, Any]:
        """The entry without its document, as JSON data (what listings and exports show)."""
        return {
            "id": self.id,
            "env_id": self.env_id,
            "agent": self.agent_name,
            "model": self.model_name,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "aggregate": self.aggregate,
            "score": self.score,
            "ci": [self.ci_low, self.ci_high],
            "mean": self.mean,
            "iqm": self.iqm,
            "n_seeds": self.n_seeds,
            "seed_scores": list(self.seed_scores),
            "evaluated_at": self.evaluated_at,
            "submitted_by": self.submitted_by,
            "created_at": self.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "verification": self.verification or "self-reported",
        }

    @classmethod
    def _from_row(cls, row: _SubmissionRow, with_document: bool = False) -> Entry:
        return cls(
            id=row.id,
            env_id=row.env_id,
            agent_name=row.agent_name,
            model_name=row.model_name,
            metric=row.metric,
            higher_is_better=row.higher_is_better,
            aggregate=row.aggregate,
            score=row.score,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            mean=row.mean,
            iqm=row.iqm,
            seed_scores=json.loads(row.seed_scores),
            evaluated_at=row.evaluated_at,
            submitted_by=row.submitted_by,
            created_at=_utc(row.created_at),  # type: ignore[arg-type]
            document=json.loads(row.document) if with_document else None,
            hidden=row.hidden_at is not None,
            verification=row.verification,
            verified_at=_utc(row.verified_at),
        )


def rank(entries: list[Entry]) -> list[Entry]:
    """Entries of one env, best first (by score in the metric's direction, then interval, then age)."""

    def key(e: Entry) -> tuple[float, float, int]:
        sign = -1.0 if e.higher_is_better else 1.0
        return (sign * e.score, sign * (e.ci_low if e.higher_is_better else e.ci_high), e.id)

    return sorted(entries, key=key)


@dataclass(frozen=True)
class Baseline:
    """A reference score of an env: what a policy without task knowledge or without reward signal gets.

    Attributes:
        env_id: The env id with version.
        kind: ``"format-only"`` (well-formed answers, no task knowledge) or ``"random-reward"`` (the
            standard training run with the reward replaced by a coin flip).
        metric: The protocol's metric.
        higher_is_better: The metric's direction.
        aggregate: The ranking aggregate the score is.
        score: The aggregate of the per-seed scores.
        ci_low: Lower end of its 95% stratified-bootstrap interval.
        ci_high: Upper end of that interval.
        seed_scores: The per-seed scores.
        detail: How it was computed (per-seed results, training settings, code version).
        created_at: When it was stored (UTC).
    """

    env_id: str
    kind: str
    metric: str
    higher_is_better: bool
    aggregate: str
    score: float
    ci_low: float
    ci_high: float
    seed_scores: list[float]
    detail: dict[str, Any]
    created_at: _dt.datetime

    def beats(self, score: float) -> bool:
        """Whether this baseline scores at least ``score`` (so an entry with ``score`` does not beat it)."""
        return self.score >= score if self.higher_is_better else self.score <= score

    def not_beaten_by(self, entry: Entry) -> bool:
        """Whether ``entry`` (scored with this baseline's metric, direction and aggregate) does not beat it."""
        same = (entry.metric, entry.higher_is_better, entry.aggregate) == (
            self.metric,
            self.higher_is_better,
            self.aggregate,
        )
        return same and self.beats(entry.score)

    def summary(self) -> dict[str, Any]:
        """The baseline as JSON data."""
        return {
            **dataclasses.asdict(self),
            "ci": [self.ci_low, self.ci_high],
            "created_at": self.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }

    @classmethod
    def _from_row(cls, row: _BaselineRow) -> Baseline:
        return cls(
            env_id=row.env_id,
            kind=row.kind,
            metric=row.metric,
            higher_is_better=row.higher_is_better,
            aggregate=row.aggregate,
            score=row.score,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            seed_scores=json.loads(row.seed_scores),
            detail=json.loads(row.detail),
            created_at=_utc(row.created_at),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit log.

    Attributes:
        id: Its position in the log.
        at: When it happened (UTC).
        actor: Who did it (the admin's name, ``"server"`` or ``"verify"``).
        action: ``"hide"``, ``"unhide"``, ``"delete"``, ``"issue-token"``, ``"revoke-token"``, ``"verify"``,
            ``"baseline"`` or ``"baseline-delete"``.
        entry_id: The entry acted on, if any.
        target: The token name acted on, if any.
        reason: The reason given.
        detail: More about it (a deleted entry's summary, a verification's per-seed results).
    """

    id: int
    at: _dt.datetime
    actor: str
    action: str
    entry_id: int | None
    target: str | None
    reason: str | None
    detail: dict[str, Any] | None

    def summary(self) -> dict[str, Any]:
        """The event as JSON data."""
        return {**dataclasses.asdict(self), "at": self.at.isoformat(timespec="seconds").replace("+00:00", "Z")}


def _migrate(engine: Engine) -> None:
    """Bring a database created by an older store up to date: create missing tables, add missing columns."""
    _Base.metadata.create_all(engine)
    table = _SubmissionRow.__table__
    with engine.connect() as conn:
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    missing = [name for name in _ADDED_COLUMNS if name not in present]
    for name in missing:
        column = table.c[name]
        ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} {column.type.compile(dialect=engine.dialect)}"
        try:
            with engine.begin() as conn:
                conn.execute(text(ddl))
        except Exception:  # noqa: BLE001 - another process may have added it first; check below
            with engine.connect() as conn:
                if name not in {c["name"] for c in inspect(conn).get_columns(table.name)}:
                    raise


def _clean_text(value: str | None, what: str, limit: int = 500) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or text_problems({"x": value}):
        raise ValueError(
            f"{what} must be at most {limit} printable characters without invisible controls, got {str(value)[:60]!r}."
        )
    return normalize_name(value)


@dataclass(frozen=True)
class TokenInfo:
    """An issued API token, without its secret.

    Attributes:
        name: Who it was issued to.
        key_id: Its public key id (the token starts ``lmlb_<key_id>_``).
        created_at: When it was issued (UTC).
        revoked_at: When it was revoked, or ``None`` while active.
    """

    name: str
    key_id: str
    created_at: _dt.datetime
    revoked_at: _dt.datetime | None


def _make_engine(url: str) -> Engine:
    parsed: URL = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=60)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False})
    else:  # one shared in-memory database for every thread
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) emit BEGIN, so writers can use BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("lb_write") else "BEGIN")

    return engine


class LeaderboardStore:
    """Submissions and API tokens in a SQL database.

    Thread-safe: one store serves every request thread of the server.

    Args:
        url: A SQLAlchemy URL, a SQLite file path, or ``None`` for :func:`default_store_url`.

    Attributes:
        url: The resolved URL (password hidden when printed).
    """

    def __init__(self, url: str | os.PathLike[str] | None = None) -> None:
        resolved = resolve_store_url(url)
        self.engine = _make_engine(resolved)
        self.url = make_url(resolved).render_as_string(hide_password=True)
        self._write_engine = self.engine.execution_options(lb_write=True)
        _migrate(self._write_engine)
        #: Incremented by every write through this store (pages cached by the server key on it).
        self.generation = 0
        self._verified: dict[str, str] = {}
        self._verified_lock = threading.Lock()
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = hash_secret("not-a-token")
        return self._dummy

    def __repr__(self) -> str:
        return f"LeaderboardStore({self.url!r})"

    def __enter__(self) -> LeaderboardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ submissions

    def submit(
        self,
        submission: bytes | str | Mapping[str, Any],
        *,
        submitted_by: str | None = None,
        max_bytes: int = MAX_SUBMISSION_BYTES,
    ) -> Entry:
        """Validate a submission and add it.

        Args:
            submission: JSON bytes or text, or a dict (e.g. from :func:`leaderboard.build_submission`).
            submitted_by: Name of the API token it came through, if any.
            max_bytes: Size limit.

        Returns:
            The new entry.

        Raises:
            leaderboard.SubmissionError: If it is invalid (a
                :class:`~leaderboard.DuplicateSubmissionError` if it is already on the board).
        """
        return self.add(validate_submission(submission, max_bytes=max_bytes), submitted_by=submitted_by)

    def add(self, valid: ValidSubmission, *, submitted_by: str | None = None) -> Entry:
        """Add a validated submission.

        Raises:
            leaderboard.DuplicateSubmissionError: If an entry with the same fingerprint exists.
        """
        doc = valid.document
        aggregate = valid.aggregate
        row = _SubmissionRow(
            env_id=valid.env_id,
            fingerprint=valid.fingerprint,
            agent_name=valid.agent_name,
            model_name=valid.model_name,
            metric=aggregate["metric"],
            higher_is_better=aggregate["higher_is_better"],
            aggregate=aggregate["primary"],
            score=valid.score,
            ci_low=valid.ci_low,
            ci_high=valid.ci_high,
            mean=float(aggregate["mean"]),
            iqm=float(aggregate["iqm"]),
            n_seeds=len(doc["seeds"]),
            seed_scores=json.dumps([float(s["score"]) for s in doc["seeds"]]),
            evaluated_at=doc["date"],
            submitted_by=submitted_by,
            created_at=_dt.datetime.now(_dt.timezone.utc),
            document=valid.text,
        )
        try:
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                existing = session.execute(
                    select(_SubmissionRow.id, _SubmissionRow.hidden_at).where(
                        _SubmissionRow.fingerprint == valid.fingerprint
                    )
                ).first()
                if existing is not None:
                    raise self._duplicate(existing)
                session.add(row)
                session.flush()
                entry = Entry._from_row(row, with_document=False)
            self.generation += 1
        except IntegrityError:  # a concurrent writer stored the same fingerprint first
            with Session(self.engine) as session:
                existing = session.execute(
                    select(_SubmissionRow.id, _SubmissionRow.hidden_at).where(
                        _SubmissionRow.fingerprint == valid.fingerprint
                    )
                ).first()
            raise self._duplicate(existing) from None
        return dataclasses.replace(entry, document=doc)

    @staticmethod
    def _duplicate(found: Any) -> DuplicateSubmissionError:
        existing = found[0] if found is not None else None
        hidden = " (hidden by a moderator)" if found is not None and found[1] is not None else ""
        return DuplicateSubmissionError(
            f"duplicate: entry {existing} already holds this evaluation{hidden} (same env, same seeds' episode "
            "hashes and "
            "same agent config hash); a new result needs new episodes or a different config.",
            existing_id=existing,
        )

    def get(self, entry_id: int, *, include_hidden: bool = False) -> Entry:
        """The entry ``entry_id`` with its full document.

        Args:
            entry_id: The entry's id.
            include_hidden: Also give a hidden entry (admin views).

        Raises:
            KeyError: If there is no such entry (or it is hidden and ``include_hidden`` is false).
        """
        valid_id = _valid_id(entry_id)
        with Session(self.engine) as session:
            row = (
                None
                if valid_id is None
                else session.get(_SubmissionRow, valid_id, options=[undefer(_SubmissionRow.document)])
            )
            if row is None or (row.hidden_at is not None and not include_hidden):
                raise KeyError(f"no leaderboard entry with id {entry_id}; `lm-envs leaderboard list` shows the ids.")
            return Entry._from_row(row, with_document=True)

    def entries(self, env_id: str | None = None, *, include_hidden: bool = False) -> list[Entry]:
        """Entries without documents, ranked within each env (envs in id order).

        Args:
            env_id: Only this env's entries.
            include_hidden: Also list hidden entries (admin views).
        """
        stmt = select(_SubmissionRow)
        if not include_hidden:
            stmt = stmt.where(_SubmissionRow.hidden_at.is_(None))
        if env_id is not None:
            if not _valid_env_filter(env_id):
                return []
            stmt = stmt.where(_SubmissionRow.env_id == env_id)
        with Session(self.engine) as session:
            rows = [Entry._from_row(r) for r in session.scalars(stmt)]
        by_env: dict[str, list[Entry]] = {}
        for entry in rows:
            by_env.setdefault(entry.env_id, []).append(entry)
        return [e for env in sorted(by_env) for e in rank(by_env[env])]

    def env_ids(self) -> list[str]:
        """Env ids that have at least one entry, sorted."""
        stmt = select(_SubmissionRow.env_id).where(_SubmissionRow.hidden_at.is_(None)).distinct()
        with Session(self.engine) as session:
            return sorted(session.scalars(stmt))

    def count(self, env_id: str | None = None) -> int:
        """Number of visible entries (of one env, if given)."""
        stmt = select(func.count(_SubmissionRow.id)).where(_SubmissionRow.hidden_at.is_(None))
        if env_id is not None:
            if not _valid_env_filter(env_id):
                return 0
            stmt = stmt.where(_SubmissionRow.env_id == env_id)
        with Session(self.engine) as session:
            return int(session.scalar(stmt) or 0)

    def iter_documents(self, env_id: str | None = None) -> Iterator[Entry]:
        """Every entry with its document, hidden ones included, in id order (for backups and re-validation)."""
        stmt = select(_SubmissionRow).options(undefer(_SubmissionRow.document)).order_by(_SubmissionRow.id)
        if env_id is not None:
            stmt = stmt.where(_SubmissionRow.env_id == env_id)
        with Session(self.engine) as session:
            for row in session.scalars(stmt):
                yield Entry._from_row(row, with_document=True)

    # ------------------------------------------------------------------ API tokens

    def issue_token(self, name: str, *, replace: bool = False, actor: str = "admin") -> str:
        """Issue an API token for ``name``; the token is returned once and stored only as a hash.

        Args:
            name: Who the token is for (shown as "submitted by" on entries).
            replace: Revoke ``name``'s active tokens first, instead of refusing.
            actor: Who issues it (recorded in the audit log).

        Returns:
            The token.

        Raises:
            ValueError: If ``name`` is empty or already has an active token and ``replace`` is false.
        """
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or text_problems({"name": name}):
            raise ValueError(
                f"token name must be 1-200 printable characters without invisible or bidirectional controls, "
                f"got {name!r}."
            )
        name = normalize_name(name)
        token = new_token()
        now = _dt.datetime.now(_dt.timezone.utc)
        with Session(self._write_engine) as session, session.begin():
            active = session.scalars(
                select(_TokenRow).where(_TokenRow.name == name, _TokenRow.revoked_at.is_(None))
            ).all()
            if active and not replace:
                raise ValueError(
                    f"{name!r} already has an active token; revoke it first (admin revoke-token) or pass --replace."
                )
            for old in active:
                old.revoked_at = now
            session.add(_TokenRow(key_id=token.key_id, name=name, secret_hash=token.stored_hash, created_at=now))
            self._audit(session, actor, "issue-token", target=name, detail={"key_id": token.key_id})
        return token.token

    def revoke_token(
        self, name: str, *, cascade: str | None = None, actor: str = "admin", reason: str | None = None
    ) -> int:
        """Revoke every active token of ``name``; returns how many were revoked.

        Args:
            name: Whose tokens.
            cascade: Also ``"hide"`` or ``"delete"`` every entry submitted through ``name``'s tokens
                (see :meth:`cascade_entries`); ``None`` leaves them.
            actor: Who revokes (recorded in the audit log).
            reason: Why (recorded in the audit log).
        """
        reason = _clean_text(reason, "reason")
        name = normalize_name(name)
        now = _dt.datetime.now(_dt.timezone.utc)
        with Session(self._write_engine) as session, session.begin():
            result = session.execute(
                update(_TokenRow).where(_TokenRow.name == name, _TokenRow.revoked_at.is_(None)).values(revoked_at=now)
            )
            revoked = int(result.rowcount or 0)  # type: ignore[attr-defined]
            if revoked:
                self._audit(session, actor, "revoke-token", target=name, reason=reason, detail={"tokens": revoked})
        if cascade is not None:
            self.cascade_entries(name, cascade, actor=actor, reason=reason or f"token of {name!r} revoked")
        return revoked

    # ------------------------------------------------------------------ moderation

    def _audit(
        self,
        session: Session,
        actor: str,
        action: str,
        *,
        entry_id: int | None = None,
        target: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        session.add(
            _AuditRow(
                at=_dt.datetime.now(_dt.timezone.utc),
                actor=_clean_text(actor, "actor", 200) or "admin",
                action=action,
                entry_id=entry_id,
                target=target,
                reason=reason,
                detail=json.dumps(detail, ensure_ascii=False) if detail is not None else None,
            )
        )

    def _moderate(self, entry_id: int, action: str, actor: str, reason: str | None) -> Entry | dict[str, Any]:
        reason = _clean_text(reason, "reason")
        valid_id = _valid_id(entry_id)
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            row = None if valid_id is None else session.get(_SubmissionRow, valid_id)
            if row is None:
                raise KeyError(f"no leaderboard entry with id {entry_id}; `lm-envs leaderboard list --all` shows ids.")
            entry = Entry._from_row(row)
            if action == "hide":
                if row.hidden_at is not None:
                    raise ValueError(f"entry {entry_id} is already hidden.")
                row.hidden_at, row.hidden_reason = _dt.datetime.now(_dt.timezone.utc), reason
            elif action == "unhide":
                if row.hidden_at is None:
                    raise ValueError(f"entry {entry_id} is not hidden.")
                row.hidden_at, row.hidden_reason = None, None
            else:
                session.delete(row)
            self._audit(
                session,
                actor,
                action,
                entry_id=entry.id,
                target=entry.submitted_by,
                reason=reason,
                detail={**entry.summary(), "fingerprint": row.fingerprint} if action == "delete" else None,
            )
            session.flush()
        self.generation += 1
        if action == "delete":
            return entry.summary()
        return dataclasses.replace(entry, hidden=action == "hide")

    def hide(self, entry_id: int, *, reason: str, actor: str = "admin") -> Entry:
        """Hide an entry from every listing, page and export; it keeps its place against duplicates.

        Raises:
            KeyError: If there is no such entry.
            ValueError: If it is already hidden, or the reason is not printable text.
        """
        return self._moderate(entry_id, "hide", actor, reason)  # type: ignore[return-value]

    def unhide(self, entry_id: int, *, reason: str | None = None, actor: str = "admin") -> Entry:
        """Show a hidden entry again.

        Raises:
            KeyError: If there is no such entry.
            ValueError: If it is not hidden.
        """
        return self._moderate(entry_id, "unhide", actor, reason)  # type: ignore[return-value]

    def delete(self, entry_id: int, *, reason: str, actor: str = "admin") -> dict[str, Any]:
        """Delete an entry for good (its summary and fingerprint stay in the audit log).

        Returns:
            The deleted entry's summary.

        Raises:
            KeyError: If there is no such entry.
        """
        return self._moderate(entry_id, "delete", actor, reason)  # type: ignore[return-value]

    def cascade_entries(self, name: str, action: str, *, actor: str = "admin", reason: str | None = None) -> list[int]:
        """Hide or delete every visible entry submitted through the tokens of ``name``.

        Args:
            name: The token name (``submitted_by``).
            action: ``"hide"`` or ``"delete"``.
            actor: Who does it (audit log).
            reason: Why (audit log).

        Returns:
            The ids acted on.
        """
        if action not in ("hide", "delete"):
            raise ValueError(f"cascade must be 'hide' or 'delete', got {action!r}.")
        name = normalize_name(name)
        stmt = select(_SubmissionRow.id).where(_SubmissionRow.submitted_by == name)
        if action == "hide":
            stmt = stmt.where(_SubmissionRow.hidden_at.is_(None))
        with Session(self.engine) as session:
            ids = list(session.scalars(stmt.order_by(_SubmissionRow.id)))
        for entry_id in ids:
            self._moderate(entry_id, action, actor, reason)
        return ids

    def audit_log(self, *, entry_id: int | None = None, limit: int | None = None) -> list[AuditEvent]:
        """The audit log, newest first.

        Args:
            entry_id: Only events about this entry.
            limit: At most this many events.
        """
        stmt = select(_AuditRow).order_by(_AuditRow.id.desc())
        if entry_id is not None:
            stmt = stmt.where(_AuditRow.entry_id == entry_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with Session(self.engine) as session:
            return [
                AuditEvent(
                    r.id,
                    _utc(r.at),  # type: ignore[arg-type]
                    r.actor,
                    r.action,
                    r.entry_id,
                    r.target,
                    r.reason,
                    json.loads(r.detail) if r.detail else None,
                )
                for r in session.scalars(stmt)
            ]

    def set_verification(
        self, entry_id: int, status: str | None, detail: dict[str, Any], *, actor: str = "verify"
    ) -> Entry:
        """Record the outcome of re-running an entry's protocol (``"verified"``, ``"mismatch"`` or ``None``).

        Raises:
            KeyError: If there is no such entry.
        """
        if status not in ("verified", "mismatch", None):
            raise ValueError(f"verification status must be 'verified', 'mismatch' or None, got {status!r}.")
        valid_id = _valid_id(entry_id)
        now = _dt.datetime.now(_dt.timezone.utc)
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            row = None if valid_id is None else session.get(_SubmissionRow, valid_id)
            if row is None:
                raise KeyError(f"no leaderboard entry with id {entry_id}.")
            row.verification, row.verified_at = status, now
            row.verification_detail = json.dumps(detail, ensure_ascii=False)
            self._audit(session, actor, "verify", entry_id=row.id, reason=status or "unverified", detail=detail)
            session.flush()
            entry = Entry._from_row(row)
        self.generation += 1
        return entry

    def verification_detail(self, entry_id: int) -> dict[str, Any] | None:
        """The last verification's per-seed results of an entry, or ``None`` if it was never verified."""
        valid_id = _valid_id(entry_id)
        if valid_id is None:
            return None
        with Session(self.engine) as session:
            detail = session.scalar(select(_SubmissionRow.verification_detail).where(_SubmissionRow.id == valid_id))
        return json.loads(detail) if detail else None

    # ------------------------------------------------------------------ reference baselines

    def set_baseline(self, record: Mapping[str, Any], *, actor: str = "admin") -> Baseline:
        """Store an env's reference baseline, replacing the one of the same env and kind (audit-logged).

        Args:
            record: :func:`leaderboard.baselines.baseline_record`'s output: ``env_id``, ``kind``,
                ``metric``, ``higher_is_better``, ``aggregate``, ``score``, ``ci``, ``seed_scores``, ``detail``.
            actor: Recorded in the audit log.

        Raises:
            ValueError: If the kind is unknown or a score is not a finite number.
        """
        kind = record["kind"]
        if kind not in BASELINE_KINDS:
            raise ValueError(f"baseline kind must be one of {list(BASELINE_KINDS)}, got {kind!r}.")
        numbers = [record["score"], *record["ci"], *record["seed_scores"]]
        if not numbers[3:] or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers):
            raise ValueError(f"a baseline needs finite scores and at least one seed, got {numbers}.")
        now = _dt.datetime.now(_dt.timezone.utc)
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            row = session.scalars(
                select(_BaselineRow).where(_BaselineRow.env_id == record["env_id"], _BaselineRow.kind == kind)
            ).first()
            if row is None:
                row = _BaselineRow(env_id=record["env_id"], kind=kind)
                session.add(row)
            row.metric, row.higher_is_better, row.aggregate = (
                record["metric"],
                bool(record["higher_is_better"]),
                record["aggregate"],
            )
            row.score, (row.ci_low, row.ci_high) = float(record["score"]), map(float, record["ci"])
            row.seed_scores = json.dumps([float(x) for x in record["seed_scores"]])
            row.detail = json.dumps(record.get("detail", {}), ensure_ascii=False)
            row.created_at = now
            summary = {"kind": kind, "score": row.score, "seed_scores": json.loads(row.seed_scores)}
            self._audit(session, actor, "baseline", target=record["env_id"], reason=kind, detail=summary)
            session.flush()
            baseline = Baseline._from_row(row)
        self.generation += 1
        return baseline

    def baselines(self, env_id: str | None = None) -> list[Baseline]:
        """Stored reference baselines (of one env, if given), by env id, then kind."""
        stmt = select(_BaselineRow)
        if env_id is not None:
            if not _valid_env_filter(env_id):
                return []
            stmt = stmt.where(_BaselineRow.env_id == env_id)
        with Session(self.engine) as session:
            found = [Baseline._from_row(r) for r in session.scalars(stmt)]
        order = {k: i for i, k in enumerate(BASELINE_KINDS)}
        return sorted(found, key=lambda b: (b.env_id, order.get(b.kind, len(order))))

    def delete_baseline(self, env_id: str, kind: str, *, actor: str = "admin") -> bool:
        """Remove an env's baseline of ``kind``; returns whether there was one."""
        with Session(self._write_engine) as session, session.begin():
            row = session.scalars(
                select(_BaselineRow).where(_BaselineRow.env_id == env_id, _BaselineRow.kind == kind)
            ).first()
            if row is None:
                return False
            session.delete(row)
            self._audit(session, actor, "baseline-delete", target=env_id, reason=kind)
        self.generation += 1
        return True

    def tokens(self) -> list[TokenInfo]:
        """Every issued token (active and revoked), without secrets, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(_TokenRow).order_by(_TokenRow.id)).all()
            return [TokenInfo(r.name, r.key_id, _utc(r.created_at), _utc(r.revoked_at)) for r in rows]  # type: ignore[arg-type]

    def authenticate(self, token: str | None) -> str | None:
        """The name of the active token ``token``, or ``None`` if it is missing, wrong or revoked."""
        if not token:
            return None
        try:
            key_id, secret = parse_token(token)
        except ValueError:
            return None
        with Session(self.engine) as session:
            row = session.scalar(select(_TokenRow).where(_TokenRow.key_id == key_id, _TokenRow.revoked_at.is_(None)))
            name, stored = (row.name, row.secret_hash) if row is not None else (None, None)
        if stored is None:
            # Hash anyway, so an unknown or revoked key id takes as long as a wrong secret.
            verify_secret(secret, self._dummy_hash())
            return None
        # scrypt is deliberately slow; remember tokens already verified against this exact stored hash.
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._verified_lock:
            if self._verified.get(digest) == stored:
                return name
        if not verify_secret(secret, stored):
            return None
        with self._verified_lock:
            if len(self._verified) > 4096:
                self._verified.clear()
            self._verified[digest] = stored
        return name
