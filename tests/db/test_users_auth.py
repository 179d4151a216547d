"""Users: argon2 hashes, password checks, the first admin account."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import Role, User, create_user, ensure_admin, verify_password

Factory = sessionmaker[Session]


def _user_count(factory: Factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


def test_password_is_stored_hashed_and_verified(session_factory: Factory) -> None:
    with session_factory() as session, session.begin():
        user = create_user(session, "ann", "correct horse", Role.INSPECTOR)
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
    with session_factory() as session:
        found = verify_password(session, "ann", "correct horse")
        assert found is not None and found.role == "inspector"
        assert verify_password(session, "ann", "wrong horse") is None
        assert verify_password(session, "nobody", "correct horse") is None


def test_inactive_user_cannot_log_in(session_factory: Factory) -> None:
    with session_factory() as session, session.begin():
        create_user(session, "ann", "correct horse", Role.MANAGER).active = False
    with session_factory() as session:
        assert verify_password(session, "ann", "correct horse") is None


def test_create_user_refuses_bad_input(session_factory: Factory) -> None:
    with session_factory() as session, session.begin():
        with pytest.raises(ValueError):
            create_user(session, "ann", "short", Role.INSPECTOR)
        with pytest.raises(ValueError):
            create_user(session, "   ", "long enough", Role.INSPECTOR)
        with pytest.raises(ValueError):
            create_user(session, "ann", "long enough", "superuser")
    assert _user_count(session_factory) == 0


def test_ensure_admin_with_a_password_from_the_environment(session_factory: Factory) -> None:
    with session_factory() as session, session.begin():
        assert ensure_admin(session, "from-the-env-123") is None
    with session_factory() as session:
        admin = verify_password(session, "admin", "from-the-env-123")
        assert admin is not None and admin.role == "admin"


def test_ensure_admin_without_a_password_returns_a_random_one_once(
    session_factory: Factory,
) -> None:
    with session_factory() as session, session.begin():
        generated = ensure_admin(session, None)
    assert generated is not None and len(generated) >= 16
    with session_factory() as session, session.begin():
        assert ensure_admin(session, None) is None
        assert ensure_admin(session, "ignored-now-123") is None
    assert _user_count(session_factory) == 1
    with session_factory() as session:
        assert verify_password(session, "admin", generated) is not None


def test_generated_admin_passwords_differ(tmp_path_factory: pytest.TempPathFactory) -> None:
    from db import init_db, make_session_factory

    passwords = []
    for index in range(2):
        engine = init_db(f"sqlite:///{tmp_path_factory.mktemp(f'admin{index}')}/loupe.db")
        factory = make_session_factory(engine)
        with factory() as session, session.begin():
            passwords.append(ensure_admin(session, ""))
        engine.dispose()
    assert None not in passwords and passwords[0] != passwords[1]


def test_ensure_admin_refuses_when_the_name_belongs_to_a_non_admin(
    session_factory: Factory,
) -> None:
    with session_factory() as session, session.begin():
        create_user(session, "admin", "an inspector", Role.INSPECTOR)
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        ensure_admin(session, None)
