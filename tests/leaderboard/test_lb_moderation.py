"""Moderation: hide, unhide and delete entries, revocation that cascades, the audit log, and the in-place
upgrade of databases created before moderation existed (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text, create_engine

from leaderboard import DuplicateSubmissionError, validate_submission
from leaderboard.cli import main
from leaderboard.export import export_csv
from leaderboard.server import create_app
from leaderboard.store import LeaderboardStore, resolve_store_url

ENV_ID = "LMEnv/TargetWord-v0"


def test_hide_unhide_delete_and_the_audit_log(store_url, make_submission):
    with LeaderboardStore(store_url) as store:
        a, b, c = (store.submit(make_submission(i)) for i in range(3))
        hidden = store.hide(b.id, reason="impossible score", actor="mod")
        assert hidden.hidden and store.count() == 2
        assert b.id not in [e.id for e in store.entries()] and b.id not in [e.id for e in store.entries(ENV_ID)]
        with pytest.raises(KeyError):
            store.get(b.id)
        assert store.get(b.id, include_hidden=True).hidden
        assert [e.id for e in store.entries(include_hidden=True) if e.hidden] == [b.id]
        with pytest.raises(DuplicateSubmissionError, match="already holds this evaluation \\(hidden by a moderator\\)"):
            store.submit(make_submission(1))  # a hidden entry still blocks its resubmission
        with pytest.raises(ValueError, match="already hidden"):
            store.hide(b.id, reason="again")
        assert store.unhide(b.id, actor="mod").hidden is False and store.count() == 3

        removed = store.delete(c.id, reason="spam", actor="mod")
        assert removed["id"] == c.id and store.count() == 2
        with pytest.raises(KeyError):
            store.get(c.id, include_hidden=True)
        with pytest.raises(KeyError):
            store.hide(99999999999, reason="x")
        with pytest.raises(ValueError, match="printable"):
            store.hide(a.id, reason="bad\u202ereason")

        log = store.audit_log()
        assert [(e.action, e.entry_id, e.actor) for e in log] == [
            ("delete", c.id, "mod"),
            ("unhide", b.id, "mod"),
            ("hide", b.id, "mod"),
        ]
        assert (
            log[0].reason == "spam" and log[0].detail["agent"] == "agent-2" and len(log[0].detail["fingerprint"]) == 64
        )
        assert [e.action for e in store.audit_log(entry_id=b.id)] == ["unhide", "hide"]
        assert json.loads(json.dumps([e.summary() for e in log]))[0]["at"].endswith("Z")


def test_revocation_can_cascade_to_the_entries(store_url, make_submission):
    with LeaderboardStore(store_url) as store:
        alice, bob = store.issue_token("alice"), store.issue_token("bob")
        assert store.authenticate(alice) == "alice"
        mine = [store.submit(make_submission(i), submitted_by="alice").id for i in range(3)]
        theirs = store.submit(make_submission(10), submitted_by="bob").id
        assert store.revoke_token("alice", cascade="hide", reason="leaked token", actor="mod") == 1
        assert [e.id for e in store.entries()] == [theirs] and store.authenticate(alice) is None
        assert store.authenticate(bob) == "bob"
        assert store.cascade_entries("alice", "delete", actor="mod") == mine
        assert store.count() == 1 and len(store.entries(include_hidden=True)) == 1
        actions = [(e.action, e.target) for e in store.audit_log()]
        assert actions[-2:] == [("issue-token", "bob"), ("issue-token", "alice")]
        assert actions.index(("revoke-token", "alice")) > actions.index(("hide", "alice"))  # newest first
        assert actions.count(("hide", "alice")) == 3 and actions.count(("delete", "alice")) == 3
        with pytest.raises(ValueError, match="cascade must be"):
            store.cascade_entries("bob", "shred")


def test_hidden_entries_leave_pages_api_and_exports(tmp_path, make_submission):
    app = create_app(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    store = app.state.store
    keep = store.submit(make_submission(1, agent="kept-agent"))
    gone = store.submit(make_submission(2, agent="hidden-agent"))
    store.hide(gone.id, reason="moderated")
    with TestClient(app) as client:
        assert [e["id"] for e in client.get("/api/v1/submissions").json()] == [keep.id]
        assert client.get(f"/api/v1/submissions/{gone.id}").status_code == 404
        assert client.get(f"/entry/{gone.id}").status_code == 404
        for path in ("/", f"/env/{ENV_ID}"):
            page = client.get(path).text
            assert "kept-agent" in page and "hidden-agent" not in page
        assert client.get("/healthz").json()["entries"] == 1
    assert "hidden-agent" not in export_csv(store)


def test_cli_moderation(tmp_path, make_submission, capsys):
    db = f"sqlite:///{tmp_path / 'lb.sqlite'}"
    with LeaderboardStore(db) as store:
        ids = [store.submit(make_submission(i), submitted_by="mallory").id for i in range(2)]
        other = store.submit(make_submission(5)).id
        store.issue_token("mallory")
    assert main(["admin", "hide", str(ids[0]), "--reason", "bogus", "--db", db, "--actor", "root"]) == 0
    assert f"hid entry {ids[0]}" in capsys.readouterr().out
    assert main(["list", "--db", db]) == 0
    assert "agent-0" not in capsys.readouterr().out
    assert main(["list", "--all", "--db", db]) == 0
    assert "agent-0 / model-0 [hidden]" in capsys.readouterr().out
    assert main(["show", str(ids[0]), "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["hidden"] is True
    assert main(["admin", "unhide", str(ids[0]), "--db", db]) == 0
    assert main(["admin", "delete", str(other), "--reason", "test", "--db", db]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["admin", "delete", str(other), "--reason", "test", "--yes", "--db", db]) == 0
    assert main(["admin", "delete", str(other), "--reason", "test", "--yes", "--db", db]) == 2
    assert f"no leaderboard entry with id {other}" in capsys.readouterr().err
    assert main(["admin", "revoke-token", "mallory", "--cascade", "hide", "--reason", "abuse", "--db", db]) == 0
    assert "hid 2 entries of 'mallory'" in capsys.readouterr().out
    assert main(["admin", "audit-log", "--db", db, "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in events][:3] == ["hide", "hide", "revoke-token"]
    assert events[-1]["action"] == "issue-token" and events[-1]["target"] == "mallory"
    assert events[-2]["action"] == "hide" and events[-2]["actor"] == "root" and events[-2]["reason"] == "bogus"
    assert main(["admin", "audit-log", "--db", db, "--entry", str(other)]) == 0
    assert "delete" in capsys.readouterr().out


def _old_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The tables as the first store version created them (before moderation and verification)."""
    submissions = Table(
        "lb_submissions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("env_id", String(200), index=True),
        Column("fingerprint", String(64), unique=True),
        Column("agent_name", String(200)),
        Column("model_name", String(200)),
        Column("metric", String(200)),
        Column("higher_is_better", Boolean),
        Column("aggregate", String(16)),
        Column("score", Float),
        Column("ci_low", Float),
        Column("ci_high", Float),
        Column("mean", Float),
        Column("iqm", Float),
        Column("n_seeds", Integer),
        Column("seed_scores", Text),
        Column("evaluated_at", String(64)),
        Column("submitted_by", String(200), nullable=True),
        Column("created_at", DateTime(timezone=True)),
        Column("document", Text),
    )
    tokens = Table(
        "lb_api_tokens",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("key_id", String(32), unique=True),
        Column("name", String(200), index=True),
        Column("secret_hash", String(300)),
        Column("created_at", DateTime(timezone=True)),
        Column("revoked_at", DateTime(timezone=True), nullable=True),
    )
    return submissions, tokens


