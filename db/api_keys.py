"""API keys for stations: create (the key is shown once), list, revoke, and check a key.

A key reads ``loupe_<key id>_<secret>``: the key id (public, 12 characters) finds the row, and
the SHA-256 digest of the whole key is compared in constant time. Keys are random
(``secrets``, 256 bits in the secret), so a fast digest suffices: there is no password to
guess. Admins create and revoke keys (:data:`db.permissions.CAN_MANAGE_USERS`); the ``loupe
api-key`` console command acts as the system, like the other server-side commands.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import ApiKey, Project, User
from db.models.api_keys import API_KEY_SCOPES, STATION_LENGTH
from db.permissions import CAN_MANAGE_USERS, PermissionDenied, require_session_role

KEY_PREFIX = "loupe_"
_KEY = re.compile(r"^loupe_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ADMIN_MESSAGE = "Only admins can create or revoke API keys."


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: ``key`` is the only copy of the secret (show it once)."""

    id: int
    key: str
    key_id: str
    project_id: int
    station: str
    scope: str


def digest(key: str) -> str:
    """SHA-256 of a key, hex (what is stored)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(
    session: Session,
    *,
    project_id: int,
    station: str,
    scope: str,
    user: User | None,
    system: bool = False,
) -> NewApiKey:
    """Create a key for a station of a project (flushed; the caller commits).

    Args:
        session: The caller's session.
        project_id: The project the key opens.
        station: Who uses it, e.g. ``line-2-camera``: 1 to 64 characters.
        scope: ``inspect`` (post parts, read results) or ``read`` (read results only).
        user: The acting admin.
        system: Skip the role check (the ``loupe api-key`` command on the server).

    Returns:
        The new key, with its secret (never stored, never shown again).

    Raises:
        PermissionDenied: If ``user`` is not an active admin (and not ``system``).
        LookupError: If the project does not exist.
        ValueError: On an unknown scope or an empty or too long station name.
    """
    creator = None
    if not system:
        creator = require_session_role(session, user, *CAN_MANAGE_USERS, message=ADMIN_MESSAGE)
    if scope not in API_KEY_SCOPES:
        raise ValueError(f"Unknown scope {scope!r}: use one of {', '.join(API_KEY_SCOPES)}.")
    station = station.strip()
    if not station or len(station) > STATION_LENGTH:
        raise ValueError(f"Give the station a name of 1 to {STATION_LENGTH} characters.")
    if session.get(Project, project_id) is None:
        raise LookupError(f"There is no project with id {project_id}.")
    key_id = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        key_id=key_id,
        key_digest=digest(key),
        project_id=project_id,
        station=station,
        scope=scope,
        created_by_id=creator.id if creator is not None else None,
    )
    session.add(row)
    session.flush()
    return NewApiKey(row.id, key, key_id, project_id, station, scope)


def revoke_api_key(
    session: Session, key_id: int, *, user: User | None, system: bool = False
) -> ApiKey:
    """Revoke a key at once (the row stays, for the record); revoking twice is a no-op.

    Raises:
        PermissionDenied: If ``user`` is not an active admin (and not ``system``).
        LookupError: If there is no such key.
    """
    if not system:
        require_session_role(session, user, *CAN_MANAGE_USERS, message=ADMIN_MESSAGE)
    row = session.get(ApiKey, key_id)
    if row is None:
        raise LookupError(f"There is no API key with id {key_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def list_api_keys(session: Session, project_id: int | None = None) -> list[ApiKey]:
    """Every key (of one project), newest first; revoked ones included."""
    statement = select(ApiKey).order_by(ApiKey.id.desc())
    if project_id is not None:
        statement = statement.where(ApiKey.project_id == project_id)
    return list(session.scalars(statement))


def authenticate(session: Session, presented: str | None, *, scope: str) -> ApiKey:
    """The active key ``presented`` names, if it allows ``scope``; marks it used.

    ``inspect`` keys may also read; ``read`` keys may only read.

    Raises:
        PermissionError: Missing, malformed, unknown or revoked key (an HTTP 401).
        PermissionDenied: A valid key without the scope (an HTTP 403).
    """
    match = _KEY.match(presented or "")
    if match is None:
        raise PermissionError("Missing or malformed API key.")
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == match.group(1)))
    if row is None or not hmac.compare_digest(row.key_digest, digest(presented or "")):
        raise PermissionError("Unknown API key.")
    if row.revoked_at is not None:
        raise PermissionError("This API key was revoked.")
    if scope not in API_KEY_SCOPES:
        raise ValueError(f"Unknown scope {scope!r}.")
    if scope == "inspect" and row.scope != "inspect":
        raise PermissionDenied(f"This key's scope is {row.scope!r}: it may not post parts.")
    row.last_used_at = utcnow()
    session.flush()
    return row
