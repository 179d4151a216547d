"""Signed-in sessions: the hand-off, lookup by token, expiry, and every way a session ends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import PermissionDenied, StorageError, User, create_user, utcnow
from db.auth_sessions import (
    HANDOFF_SECONDS,
    digest,
    end_session,
    live_session,
    live_session_counts,
    redeem_handoff,
    session_for_token,
    start_session,
)
from db.models import AuthSession
from db.users import (
    change_password,
    reset_password,
    set_user_active,
    set_user_role,
    verify_password,
)

T0 = utcnow().replace(microsecond=0)
HOURS_12 = timedelta(hours=12)


def started(
    factory: sessionmaker[Session], user_id: int, now=T0, lifetime=HOURS_12
) -> tuple[int, str]:
    """Start a session for ``user_id``; return its id and hand-off code."""
    with factory() as session, session.begin():
        row, code = start_session(
            session, session.get(User, user_id), lifetime=lifetime, client="10.0.0.7", now=now
        )
        return row.id, code


def cookie_token(factory: sessionmaker[Session], user_id: int, now=T0) -> tuple[int, str]:
    """A session whose hand-off was traded: its id and the cookie's token."""
    session_id, code = started(factory, user_id, now=now)
    with factory() as session, session.begin():
        traded = redeem_handoff(session, code, now=now + timedelta(seconds=1))
        assert traded is not None
        return session_id, traded[1]


