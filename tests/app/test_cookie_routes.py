"""The session-cookie routes of ``loupe.web``, called as the ASGI server would call them.

Over real HTTP, against the served workbench: ``tests/e2e/test_served_security.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

import db
from db.auth_sessions import end_session, start_session
from loupe.web import MAX_COOKIE_BODY, clear_stale_cookie, set_session_cookie
from services.session_cookies import token_from_cookie

HOST = "127.0.0.1:8501"
SAME_ORIGIN = f"http://{HOST}"
HUGE = 150 * 1024 * 1024  # the body of the finding: 150 MB
CHUNK = 1024


@pytest.fixture
def factory(app_env: Path) -> sessionmaker[Session]:
    """The migrated database of the app's environment, with the user ``ines``."""
    factory = db.make_session_factory(db.init_db())
    with factory() as session, session.begin():
        db.create_user(session, "ines", "ines-password", "inspector")
    return factory


def handoff_code(factory: sessionmaker[Session]) -> tuple[int, str]:
    """A fresh session of ``ines``: its id and one-time code."""
    with factory() as session, session.begin():
        user = session.query(db.User).filter_by(name="ines").one()
        row, code = start_session(session, user, lifetime=timedelta(hours=12), client="local")
        return row.id, code


def call(
    endpoint: Callable,
    method: str,
    *,
    body: object = None,
    origin: str | None = SAME_ORIGIN,
    cookie: str | None = None,
    raw: bytes | None = None,
    content_length: int | None = None,
    receive: Callable | None = None,
) -> Response:
    """Run ``endpoint`` on one HTTP request and return its response.

    ``raw`` is the body as sent (else ``body`` as JSON); ``content_length`` adds that header;
    ``receive`` replaces the ASGI ``receive`` that hands over the whole body at once.
    """
    headers = [(b"host", HOST.encode()), (b"content-type", b"application/json")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", f"loupe_session={cookie}".encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    payload = raw if raw is not None else b"" if body is None else json.dumps(body).encode()

    async def whole_body() -> dict:
        return {"type": "http.request", "body": payload, "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "path": "/auth/cookie",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8501),
    }
    return asyncio.run(endpoint(Request(scope, receive or whole_body)))


def set_cookie_header(response: Response) -> str:
    """The response's Set-Cookie header, or an empty string."""
    return response.headers.get("set-cookie", "")


def cookie_in(response: Response) -> str:
    """The cookie value a Set-Cookie header carries."""
    return set_cookie_header(response).split(";")[0].split("=", 1)[1].strip('"')


def test_a_code_is_traded_once_for_an_http_only_strict_cookie(
    factory: sessionmaker[Session],
) -> None:
    _, code = handoff_code(factory)
    response = call(set_session_cookie, "POST", body={"code": code})

    assert response.status_code == 204
    header = set_cookie_header(response).lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header
    max_age = int(re.search(r"max-age=(\d+)", header).group(1))
    assert 12 * 3600 - 60 < max_age <= 12 * 3600  # the session's remaining lifetime
    assert token_from_cookie(cookie_in(response), 3600) is not None
    assert response.headers["cache-control"] == "no-store"

    again = call(set_session_cookie, "POST", body={"code": code})
    assert again.status_code == 403 and not set_cookie_header(again)


@pytest.mark.parametrize(
    ("origin", "body", "status"),
    [
        ("https://evil.example", {"code": "x"}, 403),
        (None, {"code": "x"}, 403),
        (SAME_ORIGIN, ["x"], 400),
        (SAME_ORIGIN, {"code": ""}, 400),
        (SAME_ORIGIN, {"code": "never-issued"}, 403),
    ],
)
def test_bad_requests_get_no_cookie(
    factory: sessionmaker[Session], origin: str | None, body: object, status: int
) -> None:
    response = call(set_session_cookie, "POST", body=body, origin=origin)
    assert response.status_code == status and not set_cookie_header(response)


def refusal(response: Response) -> str:
    """The ``error`` of a JSON refusal."""
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return json.loads(response.body)["error"]


def test_a_body_nested_too_deeply_to_parse_is_refused_as_not_json(
    factory: sessionmaker[Session],
) -> None:
    response = call(set_session_cookie, "POST", raw=b"[" * 2000 + b"]" * 2000)
    assert response.status_code == 400 and refusal(response) == "the body must be JSON"


def test_a_code_padded_to_the_limit_is_taken_and_one_byte_more_is_not(
    factory: sessionmaker[Session],
) -> None:
    _, code = handoff_code(factory)
    body = json.dumps({"code": code}).encode()
    at_limit = body + b" " * (MAX_COOKIE_BODY - len(body))

    too_large = call(set_session_cookie, "POST", raw=at_limit + b" ")
    assert too_large.status_code == 413 and not set_cookie_header(too_large)
    assert refusal(too_large) == f"the body is larger than {MAX_COOKIE_BODY} bytes"
    assert call(set_session_cookie, "POST", raw=at_limit).status_code == 204  # code unspent


def test_an_announced_large_body_is_refused_unread(factory: sessionmaker[Session]) -> None:
    _, code = handoff_code(factory)
    pulled = []

    async def receive() -> dict:
        pulled.append(1)
        return {"type": "http.request", "body": json.dumps({"code": code}).encode()}

    huge = call(set_session_cookie, "POST", content_length=HUGE, receive=receive)
    assert huge.status_code == 413 and not set_cookie_header(huge) and pulled == []
    assert call(set_session_cookie, "POST", body={"code": code}).status_code == 204


def test_a_large_streamed_body_is_dropped_as_soon_as_it_passes_the_limit(
    factory: sessionmaker[Session],
) -> None:
    chunk = b" " * CHUNK
    pulled = 0

    async def receive() -> dict:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < HUGE}

    response = call(set_session_cookie, "POST", receive=receive)
    assert response.status_code == 413 and not set_cookie_header(response)
    assert pulled <= MAX_COOKIE_BODY + CHUNK, f"{pulled} bytes were pulled"


def test_a_cross_origin_large_body_is_refused_unread(factory: sessionmaker[Session]) -> None:
    pulled = []

    async def receive() -> dict:
        pulled.append(1)
        return {"type": "http.request", "body": b" " * CHUNK, "more_body": True}

    response = call(set_session_cookie, "POST", origin="http://x", receive=receive)
    assert response.status_code == 403 and pulled == []


def test_a_cross_origin_code_is_not_spent(factory: sessionmaker[Session]) -> None:
    _, code = handoff_code(factory)
    assert call(set_session_cookie, "POST", body={"code": code}, origin="http://x").status_code
    assert call(set_session_cookie, "POST", body={"code": code}).status_code == 204


def test_only_a_stale_cookie_is_dropped(factory: sessionmaker[Session]) -> None:
    session_id, code = handoff_code(factory)
    cookie = cookie_in(call(set_session_cookie, "POST", body={"code": code}))

    kept = call(clear_stale_cookie, "DELETE", cookie=cookie)
    assert kept.status_code == 204 and not set_cookie_header(kept)
    assert call(clear_stale_cookie, "DELETE", cookie=cookie, origin=None).status_code == 403

    with factory() as session, session.begin():
        end_session(session, session_id, "signed_out")
    dropped = call(clear_stale_cookie, "DELETE", cookie=cookie)
    assert dropped.status_code == 204
    assert 'loupe_session=""' in set_cookie_header(dropped)
    assert "max-age=0" in set_cookie_header(dropped).lower()
