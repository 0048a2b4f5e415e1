"""The web app in process: authentication, refusals, size limits, escaping, security headers, the JSON API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from leaderboard.server import create_app

ENV_ID = "LMEnv/TargetWord-v0"
SCRIPT = "<script>alert('xss')</script>"
SQL = "x'); DROP TABLE lb_submissions;--"


@pytest.fixture
def app(tmp_path):
    return create_app(f"sqlite:///{tmp_path / 'lb.sqlite'}")


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def token(app):
    return app.state.store.issue_token("alice")


def post(client, doc, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return client.post("/api/v1/submissions", content=body, headers=headers, **kwargs)


def test_submit_and_read_back(client, token, make_submission):
    r = post(client, make_submission(1), token)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["submitted_by"] == "alice" and r.headers["location"] == body["url"] == f"/entry/{body['id']}"
    listing = client.get("/api/v1/submissions", params={"env": ENV_ID}).json()
    assert [e["id"] for e in listing] == [body["id"]] and listing[0]["rank"] == 1
    full = client.get(f"/api/v1/submissions/{body['id']}").json()
    assert full["document"] == make_submission(1)
    envs = {e["env_id"]: e for e in client.get("/api/v1/envs").json()}
    assert envs[ENV_ID]["entries"] == 1 and envs[ENV_ID]["protocol"]["min_seeds"] == 3
    assert client.get("/api/v1/schema").json()["properties"]["schema_version"] == {"const": 2}
    assert client.get("/healthz").json() == {"ok": True, "entries": 1}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer lmlb_nope"}],
)
def test_unauthenticated_submissions_are_refused(client, submission, headers):
    r = client.post("/api/v1/submissions", content=json.dumps(submission), headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "API token" in r.json()["detail"]
    assert client.get("/api/v1/submissions").json() == []


def test_wrong_and_revoked_tokens_are_refused(app, client, token, make_submission):
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert post(client, make_submission(1), wrong).status_code == 401
    app.state.store.revoke_token("alice")
    assert post(client, make_submission(1), token).status_code == 401
    assert client.get("/api/v1/submissions").json() == []


def test_tampered_aggregates_are_refused(client, token, submission):
    submission["aggregate"]["iqm"] = 0.99
    r = post(client, submission, token)
    assert r.status_code == 422
    assert any("aggregate.iqm is 0.99" in p for p in r.json()["problems"])


def test_refusals_name_the_problem(client, token, submission, make_submission):
    assert post(client, b"{oops", token).json()["problems"][0].startswith("the document is not valid JSON")
    submission["env"]["id"] = "LMEnv/TargetWord-v9"
    assert "version v9 is not registered" in post(client, submission, token).json()["problems"][0]
    assert post(client, make_submission(2), token).status_code == 201
    dup = post(client, make_submission(2), token)
    assert dup.status_code == 409 and "duplicate" in dup.json()["problems"][0] and dup.json()["existing_id"]


def test_request_size_limits(client, token, submission):
    big = b"x" * (256 * 1024 + 1)
    r = post(client, big, token)
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    # Declared length over the limit: refused before the body is read, even without a token.
    r = client.post("/api/v1/submissions", content=big)
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(300):
            yield b"x" * 1024

    r = client.post("/api/v1/submissions", content=chunks(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 413
    # Under the HTTP limit but over the document limit of a stricter app.
    submission["extra"] = {"pad": "y" * 2000}
    small_app = create_app("sqlite://", max_body_bytes=1000)
    small_token = small_app.state.store.issue_token("bob")
    with TestClient(small_app) as small:
        assert post(small, submission, small_token).status_code == 413


def test_pages_escape_injected_names(client, token, make_submission):
    r = post(client, make_submission(3, agent=SCRIPT, model=SQL), token)
    entry_id = r.json()["id"]
    for path in ("/", f"/env/{ENV_ID}", f"/entry/{entry_id}"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert SCRIPT not in html and "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in html
        assert "x&#39;); DROP TABLE lb_submissions;--" in html
        assert html.count("<script>") == 1  # only the page's own sorter
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/v1/submissions").json()[0]["agent"] == SCRIPT


def test_pages(client, token, make_submission):
    for i in range(3):
        post(client, make_submission(i), token)
    index = client.get("/").text
    assert "LMEnv/Math-v0" in index and "Envs without submissions yet" in index  # registered envs, no entries
    env_page = client.get(f"/env/{ENV_ID}").text
    assert env_page.count('<tr data-entry-id="') == 3 and env_page.count('<g class="entry"') == 3
    assert client.get("/env/LMEnv/Nope-v0").status_code == 404
    assert client.get("/entry/12345").status_code == 404
    assert client.get("/api/v1/submissions/12345").status_code == 404
    assert client.get("/entry/not-a-number").status_code == 422
