"""Users: creation, password checks, the first admin account, and account changes.

Account changes by admins (listing, creating, deactivating, changing a role, setting a
password) are each checked here. A password change, a role change and a deactivation end every
signed-in session of the account (:func:`db.auth_sessions.end_user_sessions`): its browsers are
signed out on their next action.

Passwords are hashed with argon2id (``argon2-cffi`` defaults, RFC 9106 low-memory profile) and
never stored or logged in clear. There is no built-in default password: the first admin gets
the password from the environment or a random one-time password returned to the caller.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.auth_sessions import end_user_sessions
from db.base import Role, SessionEnd
from db.errors import StorageError
from db.models import User
from db.models.accounts import USER_NAME_LENGTH
from db.permissions import CAN_MANAGE_USERS, require_session_role

ADMIN_NAME = "admin"
MIN_PASSWORD_LENGTH = 8
GENERATED_PASSWORD_BYTES = 12

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password``."""
    return _hasher.hash(password)


def create_user(session: Session, name: str, password: str, role: str) -> User:
    """Add a user (flushed, so a duplicate name fails here with ``IntegrityError``).

    Args:
        session: The caller's session.
        name: Unique login name (surrounding spaces are removed).
        password: Clear-text password, at least :data:`MIN_PASSWORD_LENGTH` characters.
        role: One of :class:`db.base.Role`.

    Returns:
        The new user.

    Raises:
        ValueError: On an empty or too long name, a short password or an unknown role.
    """
    name = name.strip()
    if not name or len(name) > USER_NAME_LENGTH:
        raise ValueError(f"a user name needs 1 to {USER_NAME_LENGTH} characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    user = User(name=name, role=Role(role).value, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    """Every account, active or not, by name."""
    return list(session.scalars(select(User).order_by(User.name)))


def get_user(session: Session, user_id: int) -> User | None:
    """The account with this id, or ``None``."""
    return session.get(User, user_id)


def add_user(session: Session, admin: User, name: str, password: str, role: str) -> User:
    """An admin creates an account (:func:`create_user` with the role check and a clear refusal).

    Args:
        session: The caller's session (the caller commits).
        admin: The acting admin.
        name: Unique login name.
        password: Clear-text password (see :func:`create_user`).
        role: One of :class:`db.base.Role`.

    Returns:
        The new user.

    Raises:
        PermissionDenied: If ``admin`` may not manage users.
        ValueError: On a bad name, password or role, or a name that is taken.
    """
    require_session_role(session, admin, *CAN_MANAGE_USERS)
    try:
        with session.begin_nested():
            return create_user(session, name, password, role)
    except IntegrityError:
        raise ValueError("that name is taken") from None


def set_user_active(session: Session, admin: User, user_id: int, active: bool) -> User:
    """An admin deactivates or reactivates an account (a deactivated user cannot sign in).

    Args:
        session: The caller's session (the caller commits).
        admin: The acting admin.
        user_id: The account to change.
        active: Its new state.

    Returns:
        The changed user.

    Raises:
        PermissionDenied: If ``admin`` may not manage users.
        LookupError: If there is no such user.
        StorageError: If an admin would deactivate their own account (and lock themselves out).
    """
    acting = require_session_role(session, admin, *CAN_MANAGE_USERS)
    target = _target(session, user_id)
    if target.id == acting.id and not active:
        raise StorageError("You cannot deactivate your own account.")
    target.active = active
    if not active:
        end_user_sessions(session, target.id, SessionEnd.DEACTIVATED)
    session.flush()
    return target


def set_user_role(session: Session, admin: User, user_id: int, role: str) -> User:
    """An admin changes an account's role; the account's sessions end (it signs in again).

    Args:
        session: The caller's session (the caller commits).
        admin: The acting admin.
        user_id: The account to change.
        role: One of :class:`db.base.Role`.

    Returns:
        The changed user.

    Raises:
        PermissionDenied: If ``admin`` may not manage users.
        LookupError: If there is no such user.
        ValueError: On an unknown role.
        StorageError: If an admin would change their own role (and could lose the right to
            undo it).
    """
    acting = require_session_role(session, admin, *CAN_MANAGE_USERS)
    target = _target(session, user_id)
    new_role = Role(role).value
    if target.id == acting.id:
        raise StorageError("You cannot change your own role.")
    if target.role != new_role:
        target.role = new_role
        end_user_sessions(session, target.id, SessionEnd.ROLE_CHANGED)
        session.flush()
    return target


def reset_password(session: Session, admin: User, user_id: int, new_password: str) -> User:
    """An admin sets another account's password; the account's sessions end.

    Raises:
        PermissionDenied: If ``admin`` may not manage users.
        LookupError: If there is no such user.
        ValueError: If the password is too short.
    """
    require_session_role(session, admin, *CAN_MANAGE_USERS)
    target = _target(session, user_id)
    _set_password(session, target, new_password)
    return target


def change_password(session: Session, user: User, current_password: str, new_password: str) -> None:
    """A user changes their own password; all their sessions end, this one included.

    Raises:
        PermissionError: If ``current_password`` is wrong (or the account is inactive).
        ValueError: If the new password is too short.
    """
    fresh = session.get(User, user.id)
    if (
        fresh is None
        or not fresh.active
        or not _verify_quietly(fresh.password_hash, current_password)
    ):
        raise PermissionError("The current password is wrong.")
    _set_password(session, fresh, new_password)


def _set_password(session: Session, user: User, new_password: str) -> None:
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(new_password)
    end_user_sessions(session, user.id, SessionEnd.PASSWORD_CHANGED)
    session.flush()


def _target(session: Session, user_id: int) -> User:
    target = session.get(User, user_id)
    if target is None:
        raise LookupError(f"There is no user with id {user_id}.")
    return target


def verify_password(session: Session, name: str, password: str) -> User | None:
    """Return the active user with this name and password, else ``None``.

    An unknown name costs as much time as a wrong password (no user enumeration by timing). A
    hash made with outdated parameters is replaced in the session; the caller's commit saves it.

    Args:
        session: The caller's session.
        name: Login name.
        password: Clear-text password.

    Returns:
        The user, or ``None`` for an unknown or inactive user or a wrong password.
    """
    user = session.scalars(select(User).where(User.name == name.strip())).first()
    if user is None or not user.active:
        _verify_quietly(_dummy_hash(), password)
        return None
    if not _verify_quietly(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def ensure_admin(session: Session, password_from_env: str | None) -> str | None:
    """Create the ``admin`` user on first start, if no admin exists yet.

    Args:
        session: The caller's session.
        password_from_env: The operator's chosen password (e.g. ``$LOUPE_ADMIN_PASSWORD``);
            empty or ``None`` means "generate one".

    Returns:
        The generated one-time password, for the caller to print once to the server log;
        ``None`` if an admin already existed, if another process created it concurrently, or
        if the password came from the environment.

    Raises:
        ValueError: If the password from the environment is too short.
        sqlalchemy.exc.IntegrityError: If the name ``admin`` is taken by a non-admin user.
    """
    if _admin_exists(session):
        return None
    generated: str | None = None
    if password_from_env:
        password = password_from_env
    else:
        password = generated = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    try:
        with session.begin_nested():
            create_user(session, ADMIN_NAME, password, Role.ADMIN)
    except IntegrityError:
        if not _admin_exists(session):  # e.g. the name "admin" belongs to a non-admin
            raise
        return None  # another process created the admin first
    return generated


def _admin_exists(session: Session) -> bool:
    return session.scalars(select(User.id).where(User.role == Role.ADMIN.value)).first() is not None


def _verify_quietly(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(GENERATED_PASSWORD_BYTES))
