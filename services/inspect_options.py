"""Whether inspectors may score a server folder in Inspect, when a manager allows it.

Scoring a server folder reads files on the server with the server's rights (under the roots an
admin configures, :mod:`services.server_folders`), so it is for managers and admins; a manager
may allow the project's inspectors too. The option is ``settings["inspect"] =
{"inspectors_score_server_folders": bool}`` per project (off by default;
:func:`inspect_options`, :func:`set_inspect_options`, managers only), enforced by
:func:`require_server_folder_scoring`, which :func:`services.inspection.inspect_folder` calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.models import Project, User
from db.permissions import CAN_MANAGE_MODELS, CAN_REVIEW, PermissionDenied, require_session_role
from services.project_settings import store_option

INSPECT_KEY = "inspect"


@dataclass(frozen=True)
class InspectOptions:
    """A project's Inspect options.

    Attributes:
        inspectors_score_server_folders: Inspectors may score a server folder (managers and
            admins always may).
    """

    inspectors_score_server_folders: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["inspect"]``."""
        return {"inspectors_score_server_folders": self.inspectors_score_server_folders}


def inspect_options(project: Project) -> InspectOptions:
    """A project's Inspect options (all off by default)."""
    stored = (project.settings or {}).get(INSPECT_KEY) or {}
    return InspectOptions(
        inspectors_score_server_folders=stored.get("inspectors_score_server_folders") is True
    )


def set_inspect_options(
    session: Session, project_id: int, options: InspectOptions, *, user: User
) -> InspectOptions:
    """Change a project's Inspect options (managers and admins only; the caller commits).

    Raises:
        PermissionDenied: If the user may not manage the project (nothing changes).
        LookupError: If the project does not exist.
    """
    require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change the Inspect options."
    )
    stored = InspectOptions(
        inspectors_score_server_folders=bool(options.inspectors_score_server_folders)
    )
    return inspect_options(store_option(session, project_id, INSPECT_KEY, stored.to_json()))


def may_score_server_folders(role: str, project: Project) -> bool:
    """Whether a user of ``role`` may score a server folder in ``project`` (for the UI)."""
    if role in CAN_MANAGE_MODELS:
        return True
    return role in CAN_REVIEW and inspect_options(project).inspectors_score_server_folders


def require_server_folder_scoring(session: Session, project_id: int, user: User | None) -> User:
    """Check that ``user`` may score a server folder in the project; return the user's row.

    Raises:
        PermissionDenied: If the user may not review, or is an inspector and the project does
            not allow inspectors to score server folders.
        LookupError: If the project does not exist.
    """
    current = require_session_role(session, user, *CAN_REVIEW)
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    if not may_score_server_folders(str(current.role), project):
        raise PermissionDenied(
            "Scoring a server folder is for managers in this project: a manager can allow "
            "inspectors under 'Inspect options'."
        )
    return current
