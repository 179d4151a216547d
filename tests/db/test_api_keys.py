"""Station API keys: shown once, stored as a digest, scoped, revocable, admins only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import User
from db.api_keys import (
    authenticate,
    create_api_key,
    digest,
    list_api_keys,
    revoke_api_key,
)
from db.models import ApiKey
from db.permissions import PermissionDenied


def new_key(factory: sessionmaker[Session], project_id: int, scope: str = "inspect") -> str:
    """Create a key as the system; return the key itself."""
    with factory() as session, session.begin():
        created = create_api_key(
            session, project_id=project_id, station="line-2", scope=scope, user=None, system=True
        )
        return created.key


def test_a_key_is_stored_only_as_its_digest_and_opens_its_scope(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    key = new_key(session_factory, project_id)
    with session_factory() as session:
        stored = session.scalars(select(ApiKey)).one()
        columns = [getattr(stored, c.key) for c in ApiKey.__table__.columns]
    assert key not in [str(value) for value in columns]
    assert stored.key_digest == digest(key) and key.startswith(f"loupe_{stored.key_id}_")
    with session_factory() as session, session.begin():
        row = authenticate(session, key, scope="inspect")
        assert (row.station, row.project_id, row.scope) == ("line-2", project_id, "inspect")
        assert row.last_used_at is not None
        assert authenticate(session, key, scope="read").id == row.id  # inspect keys may read


@pytest.mark.parametrize(
    "presented",
    [None, "", "not-a-key", "loupe_short_secret", "loupe_AAAAAAAAAAAA_" + "x" * 43],
)
def test_a_missing_malformed_or_unknown_key_is_refused_as_unauthenticated(
    session_factory: sessionmaker[Session], project_id: int, presented: str | None
) -> None:
    new_key(session_factory, project_id)
    with session_factory() as session, pytest.raises(PermissionError):
        authenticate(session, presented, scope="read")


def test_a_tampered_secret_is_refused(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    key = new_key(session_factory, project_id)
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    with session_factory() as session, pytest.raises(PermissionError, match="Unknown"):
        authenticate(session, tampered, scope="read")


def test_a_read_key_may_not_post_parts(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    key = new_key(session_factory, project_id, scope="read")
    with session_factory() as session:
        with pytest.raises(PermissionDenied, match="may not post parts"):
            authenticate(session, key, scope="inspect")
        assert authenticate(session, key, scope="read").scope == "read"


def test_a_revoked_key_stops_at_once_and_stays_listed(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    key = new_key(session_factory, project_id)
    with session_factory() as session, session.begin():
        key_row_id = list_api_keys(session, project_id)[0].id
        revoke_api_key(session, key_row_id, user=None, system=True)
    with session_factory() as session:
        with pytest.raises(PermissionError, match="revoked"):
            authenticate(session, key, scope="read")
        assert [row.active for row in list_api_keys(session)] == [False]


def test_only_admins_create_or_revoke_keys(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    manager, admin = make_user("mona", "manager"), make_user("ada", "admin")
    with session_factory() as session, session.begin():
        with pytest.raises(PermissionDenied, match="Only admins"):
            create_api_key(
                session,
                project_id=project_id,
                station="s",
                scope="read",
                user=session.get(User, manager),
            )
        created = create_api_key(
            session, project_id=project_id, station="s", scope="read", user=session.get(User, admin)
        )
        with pytest.raises(PermissionDenied):
            revoke_api_key(session, created.id, user=session.get(User, manager))
        assert session.get(ApiKey, created.id).created_by_id == admin


@pytest.mark.parametrize(
    ("station", "scope", "error"),
    [("", "read", "1 to 64"), ("x" * 65, "read", "1 to 64"), ("s", "write", "Unknown scope")],
)
def test_bad_station_names_and_scopes_are_refused_with_a_message(
    session_factory: sessionmaker[Session], project_id: int, station: str, scope: str, error: str
) -> None:
    with session_factory() as session, pytest.raises(ValueError, match=error):
        create_api_key(
            session, project_id=project_id, station=station, scope=scope, user=None, system=True
        )
