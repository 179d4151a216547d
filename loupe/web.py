"""HTTP routes served beside the Streamlit workbench: set and clear the session cookie.

A Streamlit script cannot set an HttpOnly cookie, so the sign-in page hands the browser a
one-time code and a few lines of JavaScript trade it here for the cookie (``POST``); after a
sign-out the page asks here to drop a cookie whose session has ended (``DELETE``). Both
answer same-origin requests only (the ``Origin`` header must name this host), so another
site can neither plant a session nor clear one; ``DELETE`` never clears a live session's
cookie (a stale tab cannot sign out a newer sign-in of the same browser). ``POST`` reads at
most :data:`MAX_COOKIE_BODY` bytes of body (``{"code": "..."}`` is far smaller): a larger one
is refused with 413 before it is read, whether its ``Content-Length`` announces it or it
streams in chunks (:mod:`api.request_limits`).

The cookie: ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict``, ``Path=/``,
``Secure`` on HTTPS (or with ``LOUPE_COOKIE_SECURE=1`` behind a proxy that terminates it),
expiring with the session. ``serve.py`` mounts these routes with ``st.App``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import db
from api.request_limits import BodyTooLarge, read_capped
from db.auth_sessions import redeem_handoff
from db.base import utcnow
from services.session_cookies import (
    COOKIE_NAME,
    COOKIE_ROUTE,
    COOKIE_SCRIPT_ROUTE,
    cookie_value,
    secure_cookies,
)
from services.sign_in import resume_session

_NO_STORE = {"Cache-Control": "no-store"}
MAX_COOKIE_BODY = 4096
"""Bytes of body ``POST`` reads at most (its JSON holds one short code)."""


def cookie_routes() -> list[BaseRoute]:
    """The routes to pass to ``st.App(..., routes=...)``."""
    return [
        Route(COOKIE_ROUTE, set_session_cookie, methods=["POST"]),
        Route(COOKIE_ROUTE, clear_stale_cookie, methods=["DELETE"]),
        Route(COOKIE_SCRIPT_ROUTE, cookie_script, methods=["GET"]),
    ]


COOKIE_SCRIPT = f"""(() => {{
  const code = document.currentScript && document.currentScript.dataset.code;
  const init = code
    ? {{method: "POST", credentials: "same-origin",
        headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{code}})}}
    : {{method: "DELETE", credentials: "same-origin"}};
  fetch({json.dumps(COOKIE_ROUTE)}, init).catch(() => {{}});
}})();
"""
"""The page's side of the cookie routes: with ``data-code`` on its tag, trade the code for the
cookie (``POST``); without, ask to drop a stale cookie (``DELETE``). Served as a file so that the
workbench's content security policy admits no inline script (:mod:`api.security_headers`)."""


async def cookie_script(_request: Request) -> Response:
    """The script of :data:`COOKIE_SCRIPT` (JavaScript; the same for every page)."""
    return Response(
        COOKIE_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )


async def set_session_cookie(request: Request) -> Response:
    """Trade the JSON body's one-time ``code`` for the session cookie (204), else 400/403/413."""
    if not same_origin(request):
        return _refusal(403, "cross-origin requests are refused")
    try:
        body = json.loads(await read_capped(request, MAX_COOKIE_BODY))
    except BodyTooLarge as err:
        return _refusal(413, f"the body is larger than {err.limit} bytes")
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return _refusal(400, "the body must be JSON")
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code:
        return _refusal(400, "the body needs a code")
    traded = await run_in_threadpool(_trade, db.database_url(), code)
    if traded is None:
        return _refusal(403, "the code is unknown, used or too old; sign in again")
    value, max_age = traded
    response = Response(status_code=204, headers=_NO_STORE)
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure_cookies() or request.url.scheme == "https",
    )
    return response


async def clear_stale_cookie(request: Request) -> Response:
    """Drop the session cookie unless its session is live (204 either way)."""
    if not same_origin(request):
        return _refusal(403, "cross-origin requests are refused")
    cookie = request.cookies.get(COOKIE_NAME)
    response = Response(status_code=204, headers=_NO_STORE)
    if cookie and not await run_in_threadpool(_is_live, db.database_url(), cookie):
        response.delete_cookie(
            COOKIE_NAME,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookies() or request.url.scheme == "https",
        )
    return response


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` names the host it was sent to."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    return bool(origin and host) and urlsplit(origin).netloc == host


def _trade(url: str, code: str) -> tuple[str, int] | None:
    with db.transaction(_session_factory(url)) as session:
        traded = redeem_handoff(session, code)
        if traded is None:
            return None
        auth_session, token = traded
        max_age = int((auth_session.expires_at - utcnow()).total_seconds())
    return cookie_value(token), max(max_age, 1)


def _is_live(url: str, cookie: str) -> bool:
    with db.transaction(_session_factory(url)) as session:
        return resume_session(session, cookie) is not None


@lru_cache(maxsize=4)
def _session_factory(url: str) -> sessionmaker[Session]:
    # The app migrates the database at its first page run; a cookie exists only after that.
    return db.make_session_factory(db.create_engine_for_url(url))


def _refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)
