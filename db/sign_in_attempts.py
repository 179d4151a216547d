"""The sign-in audit trail: record every attempt, read what the throttle and admins need.

The throttle's rule (how many failures lock for how long) is in :mod:`services.sign_in`; this
module only stores and reads attempts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from db.base import SignInOutcome, utcnow
from db.models import SignInAttempt
from db.models.accounts import USER_NAME_LENGTH
from db.models.auth import CLIENT_LENGTH


def attempted_name(name: str) -> str:
    """The user name as an attempt records it: trimmed, cut to the longest possible name."""
    return name.strip()[:USER_NAME_LENGTH]


def record_attempt(
    session: Session,
    *,
    user_name: str,
    client: str,
    outcome: SignInOutcome,
    now: datetime | None = None,
) -> SignInAttempt:
    """Append one attempt (flushed; the caller commits).

    Args:
        session: The caller's session.
        user_name: The name as typed (see :func:`attempted_name`).
        client: The client's address or label (cut to the column's width).
        outcome: What became of the attempt.
        now: Its time (tests pass one).

    Returns:
        The new row.
    """
    attempt = SignInAttempt(
        attempted_at=now or utcnow(),
        user_name=attempted_name(user_name),
        client=client[:CLIENT_LENGTH],
        outcome=SignInOutcome(outcome).value,
    )
    session.add(attempt)
    session.flush()
    return attempt


def failures_since_success(
    session: Session,
    *,
    since: datetime,
    user_name: str | None = None,
    client: str | None = None,
) -> list[datetime]:
    """Times of the failed attempts after ``since`` and after the last success, oldest first.

    Exactly one of ``user_name`` and ``client`` says whose attempts count. Refused attempts
    (made while locked) are not failures: they were never checked.

    Raises:
        ValueError: Unless exactly one of ``user_name`` and ``client`` is given.
    """
    if (user_name is None) == (client is None):
        raise ValueError("give either a user name or a client")
    whose: ColumnElement[bool] = (
        SignInAttempt.user_name == attempted_name(user_name)
        if user_name is not None
        else SignInAttempt.client == client[:CLIENT_LENGTH]  # type: ignore[index]
    )
    last_success = session.scalar(
        select(func.max(SignInAttempt.attempted_at)).where(
            whose,
            SignInAttempt.outcome == SignInOutcome.SUCCESS.value,
            SignInAttempt.attempted_at >= since,
        )
    )
    after = max(since, last_success) if last_success is not None else since
    return list(
        session.scalars(
            select(SignInAttempt.attempted_at)
            .where(
                whose,
                SignInAttempt.outcome == SignInOutcome.FAILURE.value,
                SignInAttempt.attempted_at > after,
            )
            .order_by(SignInAttempt.attempted_at, SignInAttempt.id)
        )
    )


def recent_attempts(session: Session, limit: int = 200) -> list[SignInAttempt]:
    """The latest attempts, newest first (the admins' audit view)."""
    return list(
        session.scalars(
            select(SignInAttempt)
            .order_by(SignInAttempt.attempted_at.desc(), SignInAttempt.id.desc())
            .limit(limit)
        )
    )


def outcome_counts(session: Session, since: datetime) -> dict[str, int]:
    """Outcome -> number of attempts since ``since`` (every outcome, zero included)."""
    counts = dict.fromkeys((outcome.value for outcome in SignInOutcome), 0)
    rows = session.execute(
        select(SignInAttempt.outcome, func.count())
        .where(SignInAttempt.attempted_at >= since)
        .group_by(SignInAttempt.outcome)
    )
    counts.update({outcome: count for outcome, count in rows})
    return counts
