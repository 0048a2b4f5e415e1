"""The leaderboard web server: public pages, a JSON API, and token-authenticated submissions.

Routes:

========================================  ===============================================================
``GET /``                                 every env's table and score plot
``GET /env/<env id>``                     one env's table and plot
``GET /entry/<id>``                       an entry's page with the full submission record
``GET /api/v1/envs``                      envs with their protocols and entry counts
``GET /api/v1/submissions[?env=<id>]``    ranked entries (summaries)
``GET /api/v1/submissions/<id>``          one entry with its full document
``POST /api/v1/submissions``              submit (``Authorization: Bearer <token>``; body: the JSON document)
``GET /api/v1/schema``                    the submission JSON Schema
``GET /api/openapi.json``                 the API's OpenAPI description
``GET /healthz``                          liveness
========================================  ===============================================================

Submissions answer 201 (stored), 401 (no or wrong token), 409 (duplicate), 413 (body over the size
limit, refused before it is read in full), or 422 (invalid: ``{"detail": ..., "problems": [...]}``).

Run it with ``lm-envs leaderboard serve`` (uvicorn), or mount :func:`create_app` in any ASGI server.

Example:
    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(create_app("sqlite://"))
    >>> client.get("/api/v1/submissions").json()
    []
    >>> client.post("/api/v1/submissions", content=b"{}").status_code
    401
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leaderboard.boards import boards
from leaderboard.envs import leaderboard_env_ids
from leaderboard.pages import CONTENT_SECURITY_POLICY, ServerLinks, render_entry, render_env, render_index
from leaderboard.schema import MAX_SUBMISSION_BYTES, SUBMISSION_SCHEMA
from leaderboard.store import LeaderboardStore
from leaderboard.validate import SubmissionError
from lm_envs.core.protocol import get_protocol

__all__ = ["BodySizeLimitMiddleware", "create_app"]

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

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(render_index(boards(store), links))

    @app.get("/env/{env_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def env_page(env_id: str) -> HTMLResponse:
        found = boards(store, env_id)
        if not found:
            raise HTTPException(404, f"no leaderboard for env {env_id!r}.")
        return HTMLResponse(render_env(found[0], links))

    @app.get("/entry/{entry_id}", response_class=HTMLResponse, include_in_schema=False)
    def entry_page(entry_id: int) -> HTMLResponse:
        try:
            entry = store.get(entry_id)
        except KeyError:
            raise HTTPException(404, f"no entry {entry_id}.") from None
        return HTMLResponse(render_entry(entry, links))

    # ------------------------------------------------------------------ JSON API

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "entries": store.count()}

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
            }
            for b in boards(store)
        ]

    @app.get("/api/v1/submissions")
    def list_submissions(env: str | None = None) -> list[dict[str, Any]]:
        out = []
        rank_by_env: dict[str, int] = {}
        for e in store.entries(env):
            rank_by_env[e.env_id] = rank_by_env.get(e.env_id, 0) + 1
            out.append({"rank": rank_by_env[e.env_id], **e.summary(), "url": links.entry(e.id)})
        return out

    @app.get("/api/v1/submissions/{entry_id}")
    def get_submission(entry_id: int) -> dict[str, Any]:
        try:
            entry = store.get(entry_id)
        except KeyError:
            raise HTTPException(404, f"no entry {entry_id}.") from None
        return {**entry.summary(), "url": links.entry(entry.id), "document": entry.document}

    @app.post("/api/v1/submissions", status_code=201)
    async def post_submission(request: Request) -> JSONResponse:
        token = _bearer(request)
        name = await run_in_threadpool(store.authenticate, token) if token else None
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
