"""Signed-in sessions: start, hand a browser its cookie token once, look up, end.

A session starts at sign-in with a one-time hand-off code (:func:`start_session`); the
browser trades that code once, within :data:`HANDOFF_SECONDS`, for the token its cookie holds
(:func:`redeem_handoff`). Only SHA-256 digests of the code and the token are stored: both are
32 random bytes from :mod:`secrets`, so a fast digest is enough (a password-style slow hash
such as argon2 is for guessable secrets, and could not be looked up by value).

A session is live while it has not ended, has not expired and its user is active. It ends at
sign-out, and every session of a user ends when the password or the role changes or the
account is deactivated (:func:`end_user_sessions`, called by :mod:`db.users`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.base import SessionEnd, utcnow
from db.models import AuthSession, User
from db.models.auth import CLIENT_LENGTH

#: Random bytes in a hand-off code and in a cookie token.
TOKEN_BYTES = 32
#: How long a browser has to fetch its cookie after signing in.
HANDOFF_SECONDS = 120


def digest(secret: str) -> str:
    """The hexadecimal SHA-256 digest of a code or token (what the table stores)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(
    session: Session,
    user: User,
    *,
    lifetime: timedelta,
    client: str,
    now: datetime | None = None,
) -> tuple[AuthSession, str]:
    """Start a signed-in session for ``user`` (flushed; the caller commits).

    Args:
        session: The caller's session.
        user: The user who signed in.
        lifetime: How long the session lasts from now.
        client: Where the sign-in came from (cut to the column's width).
        now: The current time (tests pass one).

    Returns:
        The new session and its one-time hand-off code (for :func:`redeem_handoff`).

    Raises:
        ValueError: If ``lifetime`` is not positive.
    """
    if lifetime <= timedelta(0):
        raise ValueError("a session lifetime must be positive")
    now = now or utcnow()
    code = secrets.token_urlsafe(TOKEN_BYTES)
    row = AuthSession(
        user_id=user.id,
        token_digest=digest(code),
        client=client[:CLIENT_LENGTH],
        created_at=now,
        expires_at=now + lifetime,
        handoff_until=now + timedelta(seconds=HANDOFF_SECONDS),
    )
    session.add(row)
    session.flush()
    return row, code


def redeem_handoff(
    session: Session, code: str, now: datetime | None = None
) -> tuple[AuthSession, str] | None:
    """Trade a hand-off code, once, for the token of the session's cookie.

    Args:
        session: The caller's session (the caller commits).
        code: The code from :func:`start_session`.
        now: The current time.

    Returns:
        The live session and its new cookie token; ``None`` for an unknown, used or stale
        code, or a session that is no longer live.
    """
    now = now or utcnow()
    row = session.scalars(
        select(AuthSession).where(AuthSession.token_digest == digest(code))
    ).first()
    if row is None or row.handoff_until is None or row.handoff_until <= now:
        return None
    if not is_live(row, now):
        return None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    traded = session.execute(  # conditional: of two concurrent trades only one wins
        update(AuthSession)
        .where(AuthSession.id == row.id, AuthSession.token_digest == digest(code))
        .values(token_digest=digest(token), handoff_until=None)
    )
    if traded.rowcount != 1:
        return None
    session.refresh(row)
    return row, token


def session_for_token(
    session: Session, token: str, now: datetime | None = None
) -> AuthSession | None:
    """The live session a cookie's token stands for, or ``None``.

    A hand-off code is not a cookie token: it never opens a session here.
    """
    row = session.scalars(
        select(AuthSession).where(
            AuthSession.token_digest == digest(token), AuthSession.handoff_until.is_(None)
        )
    ).first()
    return row if row is not None and is_live(row, now or utcnow()) else None


def live_session(
    session: Session, session_id: int, now: datetime | None = None
) -> AuthSession | None:
    """The session with this id if it is still live (checked on every page run), else ``None``."""
    row = session.get(AuthSession, session_id)
    return row if row is not None and is_live(row, now or utcnow()) else None


def is_live(row: AuthSession, now: datetime) -> bool:
    """Whether ``row`` has not ended, has not expired, and its user is active."""
    return row.ended_at is None and row.expires_at > now and row.user.active


def end_session(
    session: Session, session_id: int, reason: SessionEnd, now: datetime | None = None
) -> bool:
    """End one session (sign-out); return whether it was still open."""
    ended = session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.ended_at.is_(None))
        .values(ended_at=now or utcnow(), end_reason=SessionEnd(reason).value)
    )
    return ended.rowcount == 1


def end_user_sessions(
    session: Session, user_id: int, reason: SessionEnd, now: datetime | None = None
) -> int:
    """End every open session of a user; return how many were open."""
    ended = session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.ended_at.is_(None))
        .values(ended_at=now or utcnow(), end_reason=SessionEnd(reason).value)
    )
    return ended.rowcount


def live_session_counts(session: Session, now: datetime | None = None) -> dict[int, int]:
    """User id -> number of live sessions (open and not expired), for the admins' list."""
    now = now or utcnow()
    rows = session.execute(
        select(AuthSession.user_id, func.count())
        .where(AuthSession.ended_at.is_(None), AuthSession.expires_at > now)
        .group_by(AuthSession.user_id)
    )
    return {user_id: count for user_id, count in rows}
