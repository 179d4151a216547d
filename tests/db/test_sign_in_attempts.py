"""The sign-in audit trail: what is recorded, and the failures the throttle counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import utcnow
from db.sign_in_attempts import (
    attempted_name,
    failures_since_success,
    outcome_counts,
    recent_attempts,
    record_attempt,
)

T0 = utcnow().replace(microsecond=0)


def record(
    factory: sessionmaker[Session],
    seconds: int,
    outcome: str,
    name: str = "ines",
    client: str = "a",
) -> None:
    """Record one attempt ``seconds`` after T0."""
    with factory() as session, session.begin():
        record_attempt(
            session,
            user_name=name,
            client=client,
            outcome=outcome,
            now=T0 + timedelta(seconds=seconds),
        )


def test_every_attempt_is_kept_with_time_name_client_and_outcome(
    session_factory: sessionmaker[Session],
) -> None:
    record(session_factory, 0, "failure", name="  ines ", client="10.0.0.7")
    record(session_factory, 1, "refused", name="x" * 300)
    record(session_factory, 2, "success")

    with session_factory() as session:
        rows = [
            (a.attempted_at, a.user_name, a.client, a.outcome)
            for a in recent_attempts(session, limit=10)
        ]
        counts = outcome_counts(session, since=T0 - timedelta(hours=1))
    assert rows == [
        (T0 + timedelta(seconds=2), "ines", "a", "success"),
        (T0 + timedelta(seconds=1), "x" * 64, "a", "refused"),
        (T0, "ines", "10.0.0.7", "failure"),
    ]
    assert counts == {"success": 1, "failure": 1, "refused": 1}


def test_an_unknown_outcome_is_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError), session_factory() as session:
        record_attempt(session, user_name="ines", client="a", outcome="maybe")


def test_failures_count_after_the_last_success_per_name_or_per_client(
    session_factory: sessionmaker[Session],
) -> None:
    record(session_factory, 0, "failure")
    record(session_factory, 1, "success")
    record(session_factory, 2, "failure")
    record(session_factory, 3, "refused")  # never checked: not a failure
    record(session_factory, 4, "failure", client="b")
    record(session_factory, 5, "failure", name="olga")

    with session_factory() as session:
        by_name = failures_since_success(session, user_name=" ines", since=T0 - timedelta(1))
        by_client = failures_since_success(session, client="a", since=T0 - timedelta(1))
        recent = failures_since_success(session, user_name="ines", since=T0 + timedelta(seconds=3))
        with pytest.raises(ValueError):
            failures_since_success(session, since=T0)
    assert by_name == [T0 + timedelta(seconds=2), T0 + timedelta(seconds=4)]
    assert by_client == [T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)]
    assert recent == [T0 + timedelta(seconds=4)]
    assert attempted_name("  ines  ") == "ines"
