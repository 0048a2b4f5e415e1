"""The leaderboard server under anonymous load, this checkout next to an older commit, on one database.

Fills a SQLite store with ``--entries`` entries of LMEnv/TargetWord-v0, then for each source tree (this
checkout, and ``--compare REF`` extracted with ``git archive``) starts ``python -m leaderboard serve`` on
it and measures: the size of ``/`` and its time to first render and when repeated; then ``--clients``
concurrent anonymous requests for ``/`` (and, the cache-miss worst case, each with its own ``?q=``)
while ``/healthz`` is polled, reporting the healthz latency (median, max), how long the burst took and
the status codes. Prints one JSON object with the trees side by side.

    python bench/bench_leaderboard_server.py [--entries 1700] [--clients 100] [--compare HEAD~6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "LMEnv/TargetWord-v0"


def fill(db: str, n: int) -> None:
    """``n`` valid, distinct entries (stored through the current code's validation)."""
    sys.path.insert(0, str(ROOT))
    import lm_envs  # noqa: F401
    from leaderboard import aggregate_scores, build_submission, episodes_hash, validate_submission
    from leaderboard.store import LeaderboardStore

    base = build_submission(
        ENV_ID, agent="a", agent_config={"lr": 1e-4}, model="m", tokenizer_hash="t" * 8, wall_time_s=1.0,
        seeds=[{"seed": s, "score": 0.5, "episodes_hash": episodes_hash([{"s": s}])} for s in range(3)],
    )  # fmt: skip
    protocol = base["env"]["protocol"]
    with LeaderboardStore(db) as store:
        for i in range(n):
            doc = json.loads(json.dumps(base))
            scores = [((i * 37 + s * 11) % 100) / 100 for s in range(3)]
            for s, seed in enumerate(doc["seeds"]):
                seed["score"] = scores[s]
                seed["episodes_hash"] = episodes_hash([{"i": i, "s": s}])
            doc["aggregate"] = aggregate_scores(
                scores, metric=protocol["metric"], higher_is_better=True, primary=protocol["aggregate"]
            )
            doc["agent"]["name"] = f"agent number {i} with a moderately long descriptive name"
            store.add(validate_submission(doc), submitted_by=f"user-{i % 20}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 120.0) -> tuple[int, int, float]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    except OSError:
        return 0, 0, time.perf_counter() - start
    return status, len(body), time.perf_counter() - start


def burst(base: str, clients: int, path: Callable[[int], str]) -> dict[str, object]:
    """``clients`` concurrent GETs of ``path(i)`` while ``/healthz`` is polled every 50 ms."""
    health: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            health.append(get(base + "/healthz", 120)[2])
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: get(base + path(i)), range(clients)))
    elapsed = time.perf_counter() - start
    done.set()
    poller.join()
    codes: dict[str, int] = {}
    for code, _, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {
        "burst_s": round(elapsed, 2),
        "statuses": codes,
        "healthz_median_s": round(statistics.median(health), 3),
        "healthz_max_s": round(max(health), 3),
        "healthz_polls": len(health),
    }


def measure(src: Path, db: str, clients: int) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "leaderboard", "serve", "--db", db, "--port", str(port), "--log-level", "warning"],
        cwd=src,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while get(base + "/healthz", 2)[0] != 200:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server from {src} did not start")
            time.sleep(0.2)
        status, size, first = get(base + "/")
        repeated = statistics.median(get(base + "/")[2] for _ in range(5))
        out: dict[str, object] = {"index_status": status, "index_bytes": size, "index_first_s": round(first, 3),
                                  "index_repeat_median_s": round(repeated, 4)}  # fmt: skip
        out["same_page"] = burst(base, clients, lambda i: "/")
        out["distinct_pages"] = burst(base, clients, lambda i: f"/?q=agent+number+{i}")
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1700)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--compare", default=None, metavar="REF", help="also run the server of this git ref")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        started = time.perf_counter()
        fill(db, args.entries)
        result: dict[str, object] = {"entries": args.entries, "clients": args.clients,
                                     "fill_s": round(time.perf_counter() - started, 1)}  # fmt: skip
        trees = {"this checkout": ROOT}
        if args.compare:
            old = Path(tmp) / "old"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.compare, "leaderboard", "lm_envs"], cwd=ROOT, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees = {args.compare: old, **trees}
        for name, src in trees.items():
            result[name] = measure(src, db, args.clients)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
