"""A real uvicorn server on loopback: 200 concurrent submissions, restarts, and the CLI talking to it."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from leaderboard.cli import main as cli_main
from leaderboard.store import LeaderboardStore

ENV_ID = "LMEnv/TargetWord-v0"
N = 200


def test_200_concurrent_submissions_then_restart(store_url, live_server_factory, make_submission):
    with LeaderboardStore(store_url) as store:
        token = store.issue_token("load-test")
    bodies = [json.dumps(make_submission(i)).encode() for i in range(N)]
    server = live_server_factory(store_url)
    barrier = threading.Barrier(N)

    def submit(i: int) -> tuple[int, object]:
        barrier.wait(timeout=60)  # all 200 clients go out at the same instant
        return server.request("POST", "/api/v1/submissions", bodies[i], token=token, timeout=120)

    with ThreadPoolExecutor(max_workers=N) as pool:
        results = list(pool.map(submit, range(N)))
    statuses = [status for status, _ in results]
    assert statuses == [201] * N, [r for r in results if r[0] != 201][:3]
    ids = {body["id"] for _, body in results}
    assert len(ids) == N

    status, listing = server.request("GET", f"/api/v1/submissions?env={ENV_ID}")
    assert status == 200 and {e["id"] for e in listing} == ids
    assert [e["rank"] for e in listing] == list(range(1, N + 1))
    log = server.log()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]

    server.stop()
    server.start()  # same database, new process
    status, listing = server.request("GET", f"/api/v1/submissions?env={ENV_ID}")
    assert status == 200 and {e["id"] for e in listing} == ids
    some = sorted(ids)[N // 2]
    status, full = server.request("GET", f"/api/v1/submissions/{some}")
    assert status == 200 and full["document"]["agent"]["name"] == full["agent"]
    # Submissions still work after the restart, and duplicates are still refused.
    assert server.request("POST", "/api/v1/submissions", bodies[0], token=token)[0] == 409
    assert server.request("POST", "/api/v1/submissions", json.dumps(make_submission(N)).encode(), token=token)[0] == 201
    with LeaderboardStore(store_url) as store:
        assert store.count(ENV_ID) == N + 1


def test_cli_submits_to_a_server(tmp_path, live_server_factory, make_submission, capsys):
    db = f"sqlite:///{tmp_path / 'served.sqlite'}"
    assert cli_main(["admin", "issue-token", "carol", "--db", db]) == 0
    token = capsys.readouterr().out.strip()
    server = live_server_factory(db)
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(make_submission(1)))

    assert cli_main(["submit", str(path), "--server", server.base, "--token", token]) == 0
    assert "stored entry 1" in capsys.readouterr().out
    assert cli_main(["submit", str(path), "--server", server.base, "--token", token]) == 1
    assert "HTTP 409" in capsys.readouterr().err
    assert cli_main(["submit", str(path), "--server", server.base, "--token", "lmlb_000000000000_" + "x" * 43]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert cli_main(["submit", str(path), "--server", server.base]) == 2  # no token
    status, body = server.request("GET", "/api/v1/submissions")
    assert status == 200 and [e["submitted_by"] for e in body] == ["carol"]
