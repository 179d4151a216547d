"""Signing in: the growing delay, the lock, the audit trail, the session and its cookie."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import create_user, utcnow
from db.auth_sessions import redeem_handoff
from db.models import SignInAttempt
from services.session_cookies import cookie_value, signing_secret, token_from_cookie
from services.sign_in import (
    SignInResult,
    ThrottlePolicy,
    resume_session,
    session_lifetime,
    sign_in,
    sign_out,
)

T0 = utcnow().replace(microsecond=0)
POLICY = ThrottlePolicy()  # 1 s doubling delay, 5 failures lock a name for 5 minutes
PASSWORD = "right-password"


@pytest.fixture
def ines(session_factory: sessionmaker[Session]) -> int:
    """An inspector whose password is :data:`PASSWORD`."""
    with session_factory() as session, session.begin():
        return create_user(session, "ines", PASSWORD, "inspector").id


def attempt(
    factory: sessionmaker[Session],
    seconds: float,
    password: str,
    *,
    name: str = "ines",
    client: str = "10.0.0.7",
    policy: ThrottlePolicy = POLICY,
) -> SignInResult:
    """One sign-in attempt ``seconds`` after T0, committed."""
    with factory() as session, session.begin():
        return sign_in(
            session,
            name,
            password,
            client,
            policy=policy,
            lifetime=timedelta(hours=12),
            now=T0 + timedelta(seconds=seconds),
        )


def outcomes(factory: sessionmaker[Session]) -> list[tuple[float, str, str, str]]:
    """(seconds after T0, name, client, outcome) of every recorded attempt, oldest first."""
    with factory() as session:
        rows = session.scalars(select(SignInAttempt).order_by(SignInAttempt.id))
        return [
            ((a.attempted_at - T0).total_seconds(), a.user_name, a.client, a.outcome) for a in rows
        ]


def test_the_delay_doubles_after_each_failure_then_five_failures_lock() -> None:
    failures = [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    waits = [POLICY.wait_after(failures[: n + 1], 5) for n in range(4)]
    assert [(w.until - failures[n]).total_seconds() for n, w in enumerate(waits)] == [1, 2, 4, 8]
    assert not any(w.locked for w in waits)

    locked = POLICY.wait_after([*failures, T0 + timedelta(seconds=40)], 5)
    assert locked.locked and locked.until == T0 + timedelta(seconds=40, minutes=5)
    assert POLICY.wait_after([], 5) is None


def test_a_lock_that_ran_out_starts_the_count_again() -> None:
    five = [T0 + timedelta(seconds=s) for s in range(5)]
    after_lock = T0 + timedelta(seconds=4, minutes=5)
    wait = POLICY.wait_after([*five, after_lock], 5)
    assert not wait.locked and wait.until == after_lock + timedelta(seconds=1)


def test_the_sixth_attempt_is_refused_even_with_the_right_password_until_the_lock_ends(
    session_factory: sessionmaker[Session], ines: int
) -> None:
    results = [attempt(session_factory, 10 * n, "wrong-password") for n in range(5)]
    assert [r.outcome for r in results] == ["failure"] * 5
    assert [r.locked for r in results] == [False] * 4 + [True]
    lock_ends = T0 + timedelta(seconds=40, minutes=5)
    assert results[-1].retry_at == lock_ends

    refused = attempt(session_factory, 50, PASSWORD)
    assert refused.outcome == "refused" and refused.user is None and refused.auth_session is None
    assert refused.retry_at == lock_ends and refused.locked
    assert attempt(session_factory, 339, PASSWORD).outcome == "refused"

    signed_in = attempt(session_factory, 340, PASSWORD)
    assert signed_in.outcome == "success" and signed_in.user.name == "ines"
    assert signed_in.auth_session is not None and signed_in.handoff_code
    expected = [(10.0 * n, "ines", "10.0.0.7", "failure") for n in range(5)]
    expected += [(50.0, "ines", "10.0.0.7", "refused"), (339.0, "ines", "10.0.0.7", "refused")]
    assert outcomes(session_factory) == [*expected, (340.0, "ines", "10.0.0.7", "success")]


def test_an_attempt_within_the_delay_is_refused_without_counting(
    session_factory: sessionmaker[Session], ines: int
) -> None:
    assert attempt(session_factory, 0, "wrong-password").outcome == "failure"
    too_soon = attempt(session_factory, 0.5, PASSWORD)
    assert too_soon.outcome == "refused" and not too_soon.locked
    assert too_soon.retry_at == T0 + timedelta(seconds=1)
    assert attempt(session_factory, 1, PASSWORD).outcome == "success"
    # The success clears the count: a new failure waits 1 s again.
    attempt(session_factory, 2, "wrong-password")
    assert attempt(session_factory, 2.5, PASSWORD).retry_at == T0 + timedelta(seconds=3)


def test_unknown_names_are_throttled_like_real_ones(
    session_factory: sessionmaker[Session], ines: int
) -> None:
    policy = ThrottlePolicy(first_delay=timedelta(0))
    for n in range(5):
        assert attempt(session_factory, n, PASSWORD, name="nobody", policy=policy).outcome == (
            "failure"
        )
    assert attempt(session_factory, 5, PASSWORD, name="nobody", policy=policy).outcome == (
        "refused"
    )
    # Another name from the same client is not locked by them (20 failures lock a client).
    assert attempt(session_factory, 6, PASSWORD, policy=policy).outcome == "success"


def test_twenty_failures_from_one_client_lock_that_client_for_every_name(
    session_factory: sessionmaker[Session], ines: int
) -> None:
    policy = ThrottlePolicy(first_delay=timedelta(0))
    for n in range(20):
        attempt(session_factory, n, "guess", name=f"name-{n}", client="10.9.9.9", policy=policy)
    refused = attempt(session_factory, 21, PASSWORD, client="10.9.9.9", policy=policy)
    assert refused.outcome == "refused" and refused.locked
    assert attempt(session_factory, 22, PASSWORD, client="10.0.0.8", policy=policy).outcome == (
        "success"
    )


def test_the_session_opens_from_its_cookie_until_sign_out(
    session_factory: sessionmaker[Session], ines: int
) -> None:
    result = attempt(session_factory, 0, PASSWORD)
    with session_factory() as session, session.begin():
        _, token = redeem_handoff(session, result.handoff_code, now=T0 + timedelta(seconds=1))
    cookie = cookie_value(token)
    assert cookie != token and token_from_cookie(cookie, 60) == token  # signed
    with session_factory() as session, session.begin():
        resumed = resume_session(session, cookie, now=T0 + timedelta(hours=1))
        assert resumed is not None and resumed.id == result.auth_session.id
        assert resume_session(session, cookie[:-2] + "xx", now=T0) is None  # tampered
        assert resume_session(session, None) is None
        sign_out(session, resumed.id)
    with session_factory() as session:
        assert resume_session(session, cookie, now=T0 + timedelta(hours=1)) is None


def test_a_cookie_signed_with_another_secret_is_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOUPE_SESSION_SECRET", raising=False)
    value = cookie_value("token-1")
    assert token_from_cookie(value, 60) == "token-1"
    secret_file = data_dir / "session_secret"
    assert secret_file.stat().st_mode & 0o077 == 0  # readable by the server's user only
    assert signing_secret() == secret_file.read_text()

    monkeypatch.setenv("LOUPE_SESSION_SECRET", "another-secret")
    assert token_from_cookie(value, 60) is None
    assert token_from_cookie(cookie_value("token-2"), 60) == "token-2"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOUPE_SESSION_HOURS", "8")
    monkeypatch.setenv("LOUPE_SIGN_IN_LOCK_SECONDS", "20")
    monkeypatch.setenv("LOUPE_SIGN_IN_DELAY_SECONDS", "0")
    assert session_lifetime() == timedelta(hours=8)
    policy = ThrottlePolicy.from_environment()
    assert policy.lock == timedelta(seconds=20) and policy.first_delay == timedelta(0)

    monkeypatch.setenv("LOUPE_SESSION_HOURS", "soon")
    with pytest.raises(ValueError, match="LOUPE_SESSION_HOURS"):
        session_lifetime()
    monkeypatch.setenv("LOUPE_SESSION_HOURS", "0")
    with pytest.raises(ValueError, match="positive"):
        session_lifetime()
    monkeypatch.setenv("LOUPE_SIGN_IN_LOCK_SECONDS", "-1")
    with pytest.raises(ValueError, match="negative"):
        ThrottlePolicy.from_environment()


def test_one_persons_failure_does_not_slow_the_next_person_at_the_same_client(
    session_factory: sessionmaker[Session], ines: int
) -> None:
    assert attempt(session_factory, 0, "typo", name="olga").outcome == "failure"
    assert attempt(session_factory, 0.1, PASSWORD).outcome == "success"


def test_a_client_waits_only_when_locked_and_a_delay_never_exceeds_the_lock() -> None:
    nineteen = [T0 + timedelta(seconds=s) for s in range(19)]
    assert POLICY.wait_after(nineteen, 20, growing_delay=False) is None
    locked = POLICY.wait_after([*nineteen, T0 + timedelta(seconds=19)], 20, growing_delay=False)
    assert locked.locked and locked.until == T0 + timedelta(seconds=19, minutes=5)
    long_delays = ThrottlePolicy(first_delay=timedelta(minutes=2))
    wait = long_delays.wait_after(nineteen[:3], 5)
    assert not wait.locked and wait.until == nineteen[2] + long_delays.lock
