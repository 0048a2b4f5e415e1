"""Leaderboard test fixtures: valid submissions, store URLs (SQLite and PostgreSQL), live servers, a browser.

pytest runs with --import-mode=importlib, so test modules get these helpers as fixtures, not imports.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lm_envs  # noqa: F401  (registers the built-in ids)
from leaderboard import aggregate_scores, build_submission, episodes_hash

ROOT = Path(__file__).resolve().parents[2]
ENV_ID = "LMEnv/TargetWord-v0"
IN_CI = os.environ.get("CI") == "true"

_BASE: dict[str, Any] = {}


def base_submission() -> dict[str, Any]:
    """One valid submission for LMEnv/TargetWord-v0 (built once per session; copy before changing)."""
    if not _BASE:
        seeds = [
            {"seed": s, "score": v, "episodes_hash": episodes_hash([{"seed": s, "score": v}]), "metrics": {"len": 3}}
            for s, v in [(0, 0.5), (1, 0.75), (2, 0.25)]
        ]
        _BASE.update(
            build_submission(
                ENV_ID,
                agent="ppo",
                agent_config={"lr": 1e-4, "clip_eps": 0.2},
                model={"name": "tiny-gpt2", "revision": "abc123"},
                tokenizer_hash="f" * 64,
                seeds=seeds,
                wall_time_s=3.5,
                extra={"env_steps": 1000},
            )
        )
    return copy.deepcopy(_BASE)


def make_submission(
    i: int = 0, scores: list[float] | None = None, *, agent: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """A valid submission distinct from every other ``i`` (own episode hashes), with consistent aggregates."""
    doc = base_submission()
    scores = scores if scores is not None else [0.1 + (i % 17) / 20, 0.2 + (i % 7) / 10, 0.15 + (i % 11) / 15]
    doc["seeds"] = [
        {
            "seed": s,
            "score": float(v),
            "num_episodes": doc["dataset"]["num_problems"],
            "episodes_hash": episodes_hash([{"variant": i, "seed": s, "score": v}]),
        }
        for s, v in enumerate(scores)
    ]
    protocol = doc["env"]["protocol"]
    doc["aggregate"] = aggregate_scores(
        scores, metric=protocol["metric"], higher_is_better=protocol["higher_is_better"], primary=protocol["aggregate"]
    )
    doc["agent"]["name"] = agent if agent is not None else f"agent-{i}"
    doc["model"]["name"] = model if model is not None else f"model-{i}"
    return doc


@pytest.fixture
def submission() -> dict[str, Any]:
    """A fresh copy of one valid submission for LMEnv/TargetWord-v0."""
    return base_submission()


@pytest.fixture(name="make_submission")
def make_submission_fixture() -> Any:
    """``make_submission(i, scores=None, agent=None, model=None)``: distinct valid submissions."""
    return make_submission


# ---------------------------------------------------------------------------------------- store URLs


def postgres_url() -> str:
    """$LM_ENVS_TEST_POSTGRES_URL; skip without it locally, fail without it in CI."""
    url = os.environ.get("LM_ENVS_TEST_POSTGRES_URL")
    if not url:
        message = 'PostgreSQL tests need $LM_ENVS_TEST_POSTGRES_URL (run: eval "$(.ci/services)")'
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return url


def reset_postgres(url: str) -> None:
    """Drop the leaderboard tables so each test starts empty."""
    from sqlalchemy import create_engine

    from leaderboard.store import _Base, resolve_store_url

    engine = create_engine(resolve_store_url(url))
    try:
        _Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(name="postgres_url")
def postgres_url_fixture() -> str:
    """The test PostgreSQL URL, its leaderboard tables dropped (skip locally / fail in CI without one)."""
    url = postgres_url()
    reset_postgres(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or the test PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leaderboard.sqlite'}"
    url = postgres_url()
    reset_postgres(url)
    return url


# ---------------------------------------------------------------------------------------- live servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m leaderboard serve`` in a subprocess on a free loopback port."""

    def __init__(self, db_url: str, log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.db_url = db_url
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self, timeout: float = 60.0) -> LiveServer:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes to it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "leaderboard", "serve", "--db", self.db_url, "--port", str(port), *self.args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None, timeout: float = 60.0
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(db_url: str, *args: str) -> LiveServer:
        server = LiveServer(db_url, tmp_path / f"server-{len(servers)}.log", args).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------------------- browser


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver; skip without them locally, fail without them in CI."""
    chromium = os.environ.get("LM_ENVS_TEST_CHROMIUM", "/usr/bin/chromium")
    driver = os.environ.get("LM_ENVS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
    missing = [p for p in (chromium, driver) if not (Path(p).exists() and os.access(p, os.X_OK))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package")
    if missing:
        message = f"browser tests need {', '.join(missing)} (Debian: chromium chromium-driver; see .ci/services)"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return chromium, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
