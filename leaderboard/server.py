"""The leaderboard web server: public pages, a JSON API, and token-authenticated submissions.

Routes:

========================================  ===============================================================
``GET /[?q=&verified=1]``                 overview, the top rows of every env, empty envs last
``GET /env/<env id>[?page=&q=&verified=1]``  one env's table (50 rows a page, searchable) and plot
``GET /entry/<id>``                       an entry's page with the full submission record
``GET /api/v1/envs``                      envs with their protocols and entry counts
``GET /api/v1/submissions[?env=<id>]``    ranked entries (summaries; ``verified=1``, ``limit`` <= 1000, ``offset``)
``GET /api/v1/submissions/<id>``          one entry with its full document
``POST /api/v1/submissions``              submit (``Authorization: Bearer <token>``; body: the JSON document)
``GET /api/v1/schema``                    the submission JSON Schema
``GET /api/openapi.json``                 the API's OpenAPI description
``GET /healthz``                          liveness
========================================  ===============================================================

Submissions answer 201 (stored), 401 (no or wrong token), 409 (duplicate), 413 (body over the size
limit, refused before it is read in full), or 422 (invalid: ``{"detail": ..., "problems": [...]}``).

Run it with ``lm-envs leaderboard serve`` (:func:`serve`: uvicorn with a header timeout and a
connection limit), or mount :func:`create_app` in any ASGI server.

One anonymous client cannot stall the server: pages and listings are cached (until the next write
through this server, or a few seconds for writes by other processes), concurrent requests for the
same page share one render, at most a few renders and token checks (scrypt) run at a time, and a
request that would wait too long for one is answered 503 with ``Retry-After``; ``/healthz`` never
waits behind them. Connections that do not finish their request headers in time are closed.

Example:
    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(create_app("sqlite://"))
    >>> client.get("/api/v1/submissions").json()
    []
    >>> client.post("/api/v1/submissions", content=b"{}").status_code
    401
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import h11
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from leaderboard.boards import Board, boards
from leaderboard.envs import leaderboard_env_ids
from leaderboard.pages import (
    CONTENT_SECURITY_POLICY,
    PAGE_SIZE,
    ServerLinks,
    render_entry,
    render_env,
    render_index,
)
from leaderboard.schema import MAX_SUBMISSION_BYTES, SUBMISSION_SCHEMA
from leaderboard.store import LeaderboardStore
from leaderboard.validate import SubmissionError
from lm_envs.core.protocol import get_protocol

__all__ = ["BodySizeLimitMiddleware", "HeaderTimeoutProtocol", "PageCache", "create_app", "serve"]

#: Seconds a cached page stays valid when nothing was written through this server (other processes
#: writing to the same database show up after at most this long).
CACHE_TTL_S = 3.0
#: Renders (pages, listings) running at once; the rest wait, up to ``QUEUE_TIMEOUT_S``.
RENDER_SLOTS = 2
#: Token checks (scrypt: ~50 ms and 16 MiB each) running at once.
AUTH_SLOTS = 4
#: Longest a request waits for a render or token-check slot before it is answered 503.
QUEUE_TIMEOUT_S = 10.0
#: Largest ``limit`` of ``GET /api/v1/submissions``.
MAX_LIST_LIMIT = 1000


class PageCache:
    """Rendered responses by key, shared renders, and a bound on how many renders run at once.

    A cached value is served while the store's write generation is unchanged and it is younger than
    ``ttl`` seconds. Concurrent requests for a missing key wait for one render instead of each
    rendering. At most ``slots`` renders run at once (in the thread pool); a request that cannot get
    a slot within ``queue_timeout`` seconds gets a 503.

    Args:
        ttl: Seconds a value stays valid without writes through this process.
        slots: Renders at once.
        queue_timeout: Longest wait for a slot.
        max_items: Values kept (least recently used dropped first).
    """

    def __init__(
        self,
        ttl: float = CACHE_TTL_S,
        slots: int = RENDER_SLOTS,
        queue_timeout: float = QUEUE_TIMEOUT_S,
        max_items: int = 256,
    ) -> None:
        self.ttl = ttl
        self.queue_timeout = queue_timeout
        self.max_items = max_items
        self._values: collections.OrderedDict[Any, tuple[int, float, Any]] = collections.OrderedDict()
        self._inflight: dict[Any, asyncio.Future[Any]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._slot_count = slots
        #: Renders done (misses), for tests and benchmarks.
        self.renders = 0

    def _fresh(self, key: Any, generation: int) -> Any:
        item = self._values.get(key)
        if item is None or item[0] != generation or time.monotonic() - item[1] > self.ttl:
            return None
        self._values.move_to_end(key)
        return item[2]

    async def get(self, key: Any, generation: int, render: Callable[[], Any]) -> Any:
        """The value of ``key``: cached, or rendered once by ``render`` (run in the thread pool)."""
        while True:
            hit = self._fresh(key, generation)
            if hit is not None:
                return hit
            pending = self._inflight.get(key)
            if pending is None:
                break
            await asyncio.wait({pending})  # raises only if this request itself is cancelled
            if not pending.cancelled():  # else the rendering request went away: render here instead
                return pending.result()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await run_slot(self._semaphore(), self.queue_timeout, render)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # marked as retrieved: the waiters re-raise it
            raise
        finally:
            del self._inflight[key]
        self.renders += 1
        self._values[key] = (generation, time.monotonic(), value)
        self._values.move_to_end(key)
        while len(self._values) > self.max_items:
            self._values.popitem(last=False)
        future.set_result(value)
        return value

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._slot_count)
        return self._slots


class BoardsMemo:
    """Every env's ranked table, computed once per store write generation (and at most ``ttl`` seconds old).

    Filtered and paginated pages all start from the same tables; loading and ranking every entry is
    the expensive part of a render, so it is shared across pages (thread-safe: renders run in threads).
    """

    def __init__(self, store: LeaderboardStore, ttl: float = CACHE_TTL_S) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: tuple[int, float, list[Board]] | None = None

    def __call__(self, env_id: str | None = None) -> list[Board]:
        """The tables (or the one of ``env_id``, empty if it has none), as :func:`leaderboard.boards.boards`."""
        with self._lock:
            generation = self.store.generation
            value = self._value
            if value is None or value[0] != generation or time.monotonic() - value[1] > self.ttl:
                value = (generation, time.monotonic(), boards(self.store))
                self._value = value
        if env_id is None:
            return value[2]
        found = [b for b in value[2] if b.env_id == env_id]
        return found or boards(self.store, env_id)  # e.g. a retired id just submitted through another process


async def run_slot(
    slots: asyncio.Semaphore, timeout: float, func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Run ``func`` in the thread pool once one of ``slots`` is free; 503 if none frees up within ``timeout``."""
    try:
        await asyncio.wait_for(slots.acquire(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise HTTPException(503, "the server is busy; retry in a few seconds.", headers={"Retry-After": "5"}) from None
    try:
        return await run_in_threadpool(func, *args, **kwargs)
    finally:
        slots.release()


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that stall before their request is read.

    uvicorn times out idle keep-alive connections, but not one that sends a few bytes of a request
    and then nothing: each such connection would be held open for good. Every ``header_timeout / 2``
    seconds this checks the connection: still waiting for the same request's head the second time in
    a row (after between ``header_timeout / 2`` and ``header_timeout``), or inside a request body with
    no new bytes since the last check, and it is closed.
    """

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_state: tuple[Any, int, int] | None = None
        self._received = 0
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout / 2, self._check_head)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)

    def _check_head(self) -> None:
        if self.transport.is_closing():
            return
        their = self.conn.their_state
        state = (their, id(self.cycle), self._received)
        stalled_head = their is h11.IDLE and state[:2] == (self._head_state or (None, None, None))[:2]
        stalled_body = their is h11.SEND_BODY and state == self._head_state
        if stalled_head or stalled_body:
            self.transport.close()
            return
        self._head_state = state
        self._head_timer = self.loop.call_later(self.header_timeout / 2, self._check_head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


def serve(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout: float = 10.0,
    limit_concurrency: int = 512,
    log_level: str = "info",
) -> None:
    """Run ``app`` under uvicorn with a request-head timeout and a bound on concurrent connections.

    Args:
        app: The app (:func:`create_app`).
        host: Interface to listen on.
        port: Port.
        header_timeout: Seconds a connection may take to send a request's head (see :class:`HeaderTimeoutProtocol`).
        limit_concurrency: Connections and tasks at once; more are answered 503.
        log_level: uvicorn's log level.
    """
    import uvicorn

    if not header_timeout > 0:
        raise ValueError(f"header_timeout must be > 0 seconds, got {header_timeout!r}.")
    protocol = type("LeaderboardHTTP", (HeaderTimeoutProtocol,), {"header_timeout": float(header_timeout)})
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=5,
        limit_concurrency=limit_concurrency,
    )


_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, before they are read in full.

    A declared ``Content-Length`` over the limit is refused at once, without reading the body; a
    chunked body is counted as it arrives and refused as soon as it passes the limit.

    Args:
        app: The ASGI app to protect.
        max_bytes: The largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await _send_json(send, 400, {"detail": "invalid Content-Length header."})
                    return
                if int(value) > self.max_bytes:
                    await _send_json(send, 413, {"detail": _too_large(self.max_bytes)})
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413, detail=_too_large(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def _too_large(max_bytes: int) -> str:
    return f"request body too large: the limit is {max_bytes:,} bytes."


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_app(
    store_url: str | os.PathLike[str] | None = None, *, max_body_bytes: int = MAX_SUBMISSION_BYTES
) -> FastAPI:
    """Build the leaderboard ASGI app over the store at ``store_url``.

    Args:
        store_url: A SQLAlchemy URL or SQLite file path; ``None`` for the default store
            (``$LM_ENVS_LEADERBOARD_URL`` or the SQLite file in the lm-envs cache).
        max_body_bytes: Largest accepted request body (and submission document).

    Returns:
        The FastAPI app; ``app.state.store`` is its :class:`~leaderboard.store.LeaderboardStore`.
    """
    store = LeaderboardStore(store_url)
    links = ServerLinks()
    tables = BoardsMemo(store)
    cache = PageCache()  # HTML pages
    api_cache = PageCache(slots=RENDER_SLOTS * 2)  # JSON answers: a stuck page render never holds them up
    auth_slots: list[asyncio.Semaphore] = []

    async def authenticate(token: str) -> str | None:
        if not auth_slots:
            auth_slots.append(asyncio.Semaphore(AUTH_SLOTS))
        return await run_slot(auth_slots[0], QUEUE_TIMEOUT_S, store.authenticate, token)

    def html(value: str) -> HTMLResponse:
        return HTMLResponse(value)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="lm-envs leaderboard",
        description="Scores of agents on lm-envs environments, with per-seed results and confidence intervals.",
        docs_url=None,  # Swagger UI loads its assets from a CDN, which the pages' CSP (rightly) blocks
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.store = store
    app.state.cache = cache
    app.state.api_cache = api_cache
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY + "; frame-ancestors 'none'"
        return response

    @app.exception_handler(SubmissionError)
    async def submission_error(_request: Request, exc: SubmissionError) -> JSONResponse:
        body: dict[str, Any] = {"detail": "submission refused", "problems": exc.problems}
        existing = getattr(exc, "existing_id", None)
        if existing is not None:
            body["existing_id"] = existing
        return JSONResponse(body, status_code=exc.status)

    # ------------------------------------------------------------------ pages

    query_param = Query(None, max_length=200, description="only rows whose agent, model or submitter contains this")

    def _filters(q: str | None, verified: str | None) -> tuple[str | None, bool]:
        q = (q or "").strip() or None
        if q is not None and any(ord(c) < 32 or ord(c) == 127 for c in q):
            raise HTTPException(422, "the search text must be printable.")
        return q, verified not in (None, "", "0", "false")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index_page(q: str | None = query_param, verified: str | None = None) -> HTMLResponse:
        query, verified_only = _filters(q, verified)
        page = await cache.get(
            ("index", query, verified_only),
            store.generation,
            lambda: render_index(tables(), links, query=query, verified_only=verified_only),
        )
        return html(page)

    @app.get("/env/{env_id:path}", response_class=HTMLResponse, include_in_schema=False)
    async def env_page(
        env_id: str, page: int = Query(1, ge=1, le=10**6), q: str | None = query_param, verified: str | None = None
    ) -> HTMLResponse:
        query, verified_only = _filters(q, verified)

        def render() -> str | None:
            found = tables(env_id)
            if not found:
                return None
            return render_env(found[0], links, page=page, query=query, verified_only=verified_only, page_size=PAGE_SIZE)

        text = await cache.get(("env", env_id, page, query, verified_only), store.generation, render)
        if text is None:
            raise HTTPException(404, f"no leaderboard for env {env_id!r}.")
        return html(text)

    @app.get("/entry/{entry_id}", response_class=HTMLResponse, include_in_schema=False)
    async def entry_page(entry_id: int) -> HTMLResponse:
        def render() -> str | None:
            try:
                entry = store.get(entry_id)
            except KeyError:
                return None
            return render_entry(entry, links, verification=store.verification_detail(entry.id))

        text = await cache.get(("entry", entry_id), store.generation, render)
        if text is None:
            raise HTTPException(404, f"no entry {entry_id}.")
        return html(text)

    # ------------------------------------------------------------------ JSON API

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # Never queued behind page renders or token checks: one indexed COUNT in the thread pool.
        return {"ok": True, "entries": await run_in_threadpool(store.count)}

    @app.get("/api/v1/schema")
    def schema() -> dict[str, Any]:
        return SUBMISSION_SCHEMA

    @app.get("/api/v1/envs")
    def envs() -> list[dict[str, Any]]:
        registered = set(leaderboard_env_ids())
        return [
            {
                "env_id": b.env_id,
                "registered": b.env_id in registered,
                "protocol": get_protocol(b.env_id).to_dict() if b.env_id in registered else None,
                "entries": len(b.entries),
                "baselines": [
                    {k: v for k, v in x.summary().items() if k not in ("detail", "env_id")} for x in b.usable_baselines
                ],
            }
            for b in boards(store)
        ]

    @app.get("/api/v1/submissions")
    async def list_submissions(
        env: str | None = None,
        verified: str | None = None,
        limit: int = Query(MAX_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT),
        offset: int = Query(0, ge=0, le=2**31),
    ) -> Response:
        _, verified_only = _filters(None, verified)

        def render() -> tuple[str, int]:
            out = []
            rank_by_env: dict[str, int] = {}
            format_only = {b.env_id: b for b in store.baselines(env) if b.kind == "format-only"}
            for e in store.entries(env):
                rank_by_env[e.env_id] = rank_by_env.get(e.env_id, 0) + 1
                if verified_only and not e.verified:
                    continue
                baseline = format_only.get(e.env_id)
                below = baseline is not None and baseline.not_beaten_by(e)
                out.append(
                    {"rank": rank_by_env[e.env_id], **e.summary(), "below_format_only": below, "url": links.entry(e.id)}
                )
            return json.dumps(out[offset : offset + limit], ensure_ascii=False), len(out)

        body, total = await api_cache.get(("list", env, verified_only, limit, offset), store.generation, render)
        return Response(body, media_type="application/json", headers={"X-Total-Count": str(total)})

    @app.get("/api/v1/submissions/{entry_id}")
    async def get_submission(entry_id: int) -> Response:
        def render() -> str | None:
            try:
                entry = store.get(entry_id)
            except KeyError:
                return None
            return json.dumps(
                {**entry.summary(), "url": links.entry(entry.id), "document": entry.document}, ensure_ascii=False
            )

        body = await api_cache.get(("entry-json", entry_id), store.generation, render)
        if body is None:
            raise HTTPException(404, f"no entry {entry_id}.")
        return Response(body, media_type="application/json")

    @app.post("/api/v1/submissions", status_code=201)
    async def post_submission(request: Request) -> JSONResponse:
        token = _bearer(request)
        name = await authenticate(token) if token else None
        if name is None:
            return JSONResponse(
                {"detail": "a valid API token is required: send 'Authorization: Bearer <token>' (ask an admin)."},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await request.body()
        entry = await run_in_threadpool(store.submit, body, submitted_by=name, max_bytes=max_body_bytes)
        url = links.entry(entry.id)
        return JSONResponse(
            {"id": entry.id, "url": url, "api_url": links.api_entry(entry.id), **entry.summary()},
            status_code=201,
            headers={"Location": url},
        )

    return app
