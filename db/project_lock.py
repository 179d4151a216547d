"""The project write lock: serialise read-modify-writes of a project's state."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Project


def locked_project(session: Session, project_id: int) -> Project:
    """Write the project's row (a no-op change) to take the write lock; return it refreshed.

    Call this before a read-modify-write of a project's state (its defect types, version
    numbers, active version, thresholds): concurrent changes then queue up (the SQLite
    database lock, a row lock elsewhere) instead of losing updates.

    Raises:
        LookupError: If the project does not exist.
    """
    locked = session.execute(  # ORM-enabled, so pending changes are flushed first
        update(Project)
        .where(Project.id == project_id)
        .values(target_fnr=Project.target_fnr)
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount == 0:
        raise LookupError(f"There is no project with id {project_id}.")
    project = session.get(Project, project_id)
    assert project is not None
    session.refresh(project)
    return project
