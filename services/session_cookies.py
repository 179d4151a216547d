"""The browser's session cookie: its name, its route, and signing its value (itsdangerous).

The cookie holds a session token signed with the server's secret
(:class:`itsdangerous.URLSafeTimedSerializer`), so a forged or tampered value is refused
before the database is asked. The secret is ``$LOUPE_SESSION_SECRET`` when set (several
servers sharing one database need the same one), else a random secret made once and kept in
``<data dir>/session_secret`` (readable by the server's user only), so cookies outlive a
restart.

The cookie is set and cleared by the HTTP routes of :mod:`loupe.web` (a Streamlit script
cannot set an HttpOnly cookie); Streamlit reads it with ``st.context.cookies``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from db.settings import data_dir

COOKIE_NAME = "loupe_session"
#: The route that sets (POST, with a hand-off code) and clears (DELETE) the cookie.
COOKIE_ROUTE = "/auth/cookie"
#: The script that calls that route from the page (a file, so the pages need no inline script).
COOKIE_SCRIPT_ROUTE = "/auth/cookie.js"
SECRET_ENV = "LOUPE_SESSION_SECRET"
SECRET_FILE_NAME = "session_secret"
#: Set to 1 when a proxy terminates HTTPS in front of Loupe: the cookie is then marked Secure.
SECURE_ENV = "LOUPE_COOKIE_SECURE"
_SALT = "loupe.session-cookie"
_SECRET_BYTES = 32


def cookie_value(token: str) -> str:
    """The signed cookie value for a session token."""
    return _serializer(signing_secret()).dumps(token)


def token_from_cookie(value: str | None, max_age_seconds: float) -> str | None:
    """The session token in a cookie value, or ``None`` if it is missing, forged or too old."""
    if not value:
        return None
    try:
        token = _serializer(signing_secret()).loads(value, max_age=max_age_seconds)
    except BadSignature:  # SignatureExpired is a BadSignature too
        return None
    return token if isinstance(token, str) else None


def secure_cookies() -> bool:
    """Whether to mark the cookie Secure regardless of the request's scheme."""
    return os.environ.get(SECURE_ENV) == "1"


def signing_secret() -> str:
    """``$LOUPE_SESSION_SECRET``, else the data directory's secret (made on first use)."""
    configured = os.environ.get(SECRET_ENV)
    if configured:
        return configured
    return _secret_file_contents(data_dir() / SECRET_FILE_NAME)


@lru_cache(maxsize=8)
def _secret_file_contents(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: of two processes
        # starting at once, one link wins and both read the same complete secret.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".session_secret.")
        try:
            with os.fdopen(descriptor, "w") as handle:  # mkstemp makes it 0600
                handle.write(secrets.token_urlsafe(_SECRET_BYTES))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    secret = path.read_text().strip()
    if not secret:
        raise RuntimeError(
            f"{path} is empty: delete it (everyone signs in again) or set {SECRET_ENV}"
        )
    return secret


@lru_cache(maxsize=8)
def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)
