"""The SQL store on SQLite and PostgreSQL: entries, ranking, duplicates, literal names, tokens, persistence."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import create_engine, text

from leaderboard import DuplicateSubmissionError, validate_submission
from leaderboard.store import LeaderboardStore, default_store_url, rank, resolve_store_url

NASTY = [
    "Robert'); DROP TABLE lb_submissions;--",
    "' OR '1'='1",
    '"; DELETE FROM lb_api_tokens; --',
    "<script>alert('xss')</script>",
    "<img src=x onerror=alert(1)>",
    "ünïcødé 名前 🚀",
    "back\\slash %s %(x)s {0}",
]


def test_add_get_and_rank(store_url, make_submission):
    with LeaderboardStore(store_url) as store:
        low = store.submit(make_submission(1, scores=[0.1, 0.2, 0.3]))
        high = store.submit(make_submission(2, scores=[0.8, 0.9, 0.7]))
        mid = store.submit(make_submission(3, scores=[0.5, 0.4, 0.6]))
        assert [e.id for e in store.entries()] == [high.id, mid.id, low.id]
        assert [e.id for e in store.entries("LMEnv/TargetWord-v0")] == [high.id, mid.id, low.id]
        assert store.entries("LMEnv/Math-v0") == [] and store.env_ids() == ["LMEnv/TargetWord-v0"]
        assert store.count() == 3 and store.count("LMEnv/Math-v0") == 0
        got = store.get(high.id)
        assert got.document == make_submission(2, scores=[0.8, 0.9, 0.7])
        assert got.seed_scores == [0.8, 0.9, 0.7] and got.n_seeds == 3
        assert got.score == pytest.approx(0.8) and got.ci_low <= got.score <= got.ci_high
        assert got.created_at.tzinfo is not None
        assert store.entries()[0].document is None  # listings leave the documents out
        with pytest.raises(KeyError, match="no leaderboard entry with id 999"):
            store.get(999)
        assert [e.id for e in store.iter_documents()] == sorted([low.id, mid.id, high.id])


def test_rank_follows_the_metric_direction(make_submission):
    store = LeaderboardStore("sqlite://")
    entries = [store.submit(make_submission(i, scores=[s, s, s])) for i, s in enumerate([0.3, 0.9, 0.1])]
    lower_is_better = [e.__class__(**{**e.__dict__, "higher_is_better": False}) for e in entries]
    assert [e.id for e in rank(entries)] == [entries[1].id, entries[0].id, entries[2].id]
    assert [e.id for e in rank(lower_is_better)] == [entries[2].id, entries[0].id, entries[1].id]


def test_duplicates_are_refused(store_url, make_submission):
    with LeaderboardStore(store_url) as store:
        first = store.submit(make_submission(7))
        renamed = make_submission(7, agent="someone else", model="another model")
        with pytest.raises(DuplicateSubmissionError, match=f"entry {first.id} already holds this evaluation") as info:
            store.submit(renamed)
        assert info.value.existing_id == first.id and info.value.status == 409
        assert store.count() == 1


def test_concurrent_duplicates_store_exactly_one(store_url, make_submission):
    valid = validate_submission(make_submission(11))
    with LeaderboardStore(store_url) as store:
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def add():
            barrier.wait(timeout=30)
            try:
                store.add(valid)
                outcomes.append("stored")
            except DuplicateSubmissionError:
                outcomes.append("duplicate")

        threads = [threading.Thread(target=add) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["duplicate"] * 7 + ["stored"] and store.count() == 1


def test_injection_strings_are_stored_literally(store_url, make_submission):
    with LeaderboardStore(store_url) as store:
        ids = [store.submit(make_submission(i, agent=name, model=name)).id for i, name in enumerate(NASTY)]
        for entry_id, name in zip(ids, NASTY):
            entry = store.get(entry_id)
            assert entry.agent_name == name and entry.model_name == name
            assert entry.document["agent"]["name"] == name
        assert store.count() == len(NASTY)
        token = store.issue_token(NASTY[0])
        assert store.authenticate(token) == NASTY[0]
        assert {e.agent_name for e in store.entries()} == set(NASTY)


def test_a_reopened_store_has_everything(store_url, make_submission):
    with LeaderboardStore(store_url) as store:
        ids = [store.submit(make_submission(i)).id for i in range(5)]
        token = store.issue_token("alice")
    with LeaderboardStore(store_url) as store:
        assert sorted(e.id for e in store.entries()) == sorted(ids)
        if store_url.startswith("postgresql"):
            assert "***" in repr(store) and store_url.split("@")[0].split(":")[-1] not in repr(store)
        assert store.authenticate(token) == "alice"


def test_tokens_are_hashed_revocable_and_replaceable(store_url):
    with LeaderboardStore(store_url) as store:
        token = store.issue_token("alice")
        assert token.startswith("lmlb_") and store.authenticate(token) == "alice"
        for wrong in (None, "", "garbage", token[:-1] + ("A" if token[-1] != "A" else "B"), token + "x"):
            assert store.authenticate(wrong) is None
        with pytest.raises(ValueError, match="already has an active token"):
            store.issue_token("alice")
        with pytest.raises(ValueError, match="printable"):
            store.issue_token("bad\nname")
        replacement = store.issue_token("alice", replace=True)
        assert store.authenticate(token) is None and store.authenticate(replacement) == "alice"
        assert store.revoke_token("alice") == 1 and store.authenticate(replacement) is None
        assert store.revoke_token("alice") == 0
        infos = store.tokens()
        assert [t.name for t in infos] == ["alice", "alice"] and all(t.revoked_at for t in infos)
    # Only a salted scrypt hash of the secret is stored.
    engine = create_engine(resolve_store_url(store_url))
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(text("SELECT key_id, secret_hash FROM lb_api_tokens"))]
    engine.dispose()
    secret = replacement.split("_", 2)[2]
    for _key_id, secret_hash in stored:
        assert secret not in secret_hash and secret_hash.startswith("scrypt$")
    assert len({h.split("$")[4] for _, h in stored}) == 2  # a salt per token


def test_store_urls(tmp_path, monkeypatch):
    monkeypatch.delenv("LM_ENVS_LEADERBOARD_URL", raising=False)
    monkeypatch.setenv("LM_ENVS_CACHE", str(tmp_path / "cache"))
    assert default_store_url() == f"sqlite:///{tmp_path / 'cache' / 'leaderboard.sqlite'}"
    store = LeaderboardStore()
    assert (tmp_path / "cache" / "leaderboard.sqlite").exists() and "leaderboard.sqlite" in repr(store)
    store.close()
    monkeypatch.setenv("LM_ENVS_LEADERBOARD_URL", "sqlite:///" + str(tmp_path / "env.sqlite"))
    assert default_store_url().endswith("env.sqlite")
    assert resolve_store_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert resolve_store_url("postgresql://u:p@localhost/db").startswith("postgresql+psycopg")


def test_documents_round_trip_exactly(store_url, make_submission):
    doc = make_submission(3, agent=NASTY[5])
    with LeaderboardStore(store_url) as store:
        entry = store.submit(json.dumps(doc, ensure_ascii=True).encode())
        assert store.get(entry.id).document == doc
