"""Who may do what: role checks enforced by the service functions, not only by the UI.

Roles nest for data changes (admin ⊇ manager ⊇ inspector), except user management, which is
admin-only. Each service function names the roles it accepts with one of the tuples below::

    require_role(user, *CAN_MANAGE_MODELS, message="Only managers can change thresholds")

Service functions that hold a session re-read the user's row first (:func:`require_session_role`),
so a role change or a deactivation takes effect at once, even for a user object cached by the UI.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from db.base import Role
from db.errors import StorageError
from db.models import User

CAN_REVIEW: tuple[str, ...] = (Role.INSPECTOR.value, Role.MANAGER.value, Role.ADMIN.value)
"""Roles that may label parts, undo their own labels and add defect types."""

CAN_MANAGE_MODELS: tuple[str, ...] = (Role.MANAGER.value, Role.ADMIN.value)
"""Roles that may train, activate and re-threshold model versions."""

CAN_MANAGE_USERS: tuple[str, ...] = (Role.ADMIN.value,)
"""Roles that may create, change and deactivate users."""

_PLURAL = {
    Role.INSPECTOR.value: "inspectors",
    Role.MANAGER.value: "managers",
    Role.ADMIN.value: "admins",
}


class PermissionDenied(StorageError):  # noqa: N818 - the name the pages use
    """The user's role (or inactive account) does not allow the requested change."""


def require_role(
    user: User | None, *roles: str | Iterable[str], message: str | None = None
) -> None:
    """Raise unless ``user`` is an active user holding one of ``roles``.

    Args:
        user: The acting user (``None`` is refused: nobody is signed in).
        *roles: Allowed role names; a tuple such as :data:`CAN_MANAGE_MODELS` may be passed
            unpacked or as one argument.
        message: What to tell the user when refused, e.g. "Only managers can change
            thresholds". By default the message names the allowed roles.

    Raises:
        PermissionDenied: If the user is missing, inactive, or has another role.
        ValueError: If no role is given (a programming error).
    """
    allowed = _flatten(roles)
    if not allowed:
        raise ValueError("require_role needs at least one allowed role")
    if user is None:
        raise PermissionDenied(message or "Sign in first: this needs a signed-in user.")
    if not user.active:
        raise PermissionDenied(f"User {user.name!r} is deactivated and cannot make changes.")
    if str(user.role) not in allowed:
        default = f"Only {_describe(allowed)} can do this; {user.name!r} is {_a(user.role)}."
        raise PermissionDenied(message or default)


def require_session_role(
    session: Session, user: User | None, *roles: str | Iterable[str], message: str | None = None
) -> User:
    """Re-read the user's row in ``session``, check the role, and return the current row.

    Use this in service functions: it sees a role change or deactivation made since the UI
    loaded ``user``, and the returned object belongs to ``session``.

    Args:
        session: The caller's session.
        user: The acting user as the caller knows it (may be detached).
        *roles: Allowed role names (see :func:`require_role`).
        message: Refusal message (see :func:`require_role`).

    Returns:
        The user's row, loaded in ``session``.

    Raises:
        PermissionDenied: If the user is missing, unknown, inactive or has another role.
    """
    if user is None:
        require_role(None, *roles, message=message)
    current = session.get(User, user.id) if user is not None and user.id is not None else None
    if current is None:
        raise PermissionDenied("Unknown user: sign in again.")
    require_role(current, *roles, message=message)
    return current


def _flatten(roles: tuple[str | Iterable[str], ...]) -> tuple[str, ...]:
    flat: list[str] = []
    for role in roles:
        if isinstance(role, str):
            flat.append(str(role))
        else:
            flat.extend(str(r) for r in role)
    return tuple(flat)


def _describe(allowed: tuple[str, ...]) -> str:
    names = [_PLURAL.get(role, role + "s") for role in allowed]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _a(role: str) -> str:
    return f"an {role}" if str(role)[:1] in "aeiou" else f"a {role}"
