"""``api.security_headers``: the headers on HTTP answers, websockets untouched, the policies.

The inspection API (:func:`api.app.create_app`, which adds the middleware with
:func:`api.security_headers.api_policy`) is served by a real uvicorn; the workbench's headers
are checked on the served workbench in ``tests/e2e/test_served_security.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served_api import serving
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.app import create_app
from api.security_headers import (
    API_DOCS_POLICY,
    API_POLICY,
    SWAGGER_UI_SCRIPT_HASH,
    WORKBENCH_POLICY,
    SecurityHeaders,
    api_policy,
    inline_script_hashes,
)

THREE = ("x-content-type-options", "x-frame-options", "content-security-policy")


def script_hash(source: str) -> str:
    """The CSP source that admits an inline script with this text."""
    digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
    return f"'sha256-{digest}'"


@pytest.fixture
def api_base(factory: sessionmaker[Session], data_dir: Path) -> Iterator[str]:
    """The inspection API with the security headers, on a free loopback port."""
    app = create_app(factory, data_dir=data_dir, deliver=False, warm_up=False)
    with serving(app) as base:
        yield base


def test_every_api_answer_carries_the_strict_headers(api_base: str) -> None:
    with httpx.Client(base_url=api_base, timeout=30) as client:
        answers = [
            client.get("/"),
            client.get("/openapi.json"),
            client.get("/api/v1/projects/1/inspections/1"),  # no key: 401
            client.get("/no-such-route"),
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 401, 404]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"] == API_POLICY
    assert API_POLICY == "default-src 'none'; frame-ancestors 'none'"


def test_the_docs_pages_get_a_policy_that_admits_their_viewers(api_base: str) -> None:
    with httpx.Client(base_url=api_base, timeout=30) as client:
        swagger, redoc = client.get("/docs"), client.get("/redoc")
    for page in (swagger, redoc):
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == API_DOCS_POLICY
        assert page.headers["x-frame-options"] == "DENY"
        for url in re.findall(r'<script src="([^"]+)"', page.text):
            assert url.startswith("https://cdn.jsdelivr.net/npm/"), url
            package = url.removeprefix("https://cdn.jsdelivr.net/npm/").split("/")[0]
            assert f"https://cdn.jsdelivr.net/npm/{package}/" in API_DOCS_POLICY, url
    inline = re.findall(r"<script>(.*?)</script>", swagger.text, re.S)
    assert [script_hash(source) for source in inline] == [SWAGGER_UI_SCRIPT_HASH]
    assert "frame-ancestors 'none'" in API_DOCS_POLICY


def test_values_the_app_set_are_replaced() -> None:
    def framed(_request: object) -> PlainTextResponse:
        return PlainTextResponse("x", headers={"X-Frame-Options": "ALLOWALL"})

    app = SecurityHeaders(Starlette(routes=[Route("/", framed)]), policy="default-src 'self'")
    answer = TestClient(app).get("/")
    assert answer.headers.get_list("x-frame-options") == ["DENY"]
    assert answer.headers["content-security-policy"] == "default-src 'self'"
    assert answer.text == "x"


def test_websocket_messages_pass_untouched() -> None:
    sent: list[dict] = []
    accept = {"type": "websocket.accept", "subprotocol": None, "headers": [(b"x-a", b"1")]}

    async def endpoint(scope: dict, receive: object, send: object) -> None:
        await send(dict(accept))
        await send({"type": "websocket.send", "text": "hello"})

    async def record(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    middleware = SecurityHeaders(endpoint, policy=lambda path: pytest.fail(f"asked for {path}"))
    asyncio.run(middleware({"type": "websocket", "path": "/_stcore/stream"}, receive, record))
    assert sent == [accept, {"type": "websocket.send", "text": "hello"}]


def test_the_policy_may_depend_on_the_path() -> None:
    assert api_policy("/docs") == api_policy("/redoc") == API_DOCS_POLICY
    assert api_policy("/") == api_policy("/api/v1/inspections") == API_POLICY
    assert api_policy("/docs/oauth2-redirect") == API_POLICY  # no OAuth here: nothing to run


def test_the_workbench_policy_keeps_what_the_pages_do_not_need_closed() -> None:
    directives = dict(part.split(" ", 1) for part in WORKBENCH_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == directives["frame-src"] == "'none'"
    assert directives["object-src"] == directives["base-uri"] == "'none'"
    assert directives["connect-src"] == "'self'"  # the websocket and the cookie route only
    assert "'unsafe-eval'" not in WORKBENCH_POLICY and "*" not in WORKBENCH_POLICY
    # No inline script but Streamlit's own index.html's, by its hash.
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'sha256-" in directives["script-src"]


def test_inline_scripts_are_hashed_and_files_are_not() -> None:
    page = '<script src="/a.js"></script><script>window.x = 1</script>'
    digest = base64.b64encode(hashlib.sha256(b"window.x = 1").digest()).decode()
    assert inline_script_hashes(page) == [f"'sha256-{digest}'"]
