"""Validation refuses every kind of bad submission, with a message that says what is wrong."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import lm_envs
from leaderboard import (
    MAX_SUBMISSION_BYTES,
    SubmissionError,
    SubmissionTooLargeError,
    build_submission,
    config_hash,
    episodes_hash,
    validate_submission,
)
from leaderboard.validate import fingerprint


def refused(doc_or_bytes, *fragments: str) -> list[str]:
    """Assert the submission is refused and every fragment appears in one of the problems."""
    with pytest.raises(SubmissionError) as info:
        validate_submission(doc_or_bytes)
    text = "\n".join(info.value.problems)
    for fragment in fragments:
        assert fragment in text, text
    assert str(info.value).startswith("submission refused")
    return info.value.problems


def test_valid_submission_passes(submission):
    valid = validate_submission(json.dumps(submission).encode())
    assert valid.env_id == "LMEnv/TargetWord-v0" and valid.agent_name == "ppo" and valid.model_name == "tiny-gpt2"
    assert valid.score == submission["aggregate"]["iqm"]
    assert [valid.ci_low, valid.ci_high] == submission["aggregate"]["iqm_ci"]
    assert valid.fingerprint == fingerprint(submission)
    assert validate_submission(submission).fingerprint == valid.fingerprint  # dict, bytes and str alike
    assert validate_submission(json.dumps(submission)).fingerprint == valid.fingerprint


def test_unknown_env(submission):
    submission["env"]["id"] = "LMEnv/NoSuchEnv-v0"
    refused(submission, "'LMEnv/NoSuchEnv-v0' is not registered", "Known ids:", "LMEnv/TargetWord-v0")


def test_unknown_version(submission):
    submission["env"]["id"] = "LMEnv/TargetWord-v1"
    refused(
        submission, "version v1 is not registered", "registered versions of 'LMEnv/TargetWord': LMEnv/TargetWord-v0"
    )


def test_changed_env_spec_must_bump_the_version(submission):
    submission["env"]["spec_hash"] = "0" * 64
    refused(submission, "env.spec_hash does not match", "must bump its version")


def test_changed_dataset_is_refused(submission):
    submission["dataset"]["hash"] = "1" * 64
    refused(submission, "dataset.hash", "bump the env's version")


def test_protocol_must_match_the_registration(submission):
    submission["env"]["protocol"]["min_seeds"] = 1
    refused(submission, "env.protocol.min_seeds is 1", "evaluated with 3")


def test_too_few_seeds(make_submission):
    doc = make_submission(0, scores=[0.5, 0.6])
    refused(doc, "too few seeds", "at least 3", "has 2")


def test_protocol_declared_at_registration_sets_the_seed_minimum():
    task = lm_envs.ListTask.from_pairs(train=[("a", "b")], test=[("c", "d"), ("e", "f")])
    protocol = lm_envs.EvalProtocol(min_seeds=5, num_episodes=1, metric="accuracy", aggregate="mean")
    lm_envs.register("LBTest/Proto-v0", task=task, reward=lambda p, c: 0.0, protocol=protocol)
    try:
        seeds = [{"seed": s, "score": 1.0, "episodes_hash": episodes_hash([{"s": s}])} for s in range(4)]
        doc = build_submission(
            "LBTest/Proto-v0", agent="a", agent_config={}, model="m", tokenizer_hash="t", seeds=seeds, wall_time_s=1
        )
        assert doc["dataset"]["num_problems"] == 1 and doc["aggregate"]["primary"] == "mean"
        refused(doc, "requires at least 5 evaluation seeds")
        seeds.append({"seed": 4, "score": 0.0, "episodes_hash": episodes_hash([{"s": 4}])})
        doc = build_submission(
            "LBTest/Proto-v0", agent="a", agent_config={}, model="m", tokenizer_hash="t", seeds=seeds, wall_time_s=1
        )
        assert validate_submission(doc).score == pytest.approx(0.8)  # ranked by the mean, as declared
    finally:
        del gym.registry["LBTest/Proto-v0"]
    refused(doc, "'LBTest/Proto-v0' is not registered")


def test_wrong_episode_count(submission):
    submission["seeds"][1]["num_episodes"] = 7
    refused(submission, "seeds[1].num_episodes is 7", "evaluates 8 episodes")


def test_repeated_seed(make_submission):
    doc = make_submission(0)
    doc["seeds"][2]["seed"] = 0
    refused(doc, "seeds [0] appear more than once")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("mean", 0.99, "aggregate.mean is 0.99 but the per-seed scores give 0.5"),
        ("iqm", 0.99, "aggregate.iqm is 0.99"),
        ("iqm_ci", [0.0, 1.0], "aggregate.iqm_ci low end is 0.0"),
        ("mean_ci", [0.25, 0.99], "aggregate.mean_ci high end is 0.99"),
        ("n_seeds", 4, "aggregate.n_seeds is 4"),
        ("primary", "mean", "aggregate.primary is 'mean' but the protocol says 'iqm'"),
        ("ci", {"method": "t-test", "confidence": 0.95, "reps": 10, "seed": 0}, "aggregate.ci is"),
    ],
)
def test_tampered_aggregates(submission, field, value, message):
    submission["aggregate"][field] = value
    problems = refused(submission, message)
    if field in ("mean", "iqm"):
        assert "do not edit them" in problems[0]


def test_tampered_seed_score(submission):
    submission["seeds"][0]["score"] = 1.0  # aggregates no longer follow
    refused(submission, "aggregate.mean is 0.5 but the per-seed scores give 0.6666")


def test_tampered_config(submission):
    submission["agent"]["config"]["lr"] = 1.0
    refused(submission, "agent.config_hash does not match agent.config")
    submission["agent"]["config_hash"] = config_hash(submission["agent"]["config"])
    validate_submission(submission)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("seeds"), "at $: 'seeds' is a required property"),
        (lambda d: d["seeds"][0].update(score="high"), "at $.seeds[0].score: 'high' is not of type 'number'"),
        (lambda d: d.update(surprise=1), "Additional properties are not allowed ('surprise' was unexpected)"),
        (lambda d: d["env"].update(spec_hash="xyz"), "at $.env.spec_hash: 'xyz' does not match"),
        (lambda d: d["agent"].update(name=""), "at $.agent.name: '' should be non-empty"),
        (lambda d: d["agent"].update(name="a\x1b[31mred"), "at $.agent.name:"),
        (lambda d: d["model"].update(name="x" * 201), "at $.model.name:"),
        (lambda d: d["seeds"][0].update(seed=-1), "at $.seeds[0].seed: -1 is less than the minimum of 0"),
        (lambda d: d.update(wall_time_s=-1), "at $.wall_time_s"),
        (lambda d: d.update(seeds=[]), "at $.seeds: [] should be non-empty"),
    ],
)
def test_schema_violations(submission, mutate, message):
    mutate(submission)
    refused(submission, message)


def test_schema_version(submission):
    submission["schema_version"] = 7
    refused(submission, "schema_version 7 is not supported; this leaderboard accepts schema_version 1 and 2")
    del submission["schema_version"]
    refused(submission, "schema_version None is not supported")


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got a JSON list"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"x": NaN}', "NaN is not valid JSON"),
        (b'{"x": Infinity}', "Infinity is not valid JSON"),
        (b'{"x": "\xff"}', "not UTF-8"),
        (b'{"x": "\\ud800"}', "unpaired UTF-16 surrogate"),
    ],
)
def test_malformed_documents(raw, message):
    refused(raw, message)


def test_bad_date(submission):
    submission["date"] = "yesterday"
    refused(submission, "date 'yesterday' is not an ISO 8601 date-time")
    submission["date"] = "2025-01-01T00:00:00"
    refused(submission, "has no time zone")
    submission["date"] = "2999-01-01T00:00:00Z"
    refused(submission, "is in the future")


def test_oversized_documents(submission):
    submission["extra"] = {"blob": "x" * MAX_SUBMISSION_BYTES}
    with pytest.raises(SubmissionTooLargeError, match="the limit is 262,144 bytes") as info:
        validate_submission(json.dumps(submission).encode())
    assert info.value.status == 413
    with pytest.raises(SubmissionTooLargeError):
        validate_submission(submission)
    small = json.dumps({"schema_version": 1}).encode()
    with pytest.raises(SubmissionTooLargeError):
        validate_submission(small, max_bytes=10)


def test_many_schema_problems_are_capped(submission):
    submission["seeds"] = [{**submission["seeds"][0], "score": "x"} for _ in range(30)]
    problems = refused(submission)
    assert len(problems) == 21 and problems[-1].startswith("... and")


def test_fingerprint_ignores_names_and_seed_order(make_submission):
    a = make_submission(5)
    b = make_submission(5, agent="renamed", model="other-name")
    b["seeds"] = b["seeds"][::-1]
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(make_submission(6))
