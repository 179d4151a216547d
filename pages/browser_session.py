"""The browser side of a signed-in session: its cookie, read here and set through HTTP routes.

Not a page. A Streamlit script can read cookies (``st.context.cookies``, as sent when the tab
connected) but cannot set an HttpOnly one, so after a sign-in the page loads a few lines of
JavaScript (``/auth/cookie.js``, served by :mod:`loupe.web`) that trade the session's
one-time hand-off code for the cookie (``POST /auth/cookie``); on the sign-in page a cookie
whose session has ended is dropped the same way (``DELETE``, which never drops a live
session's cookie). When the app runs without those routes (``streamlit run app.py``), the
requests fail quietly and a sign-in lasts as long as the tab.
"""

from __future__ import annotations

import html

import streamlit as st

from services.session_cookies import COOKIE_NAME, COOKIE_SCRIPT_ROUTE

#: Session-state key of a hand-off code waiting to be traded for the cookie.
HANDOFF_KEY = "_session_handoff"
#: The client label of connections from this machine (Streamlit gives no address for them).
LOCAL_CLIENT = "local"


def browser_cookie() -> str | None:
    """The session cookie this tab sent when it connected, if any."""
    value = st.context.cookies.get(COOKIE_NAME)
    return value if isinstance(value, str) else None  # AppTest's context holds no cookies


def client_address() -> str:
    """Where this tab connects from: its IP address, or :data:`LOCAL_CLIENT` on this machine."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else LOCAL_CLIENT


def hand_cookie_to_browser(code: str) -> None:
    """Remember a fresh session's hand-off code; :func:`run_cookie_exchange` sends it."""
    st.session_state[HANDOFF_KEY] = code


def run_cookie_exchange() -> None:
    """Once after a sign-in: have the browser trade the hand-off code for its cookie."""
    code = st.session_state.pop(HANDOFF_KEY, None)
    if code:
        _run_cookie_script(code)


def drop_stale_cookie() -> None:
    """On the sign-in page: ask the server to drop this browser's cookie if it is stale.

    Sent on every run of the sign-in page: the tab may have got its cookie after it connected
    (so ``st.context.cookies`` does not show it), and the server keeps a live session's cookie.
    """
    _run_cookie_script(None)


def _run_cookie_script(code: str | None) -> None:
    """Load the cookie routes' script (``POST`` with ``code``, else ``DELETE``).

    A ``<script src>`` served by :mod:`loupe.web`, not inline JavaScript: the workbench's content
    security policy admits scripts from the server only.
    """
    data = "" if code is None else f' data-code="{html.escape(code, quote=True)}"'
    st.html(
        f'<script src="{COOKIE_SCRIPT_ROUTE}"{data}></script>',
        width=1,
        unsafe_allow_javascript=True,
    )
