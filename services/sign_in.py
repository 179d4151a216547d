"""Signing in and out: the throttle on failed attempts, the audit trail, the session.

The rule, per user name and per client address, over the failed attempts since the last
success (and within :attr:`ThrottlePolicy.memory`):

* per user name, after the n-th failure the next attempt waits ``first_delay * 2**(n-1)``
  (1, 2, 4, 8 s by default), and the 5th failure (``max_failures``) locks the name for
  ``lock`` (5 minutes by default);
* per client, 20 failures (``client_max_failures``, whatever the names) lock the client for
  ``lock``, without the short delays: several people may sign in from one workstation or
  behind one proxy, and one person's typo should not slow the next one down;
* the first failure after a lock has run out starts counting again.

An attempt made while waiting or locked is refused without checking the password (even a
right one) and recorded as refused; it does not extend the wait. Every attempt is recorded
with its time, the name as typed, the client and the outcome (:mod:`db.sign_in_attempts`).
Two attempts that arrive at the same instant may both be checked: this is a brake on
guessing, not a counter of exact tries.

Environment: ``LOUPE_SESSION_HOURS`` (how long a sign-in lasts, default 12),
``LOUPE_SIGN_IN_LOCK_SECONDS`` (default 300), ``LOUPE_SIGN_IN_DELAY_SECONDS`` (the first
delay, default 1; 0 switches the growing delay off).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session

from db.auth_sessions import end_session, session_for_token, start_session
from db.base import SessionEnd, SignInOutcome, utcnow
from db.models import AuthSession, User
from db.sign_in_attempts import failures_since_success, record_attempt
from db.users import verify_password
from services.session_cookies import token_from_cookie

SESSION_HOURS_ENV = "LOUPE_SESSION_HOURS"
LOCK_SECONDS_ENV = "LOUPE_SIGN_IN_LOCK_SECONDS"
DELAY_SECONDS_ENV = "LOUPE_SIGN_IN_DELAY_SECONDS"
DEFAULT_SESSION_HOURS = 12.0


class Wait(NamedTuple):
    """Until when sign-in attempts are refused, and whether that is a lock or a short delay."""

    until: datetime
    locked: bool


@dataclass(frozen=True)
class ThrottlePolicy:
    """How failed sign-ins slow down and lock a user name or a client."""

    max_failures: int = 5
    client_max_failures: int = 20
    first_delay: timedelta = timedelta(seconds=1)
    lock: timedelta = timedelta(minutes=5)
    memory: timedelta = timedelta(hours=1)

    @classmethod
    def from_environment(cls) -> ThrottlePolicy:
        """The default policy with ``$LOUPE_SIGN_IN_LOCK_SECONDS`` / ``_DELAY_SECONDS`` applied.

        Raises:
            ValueError: If a variable is not a number, or is negative.
        """
        policy = cls()
        lock = _seconds_from_env(LOCK_SECONDS_ENV, policy.lock)
        delay = _seconds_from_env(DELAY_SECONDS_ENV, policy.first_delay)
        return cls(first_delay=delay, lock=lock, memory=max(policy.memory, lock))

    def wait_after(
        self, failures: Sequence[datetime], max_failures: int, *, growing_delay: bool = True
    ) -> Wait | None:
        """How long the next attempt waits after these failures (oldest first).

        Args:
            failures: Times of the failed attempts since the last success.
            max_failures: The failures that lock (:attr:`max_failures` for a user name,
                :attr:`client_max_failures` for a client).
            growing_delay: Whether failures short of a lock make the next attempt wait (for a
                user name; not for a client).

        Returns:
            The wait, or ``None`` without failures.
        """
        count, lock_ends, wait = 0, None, None
        for at in failures:
            if lock_ends is not None and at >= lock_ends:
                count, lock_ends = 0, None  # a lock that ran out starts the count again
            count += 1
            if count >= max_failures:
                lock_ends = at + self.lock
                wait = Wait(lock_ends, locked=True)
            elif growing_delay:
                delay = min(self.first_delay * 2 ** (count - 1), self.lock)
                wait = Wait(at + delay, locked=False)
        return wait


@dataclass(frozen=True)
class SignInResult:
    """What became of a sign-in attempt.

    Attributes:
        outcome: Success, failure (wrong name or password) or refused (waiting or locked).
        user: The signed-in user on success.
        auth_session: The new session on success.
        handoff_code: The one-time code the browser trades for its cookie, on success.
        retry_at: When refused: when the next attempt will be checked. After a failure that
            started a lock: when the lock ends.
        locked: Whether ``retry_at`` ends a lock (not a short delay).
    """

    outcome: SignInOutcome
    user: User | None = None
    auth_session: AuthSession | None = None
    handoff_code: str | None = field(default=None, repr=False)
    retry_at: datetime | None = None
    locked: bool = False


def session_lifetime() -> timedelta:
    """How long a sign-in lasts: ``$LOUPE_SESSION_HOURS`` (default 12 hours).

    Raises:
        ValueError: If the variable is not a positive number.
    """
    raw = os.environ.get(SESSION_HOURS_ENV)
    try:
        hours = float(raw) if raw else DEFAULT_SESSION_HOURS
    except ValueError:
        raise ValueError(f"{SESSION_HOURS_ENV} must be a number of hours, not {raw!r}") from None
    if not hours > 0:
        raise ValueError(f"{SESSION_HOURS_ENV} must be positive, not {raw!r}")
    return timedelta(hours=hours)


def sign_in(
    session: Session,
    name: str,
    password: str,
    client: str,
    *,
    policy: ThrottlePolicy | None = None,
    lifetime: timedelta | None = None,
    now: datetime | None = None,
) -> SignInResult:
    """Check a sign-in attempt against the throttle and the password; record it.

    Args:
        session: The caller's session (the caller commits: the attempt, the session and a
            password re-hash are saved together).
        name: The user name as typed.
        password: The password as typed.
        client: The client's address or label.
        policy: The throttle (default: :meth:`ThrottlePolicy.from_environment`).
        lifetime: How long a session lasts (default: :func:`session_lifetime`).
        now: The current time (tests pass one).

    Returns:
        The outcome; on success the user, the new session and its hand-off code.
    """
    policy = policy or ThrottlePolicy.from_environment()
    now = now or utcnow()
    since = now - policy.memory
    counted = (  # (failures, how many lock, whether shorter runs make one wait)
        (failures_since_success(session, user_name=name, since=since), policy.max_failures, True),
        (
            failures_since_success(session, client=client, since=since),
            policy.client_max_failures,
            False,
        ),
    )
    waits = [
        policy.wait_after(failures, limit, growing_delay=delays)
        for failures, limit, delays in counted
    ]
    pending = [wait for wait in waits if wait is not None and wait.until > now]
    if pending:
        record_attempt(
            session, user_name=name, client=client, outcome=SignInOutcome.REFUSED, now=now
        )
        longest = max(pending)
        return SignInResult(SignInOutcome.REFUSED, retry_at=longest.until, locked=longest.locked)
    user = verify_password(session, name, password)
    if user is None:
        record_attempt(
            session, user_name=name, client=client, outcome=SignInOutcome.FAILURE, now=now
        )
        locks = [
            wait
            for failures, limit, _ in counted
            if (wait := policy.wait_after([*failures, now], limit)) is not None and wait.locked
        ]
        if locks:
            return SignInResult(SignInOutcome.FAILURE, retry_at=max(locks).until, locked=True)
        return SignInResult(SignInOutcome.FAILURE)
    record_attempt(session, user_name=name, client=client, outcome=SignInOutcome.SUCCESS, now=now)
    auth_session, code = start_session(
        session, user, lifetime=lifetime or session_lifetime(), client=client, now=now
    )
    return SignInResult(
        SignInOutcome.SUCCESS, user=user, auth_session=auth_session, handoff_code=code
    )


def resume_session(
    session: Session, cookie: str | None, now: datetime | None = None
) -> AuthSession | None:
    """The live session a browser's cookie stands for (a reload, a new tab), or ``None``."""
    token = token_from_cookie(cookie, session_lifetime().total_seconds())
    return None if token is None else session_for_token(session, token, now)


def sign_out(session: Session, session_id: int) -> None:
    """End a signed-in session: every tab of that browser is signed out on its next action."""
    end_session(session, session_id, SessionEnd.SIGNED_OUT)


def _seconds_from_env(variable: str, default: timedelta) -> timedelta:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a number of seconds, not {raw!r}") from None
    if seconds < 0:
        raise ValueError(f"{variable} must not be negative, not {raw!r}")
    return timedelta(seconds=seconds)
