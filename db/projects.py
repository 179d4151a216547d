"""Projects and their defect vocabulary (model versions: :mod:`db.model_versions`).

None of these functions commits: the caller owns the transaction
(``with Session() as s, s.begin(): ...``). Role checks happen here, not only in the UI.

The model-version functions are re-exported here, so the pages can import the whole project
API from one place.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.model_metrics import THRESHOLD_HISTORY_KEY
from db.model_versions import (
    activate_model_version,
    list_model_versions,
    next_version_number,
    register_model_version,
    set_threshold,
)
from db.models import Project, User
from db.models.projects import PROJECT_NAME_LENGTH
from db.models.reviews import DEFECT_TYPE_LENGTH
from db.permissions import CAN_MANAGE_MODELS, CAN_REVIEW, require_session_role
from db.project_lock import locked_project

__all__ = [
    "THRESHOLD_HISTORY_KEY",
    "activate_model_version",
    "add_defect_type",
    "create_project",
    "get_project",
    "list_model_versions",
    "list_projects",
    "next_version_number",
    "register_model_version",
    "set_threshold",
]


def create_project(
    session: Session,
    *,
    name: str,
    object_name: str = "",
    defect_types: Iterable[str] = (),
    description: str = "",
    target_fnr: float = 0.01,
    user: User | None = None,
) -> Project:
    """Add a project (flushed, so it has an id).

    Args:
        session: The caller's session.
        name: Unique project name (surrounding spaces removed).
        object_name: What is inspected, e.g. "solar cell".
        defect_types: Initial defect vocabulary (trimmed, duplicates dropped).
        description: Free text.
        target_fnr: Largest acceptable miss rate, in [0, 1).
        user: When given, must be a manager or admin.

    Returns:
        The new project.

    Raises:
        ValueError: On an empty, too long or taken name, or a target FNR out of range.
        PermissionDenied: If ``user`` is given and may not manage models.
    """
    if user is not None:
        require_session_role(session, user, *CAN_MANAGE_MODELS, message=_MANAGERS_ONLY)
    name = name.strip()
    if not name or len(name) > PROJECT_NAME_LENGTH:
        raise ValueError(f"A project name needs 1 to {PROJECT_NAME_LENGTH} characters.")
    if not 0.0 <= target_fnr < 1.0:
        raise ValueError(f"The target miss rate must be in [0, 1), got {target_fnr}.")
    if get_project(session, name) is not None:
        raise ValueError(f"A project named {name!r} already exists.")
    project = Project(
        name=name,
        object_name=object_name.strip()[:PROJECT_NAME_LENGTH],
        defect_types=_clean_defect_types(defect_types),
        description=description,
        target_fnr=float(target_fnr),
    )
    session.add(project)
    session.flush()
    return project


def list_projects(session: Session) -> list[Project]:
    """Return every project, ordered by name."""
    return list(session.scalars(select(Project).order_by(Project.name)))


def get_project(session: Session, name_or_id: int | str) -> Project | None:
    """Return the project with this id (an ``int``) or name (a ``str``), or ``None``."""
    if isinstance(name_or_id, int):
        return session.get(Project, name_or_id)
    return session.scalars(select(Project).where(Project.name == name_or_id.strip())).first()


LARGEST_ID = 2**31 - 1
"""The largest row id every backend stores (PostgreSQL's ``integer``)."""


def find_project(session: Session, text: str) -> Project | None:
    """The project a command line or a URL names: all digits is an id, anything else a name.

    Text no project can have (an id past :data:`LARGEST_ID`, a NUL character) finds none.
    """
    if "\x00" in text:
        return None
    if text.isascii() and text.isdigit():
        number = int(text)
        return get_project(session, number) if number <= LARGEST_ID else None
    return get_project(session, text)


def add_defect_type(session: Session, project_id: int, name: str, *, user: User) -> list[str]:
    """Add a defect type to the project's vocabulary (a no-op if it is already there).

    Inspectors may do this from the review page when a part shows a new kind of defect.

    Args:
        session: The caller's session.
        project_id: The project.
        name: The new type (trimmed; compared case-insensitively with the existing ones).
        user: The acting user (inspector, manager or admin).

    Returns:
        The project's defect types after the change.

    Raises:
        ValueError: On an empty or too long name.
        LookupError: If the project does not exist.
        PermissionDenied: If the user may not review.
    """
    require_session_role(session, user, *CAN_REVIEW)
    cleaned = name.strip()
    if not cleaned or len(cleaned) > DEFECT_TYPE_LENGTH:
        raise ValueError(f"A defect type needs 1 to {DEFECT_TYPE_LENGTH} characters.")
    project = locked_project(session, project_id)
    existing = list(project.defect_types or [])
    if cleaned.casefold() not in {t.casefold() for t in existing}:
        project.defect_types = [*existing, cleaned]  # a new list: JSON is not mutation tracked
        session.flush()
    return list(project.defect_types)


_MANAGERS_ONLY = "Only managers can create projects."


def _clean_defect_types(names: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    seen: set[str] = set()
    for raw in names:
        name = str(raw).strip()
        if not name or name.casefold() in seen:
            continue
        if len(name) > DEFECT_TYPE_LENGTH:
            raise ValueError(f"Defect type {name[:20]!r}... is longer than {DEFECT_TYPE_LENGTH}.")
        seen.add(name.casefold())
        cleaned.append(name)
    return cleaned