def test_only_digests_of_the_code_and_the_token_are_stored(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    user_id = make_user("ines")
    session_id, code = started(session_factory, user_id)
    with session_factory() as session:
        stored = session.get(AuthSession, session_id)
        assert stored.token_digest == digest(code) != code
        assert stored.handoff_until == T0 + timedelta(seconds=HANDOFF_SECONDS)
        assert stored.expires_at == T0 + HOURS_12 and stored.client == "10.0.0.7"

    with session_factory() as session, session.begin():
        row, token = redeem_handoff(session, code, now=T0 + timedelta(seconds=5))
    assert token != code
    with session_factory() as session:
        stored = session.get(AuthSession, session_id)
        assert stored.token_digest == digest(token) and stored.handoff_until is None
        assert token not in {stored.token_digest, stored.client}


def test_a_handoff_code_is_traded_once_and_not_after_its_time(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    user_id = make_user("ines")
    _, code = started(session_factory, user_id)
    with session_factory() as session, session.begin():
        assert session_for_token(session, code, now=T0) is None  # a code is not a cookie
        assert redeem_handoff(session, code, now=T0 + timedelta(seconds=1)) is not None
    with session_factory() as session, session.begin():
        assert redeem_handoff(session, code, now=T0 + timedelta(seconds=2)) is None

    _, late_code = started(session_factory, user_id)
    too_late = T0 + timedelta(seconds=HANDOFF_SECONDS)
    with session_factory() as session, session.begin():
        assert redeem_handoff(session, late_code, now=too_late) is None
        assert redeem_handoff(session, "not-a-code", now=T0) is None


def test_the_token_opens_the_session_until_it_expires(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    user_id = make_user("ines")
    session_id, token = cookie_token(session_factory, user_id)
    with session_factory() as session:
        found = session_for_token(session, token, now=T0 + HOURS_12 - timedelta(seconds=1))
        assert found is not None and found.id == session_id and found.user.name == "ines"
        assert live_session(session, session_id, now=T0 + timedelta(hours=11)) is not None
        assert session_for_token(session, token, now=T0 + HOURS_12) is None
        assert live_session(session, session_id, now=T0 + HOURS_12) is None
        assert session_for_token(session, token + "x", now=T0) is None


def test_a_lifetime_must_be_positive(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    user_id = make_user("ines")
    with pytest.raises(ValueError, match="positive"):
        started(session_factory, user_id, lifetime=timedelta(0))


def test_sign_out_ends_one_session_and_leaves_the_others(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    user_id = make_user("ines")
    first, first_token = cookie_token(session_factory, user_id)
    second, _ = cookie_token(session_factory, user_id)
    with session_factory() as session, session.begin():
        assert end_session(session, first, "signed_out")
        assert not end_session(session, first, "signed_out")  # already ended
    with session_factory() as session:
        assert session_for_token(session, first_token) is None
        assert live_session(session, first) is None
        assert live_session(session, second) is not None
        ended = session.get(AuthSession, first)
        assert ended.end_reason == "signed_out" and ended.ended_at is not None
        assert live_session_counts(session) == {user_id: 1}


def test_a_session_of_a_deactivated_user_is_not_live_even_if_reactivated(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    admin_id, user_id = make_user("ada", "admin"), make_user("ines")
    session_id, token = cookie_token(session_factory, user_id)
    with session_factory() as session, session.begin():
        set_user_active(session, session.get(User, admin_id), user_id, False)
    with session_factory() as session, session.begin():
        assert session_for_token(session, token) is None
        assert session.get(AuthSession, session_id).end_reason == "deactivated"
        set_user_active(session, session.get(User, admin_id), user_id, True)
    with session_factory() as session:
        assert live_session(session, session_id) is None  # ended, not only hidden


def test_a_role_change_ends_the_sessions_but_an_unchanged_role_does_not(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    admin_id, user_id = make_user("ada", "admin"), make_user("ines")
    session_id, _ = cookie_token(session_factory, user_id)
    admin_session, _ = cookie_token(session_factory, admin_id)
    with session_factory() as session, session.begin():
        set_user_role(session, session.get(User, admin_id), user_id, "inspector")  # the same
    with session_factory() as session, session.begin():
        assert live_session(session, session_id) is not None
        set_user_role(session, session.get(User, admin_id), user_id, "manager")
    with session_factory() as session:
        assert live_session(session, session_id) is None
        assert session.get(AuthSession, session_id).end_reason == "role"
        assert session.get(User, user_id).role == "manager"
        assert live_session(session, admin_session) is not None  # other users keep theirs


def test_an_admin_cannot_change_their_own_role_nor_give_an_unknown_one(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    admin_id, user_id = make_user("ada", "admin"), make_user("ines")
    with session_factory() as session, session.begin():
        admin = session.get(User, admin_id)
        with pytest.raises(StorageError, match="your own role"):
            set_user_role(session, admin, admin_id, "inspector")
        with pytest.raises(ValueError):
            set_user_role(session, admin, user_id, "superuser")
        with pytest.raises(PermissionDenied, match="Only admins"):
            set_user_role(session, session.get(User, user_id), admin_id, "inspector")
        assert admin.role == "admin"


def test_a_password_change_ends_every_session_of_the_user(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        admin_id = create_user(session, "ada", "admin-password", "admin").id
        user_id = create_user(session, "ines", "old-password", "inspector").id
    sessions = [cookie_token(session_factory, user_id)[0] for _ in range(2)]
    with (
        session_factory() as session,
        session.begin(),
        pytest.raises(PermissionError, match="current password"),
    ):
        change_password(session, session.get(User, user_id), "wrong-password", "new-password")
    with session_factory() as session, session.begin():
        assert all(live_session(session, s) is not None for s in sessions)
        with pytest.raises(ValueError, match="at least 8"):
            change_password(session, session.get(User, user_id), "old-password", "short")
    with session_factory() as session, session.begin():
        change_password(session, session.get(User, user_id), "old-password", "new-password")
    with session_factory() as session, session.begin():
        assert [live_session(session, s) for s in sessions] == [None, None]
        reasons = session.scalars(
            select(AuthSession.end_reason).where(AuthSession.user_id == user_id)
        ).all()
        assert reasons == ["password", "password"]
        assert verify_password(session, "ines", "new-password") is not None

    again, _ = cookie_token(session_factory, user_id)
    with session_factory() as session, session.begin():
        reset_password(session, session.get(User, admin_id), user_id, "reset-password")
    with session_factory() as session:
        assert live_session(session, again) is None
