"""Hardening found by probing the live server: impossible scores, oversized numbers, deep nesting,
4xx instead of 500s, duplicate and aggregate loopholes, look-alike names, token timing, API docs."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from fastapi.testclient import TestClient

import lm_envs
from leaderboard import (
    SubmissionError,
    build_submission,
    episodes_hash,
    validate_submission,
)
from leaderboard.export import export_html
from leaderboard.server import create_app
from leaderboard.store import LeaderboardStore
from leaderboard.validate import fingerprint

ENV_ID = "LMEnv/TargetWord-v0"


def refused(doc, *fragments):
    with pytest.raises(SubmissionError) as info:
        validate_submission(doc)
    text = "\n".join(info.value.problems)
    for fragment in fragments:
        assert fragment in text, text
    return info.value


def math_submission(scores):
    seeds = [{"seed": s, "score": v, "episodes_hash": episodes_hash([{"s": s, "v": v}])} for s, v in enumerate(scores)]
    return build_submission(
        "LMEnv/Math-v0", agent="a", agent_config={}, model="m", tokenizer_hash="t", seeds=seeds, wall_time_s=1
    )


# ---------------------------------------------------------------------------------------- 1. metric ranges


@pytest.mark.parametrize("value", [42.0, -1.0, 1e300])
def test_impossible_accuracies_are_refused(value):
    refused(math_submission([value] * 3), "seeds[0].score is", "'accuracy'", "[0, 1]")


def test_mean_return_ranges_are_declared_per_env(make_submission):
    assert lm_envs.get_protocol("LMEnv/Math-v0").metric_range == (0.0, 1.0)
    assert lm_envs.get_protocol(ENV_ID).metric_range == (0.0, 1.0)
    assert lm_envs.get_protocol("LMEnv/KnowledgeQA-v3").metric_range == (-1.0, 1.0)
    refused(make_submission(0, scores=[0.5, 1.5, 0.5]), "seeds[1].score is 1.5")
    validate_submission(make_submission(0, scores=[0.0, 1.0, 0.5]))  # the ends are inside


def test_protocols_check_their_range():
    with pytest.raises(ValueError, match="low < high"):
        lm_envs.EvalProtocol(metric="mean_return", metric_range=(1, 0))
    with pytest.raises(ValueError, match="finite"):
        lm_envs.EvalProtocol(metric="mean_return", metric_range=(0, float("inf")))
    assert lm_envs.EvalProtocol(metric="mean_return").metric_range is None
    assert lm_envs.EvalProtocol(metric="mean_return", metric_range=[None, 0]).to_dict()["metric_range"] == [None, 0.0]


def test_a_metric_without_a_declared_range_is_still_bounded():
    task = lm_envs.ListTask.from_pairs(train=[("a", "b")], test=[("c", "d")])
    protocol = lm_envs.EvalProtocol(metric="mean_return", metric_range=None)
    lm_envs.register("LBTest/Unbounded-v0", task=task, reward=lambda p, c: 0.0, protocol=protocol)
    try:

        def doc(v):
            seeds = [{"seed": s, "score": v, "episodes_hash": episodes_hash([{"s": s}])} for s in range(3)]
            return build_submission(
                "LBTest/Unbounded-v0", agent="a", agent_config={}, model="m", tokenizer_hash="t", seeds=seeds,
                wall_time_s=1,
            )  # fmt: skip

        assert validate_submission(doc(-12345.5)).score == -12345.5
        refused(doc(1e300), "declares no range")
    finally:
        del gym.registry["LBTest/Unbounded-v0"]


def test_version_1_documents_are_still_accepted_and_range_checked(make_submission):
    doc = make_submission(4)
    doc["schema_version"] = 1
    for key in ("metric_range", "tolerance"):
        del doc["env"]["protocol"][key]
    assert validate_submission(doc).env_id == ENV_ID
    doc["seeds"][0]["checkpoint"] = {"uri": "x", "sha256": "0" * 64}
    refused(doc, "'checkpoint' was unexpected")
    del doc["seeds"][0]["checkpoint"]
    bad = make_submission(4, scores=[2.0, 2.0, 2.0])
    bad["schema_version"] = 1
    for key in ("metric_range", "tolerance"):
        del bad["env"]["protocol"][key]
    refused(bad, "seeds[0].score is 2.0")
    doc["schema_version"] = 3
    refused(doc, "schema_version 3 is not supported; this leaderboard accepts schema_version 1 and 2")


# ---------------------------------------------------------------------------------------- 4. sizes and depth


def test_numbers_too_large_for_a_float_are_refused(submission):
    text = json.dumps(submission)
    huge = "1" + "0" * 400
    for raw, fragment in [
        (text.replace('"wall_time_s": 3.5', f'"wall_time_s": {huge}'), "is out of range"),
        (text.replace('"wall_time_s": 3.5', '"wall_time_s": 1e400'), "the number 1e400 is out of range"),
        (text.replace('"wall_time_s": 3.5', '"wall_time_s": 1e12'), "$.wall_time_s"),
        (text.replace('"score": 0.5', '"score": ' + "9" * 401), "401 digits"),
    ]:
        assert raw != text
        refused(raw.encode(), fragment)


def test_deep_nesting_is_refused(submission):
    deep = {}
    node = deep
    for _ in range(500):
        node["x"] = {}
        node = node["x"]
    submission["agent"]["config"] = deep
    refused(submission, "more than 32 levels deep")
    refused(b'{"a":' * 5000 + b"1" + b"}" * 5000, "more than 32 levels deep")
    refused(b"[" * 100_000, "more than 32 levels deep")
    nested = []
    for _ in range(5000):
        nested = [nested]
    refused({"schema_version": 2, "extra": nested}, "too deeply")


def test_entries_that_passed_before_cannot_break_pages(tmp_path, submission, make_submission):
    """10**400 and 500-deep configs used to be stored and then break the entry page and `export html`."""
    store = LeaderboardStore(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    raw = json.dumps(make_submission(1)).replace('"wall_time_s": 3.5', '"wall_time_s": ' + "1" + "0" * 400)
    with pytest.raises(SubmissionError):
        store.submit(raw)
    entry = store.submit(make_submission(2))
    assert export_html(store, tmp_path / "site")[0].name == "index.html"
    assert store.get(entry.id).document["wall_time_s"] == 3.5


# ---------------------------------------------------------------------------------------- 5. 4xx, not 500


@pytest.fixture
def client(store_url):
    with TestClient(create_app(store_url), raise_server_exceptions=False) as c:
        yield c


def test_hostile_requests_get_4xx_not_500(client, submission):
    token = client.app.state.store.issue_token("probe")
    headers = {"Authorization": f"Bearer {token}"}
    text = json.dumps(submission)
    digits = text.replace('"score": 0.5', '"score": ' + "9" * 401)
    r = client.post("/api/v1/submissions", content=digits.encode(), headers=headers)
    assert r.status_code == 422 and "out of range" in r.json()["problems"][0]
    deep = b"[" * 1000 + b"]" * 1000
    r = client.post("/api/v1/submissions", content=deep, headers=headers)
    assert r.status_code == 422 and "levels deep" in r.json()["problems"][0]
    for path in ("/entry/99999999999999999999", "/api/v1/submissions/2147483648", "/entry/-1", "/entry/0"):
        assert client.get(path).status_code == 404, path
    assert client.get("/api/v1/submissions", params={"env": "LMEnv/\x00x"}).json() == []
    assert client.get("/env/LMEnv/%00TargetWord-v0").status_code == 404
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------------------------------- 7. smaller gaps


def test_float_seeds_cannot_dodge_the_duplicate_check(store_url, make_submission):
    original = make_submission(3)
    copy = make_submission(3)
    for s in copy["seeds"]:
        s["seed"] = float(s["seed"])
    assert fingerprint(copy) == fingerprint(original)
    refused(copy, "seeds[0].seed is 0.0; write it as an integer (0)")
    with LeaderboardStore(store_url) as store:
        store.submit(original)
        with pytest.raises(SubmissionError):
            store.submit(json.dumps(copy))
        assert store.count() == 1


def test_stored_aggregates_are_the_recomputed_ones(store_url, make_submission):
    original = make_submission(1, scores=[1.0, 1.0, 1.0])
    copy = make_submission(2, scores=[1.0, 1.0, 1.0])  # same scores, new episodes: not a duplicate
    for key in ("mean", "iqm"):
        copy["aggregate"][key] += 9e-10
        copy["aggregate"][f"{key}_ci"] = [v + 9e-10 for v in copy["aggregate"][f"{key}_ci"]]
    with LeaderboardStore(store_url) as store:
        first = store.submit(original)
        second = store.submit(copy)  # within the 1e-9 tolerance: accepted, but not as claimed
        assert second.score == first.score == 1.0 and second.ci_high == first.ci_high
        assert store.get(second.id).document["aggregate"] == original["aggregate"]
        assert [e.id for e in store.entries()] == [first.id, second.id]


@pytest.mark.parametrize(
    "name, char",
    [
        ("ppo\u200b", "U+200B"),
        ("\u202eopp", "U+202E"),
        ("pp\u2066o", "U+2066"),
        ("\ufeffppo", "U+FEFF"),
        ("a\x85", "U+0085"),
    ],
)
def test_invisible_and_bidi_characters_are_refused(make_submission, name, char):
    refused(make_submission(1, agent=name), f"at $.agent.name: character {char}")
    refused(make_submission(1, model=name), f"at $.model.name: character {char}")
    with pytest.raises(ValueError, match="invisible"):
        LeaderboardStore("sqlite://").issue_token(name)


def test_names_are_nfkc_normalized(make_submission):
    valid = validate_submission(make_submission(1, agent="ｐｐｏ", model="ﬁne-tuned"))
    assert valid.agent_name == "ppo" and valid.model_name == "fine-tuned"
    assert valid.document["agent"]["name"] == "ppo"
    store = LeaderboardStore("sqlite://")
    assert store.authenticate(store.issue_token("Ａlice")) == "Alice"
    validate_submission(make_submission(1, agent="ünïcødé 名前 🚀"))  # visible non-ASCII text is fine


def test_unknown_key_ids_cost_a_hash_like_wrong_secrets(monkeypatch):
    import leaderboard.store as store_module

    store = LeaderboardStore("sqlite://")
    token = store.issue_token("alice")
    calls = []
    real = store_module.verify_secret

    def counting(secret, stored):
        calls.append(stored)
        return real(secret, stored)

    monkeypatch.setattr(store_module, "verify_secret", counting)
    unknown = "lmlb_000000000000_" + token.split("_", 2)[2]
    assert store.authenticate(unknown) is None and len(calls) == 1
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None and len(calls) == 2
    store.revoke_token("alice")
    assert store.authenticate(token) is None and len(calls) == 3


def test_api_docs_are_not_served_blank(tmp_path):
    with TestClient(create_app(f"sqlite:///{tmp_path / 'lb.sqlite'}")) as client:
        assert client.get("/api/docs").status_code == 404
        assert client.get("/api/openapi.json").json()["info"]["title"] == "lm-envs leaderboard"
