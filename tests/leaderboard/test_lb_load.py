"""One anonymous client cannot stall the server: paginated pages, a shared cache, bounded renders and
token checks, /healthz that never queues behind them, and a timeout for connections that never finish
their request headers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

import leaderboard.server as server_module
from leaderboard import validate_submission
from leaderboard.server import create_app

ENV_ID = "LMEnv/TargetWord-v0"
N = 120


def _fill(store, make_submission, n):
    for i in range(n):
        agent = "needle-agent" if i % 40 == 7 else f"agent-{i}"
        store.add(validate_submission(make_submission(i, agent=agent)), submitted_by=f"user-{i % 3}")


@pytest.fixture
def app(tmp_path, make_submission):
    app = create_app(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    _fill(app.state.store, make_submission, N)
    return app


def test_pages_are_paginated_and_searchable(app):
    with TestClient(app) as client:
        index = client.get("/").text
        assert index.count('<tr data-entry-id="') == 10  # the top of each populated env, not all 120
        assert f"all {N} →" in index and "Overview" in index
        first = client.get(f"/env/{ENV_ID}").text
        assert first.count('<tr data-entry-id="') == 50 and 'rel="next"' in first and "page 1 of 3" in first
        last = client.get(f"/env/{ENV_ID}", params={"page": 3}).text
        assert last.count('<tr data-entry-id="') == N - 100 and 'rel="prev"' in last and 'rel="next"' not in last
        assert client.get(f"/env/{ENV_ID}", params={"page": 99}).text.count("page 3 of 3") == 1  # clamped
        found = client.get(f"/env/{ENV_ID}", params={"q": "NEEDLE"}).text
        assert found.count('<tr data-entry-id="') == 3 and "Showing" not in found
        none = client.get(f"/env/{ENV_ID}", params={"verified": "1"}).text
        assert "No entries match the filter." in none
        assert client.get("/", params={"q": "x\x00y"}).status_code == 422
        assert client.get(f"/env/{ENV_ID}", params={"page": 0}).status_code == 422
        listing = client.get("/api/v1/submissions", params={"limit": 25, "offset": 100})
        assert [e["rank"] for e in listing.json()] == list(range(101, 121)) and listing.headers[
            "x-total-count"
        ] == "120"
        assert client.get("/api/v1/submissions", params={"limit": 5000}).status_code == 422


def test_pages_are_cached_until_the_next_write(app, make_submission):
    cache = app.state.cache
    cache.ttl = 3600.0  # only writes invalidate here, however slow the machine is today
    with TestClient(app) as client:
        client.get("/")
        renders = cache.renders
        for _ in range(5):
            client.get("/")
        assert cache.renders == renders
        app.state.store.submit(make_submission(N + 1, agent="fresh-agent"))
        assert "fresh-agent" in client.get(f"/env/{ENV_ID}", params={"q": "fresh"}).text
        client.get("/")
        assert cache.renders == renders + 2


def test_concurrent_requests_share_one_render(app):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.get("/") for _ in range(30)))

    before = app.state.cache.renders
    responses = asyncio.run(go())
    assert {r.status_code for r in responses} == {200} and len({r.text for r in responses}) == 1
    assert app.state.cache.renders == before + 1


def test_healthz_answers_while_renders_are_stuck(app, monkeypatch):
    """100 slow page requests used to take every thread of the pool, and /healthz waited behind them."""
    release = threading.Event()
    real = server_module.render_index

    def stuck(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module, "render_index", stuck)
    app.state.cache.queue_timeout = 1.0

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            pages = [asyncio.create_task(client.get("/", params={"q": f"x{i}"})) for i in range(100)]
            await asyncio.sleep(0.5)
            try:
                health = await asyncio.wait_for(client.get("/healthz"), 10)
                api = await asyncio.wait_for(client.get(f"/api/v1/submissions/{1}"), 10)
            finally:
                await asyncio.sleep(1.5)  # past the queue timeout: the waiting requests are told to come back
                release.set()
            return health, api, await asyncio.gather(*pages)

    health, api, pages = asyncio.run(go())
    assert health.status_code == 200 and health.json()["entries"] == N and api.status_code == 200
    statuses = [r.status_code for r in pages]
    assert statuses.count(200) >= 2 and set(statuses) <= {200, 503}
    busy = next(r for r in pages if r.status_code == 503)
    assert busy.headers["retry-after"] == "5" and "busy" in busy.json()["detail"]


def test_token_checks_are_bounded_too(app):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            bad = {"Authorization": "Bearer lmlb_000000000000_" + "x" * 43}
            posts = [client.post("/api/v1/submissions", content=b"{}", headers=bad) for _ in range(20)]
            return await asyncio.gather(*posts, client.get("/healthz"))

    *posts, health = asyncio.run(go())
    assert {r.status_code for r in posts} == {401} and health.status_code == 200


def test_connections_that_never_finish_their_headers_are_closed(tmp_path, live_server_factory):
    from leaderboard.store import LeaderboardStore

    db = f"sqlite:///{tmp_path / 'lb.sqlite'}"
    with LeaderboardStore(db) as store:
        token = store.issue_token("slow")
    server = live_server_factory(db, "--header-timeout", "1")
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
        started = time.monotonic()
        assert slow.recv(100) == b""  # closed by the server (a socket timeout here means it never was)
        waited = time.monotonic() - started
    assert waited < 14
    with socket.create_connection((host, int(port)), timeout=15) as dribble:  # a body that stops arriving
        head = f"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        dribble.sendall(head.encode() + b"Content-Length: 1000\r\n\r\n{")
        assert dribble.recv(100) == b""
    status, body = server.request("GET", "/healthz")
    assert status == 200 and body["ok"] is True
    with socket.create_connection((host, int(port)), timeout=15) as fast:  # a complete request is unaffected
        fast.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := fast.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and json.loads(reply.split(b"\r\n\r\n", 1)[1])["ok"] is True


def test_a_render_whose_requester_leaves_does_not_fail_the_others():
    from leaderboard.server import PageCache

    release = threading.Event()
    calls = []

    def render():
        calls.append(1)
        release.wait(10)
        return "page"

    async def go():
        cache = PageCache(slots=2)
        first = asyncio.create_task(cache.get("k", 0, render))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(cache.get("k", 0, render))
        await asyncio.sleep(0.1)
        first.cancel()  # the client that started the render disconnects
        await asyncio.sleep(0.1)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.wait_for(second, 10), await cache.get("k", 0, render)

    assert asyncio.run(go()) == ("page", "page") and len(calls) == 2
