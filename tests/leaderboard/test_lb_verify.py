"""Verified entries: a submission names its checkpoints, `lm-envs leaderboard verify` re-runs the protocol on
them with the agents' evaluation code and marks the entry verified, or flags the mismatch."""

from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("torch")

from leaderboard import build_submission  # noqa: E402
from leaderboard.cli import main  # noqa: E402
from leaderboard.server import create_app  # noqa: E402
from leaderboard.store import LeaderboardStore  # noqa: E402
from leaderboard.verify import checkpoint_sha256, evaluate_checkpoint, write_checkpoint  # noqa: E402

ENV_ID = "LMEnv/TargetWord-v0"
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model saved as a publishable checkpoint, and its evaluation per seed (in this process)."""
    import lm_envs
    from agents.evaluate import EvalConfig, evaluate
    from agents.policy.models import build_default_model
    from lm_envs.core.tokenizer import load_codec

    codec = load_codec(None)
    model = build_default_model(codec, seed=0).eval()
    protocol = lm_envs.get_protocol(ENV_ID)
    cfg = EvalConfig(num_episodes=protocol.num_episodes, split=protocol.split)
    metrics = {s: evaluate(model, ENV_ID, cfg, seed=s) for s in SEEDS}
    block = write_checkpoint(model, codec, tmp_path_factory.mktemp("ckpt") / "tiny")
    return block, metrics


def submission(block, metrics, *, agent="tiny", shift=0.0, checkpoint=True):
    seeds = [
        {
            "seed": s,
            "score": metrics[s]["mean_return"] + (shift if s == 0 else 0.0),
            "episodes_hash": metrics[s]["episodes_hash"] if not shift else "0" * 63 + str(s),
            **({"checkpoint": block} if checkpoint else {}),
        }
        for s in SEEDS
    ]
    return build_submission(
        ENV_ID, agent=agent, agent_config={"agent": agent}, model="tiny", tokenizer_hash="t", seeds=seeds,
        wall_time_s=1,
    )  # fmt: skip


def test_verify_marks_reproduced_entries_and_flags_the_rest(tmp_path, checkpoint, capsys):
    block, metrics = checkpoint
    db = f"sqlite:///{tmp_path / 'lb.sqlite'}"
    with LeaderboardStore(db) as store:
        honest = store.submit(submission(block, metrics, agent="honest"))
        inflated = store.submit(submission(block, metrics, agent="inflated", shift=0.5))
        wrong_hash = store.submit(submission({**block, "sha256": "0" * 64}, metrics, agent="wrong-hash"))
        bare = store.submit(submission(block, metrics, agent="bare", checkpoint=False))
    assert honest.document["seeds"][0]["checkpoint"] == block

    assert main(["verify", str(honest.id), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "seed 0: submitted" in out and "reproduced" in out and out.strip().endswith("verified")
    assert main(["verify", str(inflated.id), "--db", db, "--json"]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "mismatch" and record["tolerance"] == 0.01
    assert [r["result"] == "reproduced" for r in record["seeds"]] == [False, True, True]
    assert record["seeds"][0]["difference"] == pytest.approx(0.5) and record["seeds"][0]["episodes_hash_match"] is False
    assert main(["verify", str(wrong_hash.id), "--db", db, "--json"]) == 1
    assert "has sha256" in json.loads(capsys.readouterr().out)["seeds"][0]["result"]
    assert main(["verify", str(bare.id), "--db", db]) == 2
    assert "names no checkpoint" in capsys.readouterr().err

    app = create_app(db)
    with TestClient(app) as client:
        listing = {e["agent"]: e["verification"] for e in client.get("/api/v1/submissions").json()}
        assert listing == {
            "honest": "verified",
            "inflated": "mismatch",
            "wrong-hash": "mismatch",
            "bare": "self-reported",
        }
        assert [e["agent"] for e in client.get("/api/v1/submissions", params={"verified": 1}).json()] == ["honest"]
        page = client.get(f"/env/{ENV_ID}", params={"verified": "1"}).text
        assert page.count('<tr data-entry-id="') == 1 and 'class="badge verified"' in page
        entry_page = client.get(f"/entry/{inflated.id}").text
        assert "Verification" in entry_page and "differs by more than the tolerance" in entry_page
    events = app.state.store.audit_log()
    assert [e.action for e in events[:3]] == ["verify"] * 3 and events[-1].reason == "verified"


def test_checkpoints_travel_as_archives_and_urls(tmp_path, checkpoint):
    block, metrics = checkpoint
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(block["uri"], arcname="tiny")
    packed = {"uri": archive.as_uri(), "sha256": checkpoint_sha256(archive)}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = {"uri": f"http://127.0.0.1:{server.server_address[1]}/tiny.tar.gz", "sha256": packed["sha256"]}
        db = f"sqlite:///{tmp_path / 'lb.sqlite'}"
        with LeaderboardStore(db) as store:
            ids = [store.submit(submission(b, metrics, agent=a)).id for a, b in (("file", packed), ("http", url))]
        for entry_id in ids:
            assert main(["verify", str(entry_id), "--db", db, "--workdir", str(tmp_path / "work")]) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_build_submission_hashes_a_checkpoint_path(checkpoint):
    block, metrics = checkpoint
    seeds = [{"seed": s, "score": 0.0, "episodes_hash": "a" * 64, "checkpoint": block["uri"]} for s in SEEDS]
    doc = build_submission(
        ENV_ID, agent="a", agent_config={}, model="m", tokenizer_hash="t", seeds=seeds, wall_time_s=1
    )
    assert doc["seeds"][0]["checkpoint"] == block
    assert evaluate_checkpoint(block["uri"], ENV_ID, 0)["episodes_hash"] == metrics[0]["episodes_hash"]
