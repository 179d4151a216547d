"""Security headers on every HTTP response: no sniffing, no framing, a content security policy.

:class:`SecurityHeaders` is a pure ASGI middleware: it never reads or buffers a body, and
websocket and lifespan traffic pass through untouched. On every HTTP response it sets

* ``X-Content-Type-Options: nosniff``: a browser takes a response for what its
  ``Content-Type`` says (a stored image is never run as a script or rendered as HTML);
* ``X-Frame-Options: DENY``, with ``frame-ancestors 'none'`` in every policy below: no site
  can show a page in a frame to trick clicks on it (``X-Frame-Options`` for older browsers);
* ``Content-Security-Policy``: a fixed policy, or one picked by the request path
  (:func:`api_policy`: the API's ``/docs`` and ``/redoc`` need more than its JSON routes).

The values replace any the app set, so every response carries the same ones. A bare 500 that
Starlette's outermost error handler writes for an unhandled exception goes around the
middleware and carries none of them.

:data:`WORKBENCH_POLICY`, the Streamlit workbench (``serve.py``). It was found by running the
real app (Streamlit 1.67) in headless Chromium under ``default-src 'none'`` and listening for
``securitypolicyviolation`` events on every page (sign-in, Inspect with an upload scored,
Review with the desk taking a key, Dashboard's Plotly charts, Models, Line, Users,
sign-out); ``tests/e2e`` fails on any violation, so a page that needs more shows up there.
Each source beyond ``'self'`` is there because a page needs it:

* No inline script but Streamlit's own: ``index.html`` has one
  (``window.prerenderReady = false``), admitted by its hash, read from the installed
  Streamlit when this module loads (:func:`inline_script_hashes`). The pages' one script, the
  sign-in's cookie hand-off, is a file the server serves (``/auth/cookie.js``, loaded with
  ``<script src>`` by ``pages/browser_session.py``), not inline code.
* ``script-src blob:``: Streamlit loads a custom component's JavaScript given as a string
  (the review desk, ``pages/review_desk/desk.js``) as a module from a ``blob:`` URL it makes
  in the page. The desk is drawn in the page itself (a shadow root), not in a frame.
* ``script-src 'wasm-unsafe-eval'``: Streamlit's protobuf bundle compiles a tiny WebAssembly
  module (its 64-bit integer helper) at every page load; it would fall back to plain
  JavaScript, but the blocked attempt is a violation. This admits WebAssembly only, not
  ``eval``: no ``'unsafe-eval'`` is needed (not by Plotly either).
* ``style-src 'unsafe-inline'``: Streamlit's components style themselves with emotion and
  styled-components, which write ``<style>`` elements at run time; Plotly sets ``style``
  attributes; the review desk's CSS goes into a ``<style>`` in its shadow root.
* ``img-src data:``: the review desk's parts, maps and colour bar travel as ``data:`` URLs.
* ``img-src https://fonts.gstatic.com``: the tab's icon, ``page_icon=":material/search:"``
  in ``app.py``, which Streamlit loads from Google's Material Symbols (a local icon file
  would drop this source; without the internet the tab just shows no icon).
* ``font-src data:``: fonts inlined in Streamlit's style sheets.
* ``connect-src 'self'`` admits the websocket (``ws:``, or ``wss:`` behind HTTPS, on the same
  host and port: ``/_stcore/stream``) and the cookie route's ``fetch``.

Everything else stays closed: no frames in or out, no plugins, no ``<base>``, no form
posts, no script, style, font or connection from another host (an injected script cannot
``fetch`` to another host).

:data:`API_POLICY`, the inspection API's JSON and image routes: ``default-src 'none';
frame-ancestors 'none'``, nothing a browser could run, load or frame.

:data:`API_DOCS_POLICY`, the API's ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), checked
the same way with the viewers' npm packages standing in for the CDN: FastAPI's pages load
the viewers from ``cdn.jsdelivr.net`` (admitted by the two packages' paths only, as the CDN
serves any npm package); Swagger UI is started by one inline script, admitted by its hash
(:data:`SWAGGER_UI_SCRIPT_HASH`; ``tests/api/test_security_headers.py`` checks it against the
page the app serves); both viewers style themselves inline; ReDoc loads Google fonts, its
logo from ``cdn.redoc.ly`` and runs its search in a ``blob:`` worker.

Wiring: ``serve.py`` passes ``Middleware(SecurityHeaders, policy=WORKBENCH_POLICY)`` to
``st.App``; the API adds ``app.add_middleware(SecurityHeaders, policy=api_policy)``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The hash of the inline script that starts Swagger UI on FastAPI's ``/docs`` (the API's
#: default settings: ``/openapi.json``, ``/docs/oauth2-redirect``, no Swagger UI parameters).
SWAGGER_UI_SCRIPT_HASH = "'sha256-QOOQu4W1oxGqd2nbXbxiA1Di6OHQOLQD+o+G9oWL8YY='"

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


def inline_script_hashes(page: str) -> list[str]:
    """The CSP sources (``'sha256-...'``) that admit each inline ``<script>`` of ``page``."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(page)
    ]


def _streamlit_index_hashes() -> list[str]:
    """The hashes of the inline scripts of the installed Streamlit's ``index.html``."""
    spec = importlib.util.find_spec("streamlit")  # located, not imported
    for folder in (spec.submodule_search_locations or []) if spec else []:
        index = Path(folder) / "static" / "index.html"
        if index.is_file():
            return inline_script_hashes(index.read_text("utf-8"))
    return []


WORKBENCH_POLICY = "; ".join(
    [
        "default-src 'none'",
        " ".join(["script-src 'self'", *_streamlit_index_hashes(), "'wasm-unsafe-eval' blob:"]),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https://fonts.gstatic.com",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""The Streamlit workbench's policy (the module's docstring says why each source is there)."""

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""The inspection API's JSON and image routes: nothing to run, load or frame."""

_SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
_REDOC = "https://cdn.jsdelivr.net/npm/redoc@2/"
API_DOCS_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_SWAGGER_UI} {_REDOC} {SWAGGER_UI_SCRIPT_HASH}",
        f"style-src {_SWAGGER_UI} https://fonts.googleapis.com 'unsafe-inline'",
        "font-src https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "connect-src 'self'",
        "worker-src blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""The API's ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) pages."""

DOCS_PATHS = frozenset({"/docs", "/redoc"})
"""The API paths served :data:`API_DOCS_POLICY`."""


def api_policy(path: str) -> str:
    """The inspection API's policy for a request path: the docs pages', else the strict one."""
    return API_DOCS_POLICY if path in DOCS_PATHS else API_POLICY


class SecurityHeaders:
    """Set ``nosniff``, ``X-Frame-Options: DENY`` and a content security policy on responses.

    Args:
        app: The ASGI app to wrap.
        policy: The ``Content-Security-Policy`` value, or a function of the request path
            (``scope["path"]``) that returns it. It should carry ``frame-ancestors 'none'``,
            matching ``X-Frame-Options: DENY``.
    """

    def __init__(self, app: ASGIApp, policy: str | Callable[[str], str]) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to an HTTP response's start."""
        if scope["type"] != "http":  # websocket and lifespan: untouched
            await self.app(scope, receive, send)
            return
        policy = self.policy if isinstance(self.policy, str) else self.policy(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Content-Security-Policy"] = policy
            await send(message)

        await self.app(scope, receive, send_with_headers)