def test_a_database_from_before_moderation_is_upgraded_in_place(store_url, make_submission):
    valid = validate_submission(make_submission(1))
    engine = create_engine(resolve_store_url(store_url))
    metadata = MetaData()
    submissions, _tokens = _old_tables(metadata)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            submissions.insert().values(
                env_id=valid.env_id, fingerprint=valid.fingerprint, agent_name=valid.agent_name,
                model_name=valid.model_name, metric="mean_return", higher_is_better=True, aggregate="iqm",
                score=valid.score, ci_low=valid.ci_low, ci_high=valid.ci_high, mean=valid.aggregate["mean"],
                iqm=valid.aggregate["iqm"], n_seeds=3, seed_scores="[0.1, 0.2, 0.3]", evaluated_at="2026-01-01",
                submitted_by="old", created_at=dt.datetime.now(dt.timezone.utc), document=valid.text,
            )
        )  # fmt: skip
    engine.dispose()
    with LeaderboardStore(store_url) as store:
        [old] = store.entries()
        assert old.agent_name == "agent-1" and not old.hidden and old.verification is None
        store.hide(old.id, reason="migrated and moderated")
        assert store.count() == 0 and store.audit_log()[0].action == "hide"
        new = store.submit(make_submission(2))
    with LeaderboardStore(store_url) as store:  # reopening an upgraded database changes nothing
        assert [e.id for e in store.entries()] == [new.id] and store.get(old.id, include_hidden=True).hidden
