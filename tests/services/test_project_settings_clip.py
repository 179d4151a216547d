"""The per-project CLIP option: defaults, validation, and only managers may change it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import Project, Role, User
from db.permissions import PermissionDenied
from services.project_settings import (
    DEFAULT_CLIP_MODEL_NAME,
    DEFAULT_CLIP_PRETRAINED,
    ClipSetting,
    LanguageModelSetting,
    clip_setting,
    language_model_setting,
    set_clip_setting,
    set_language_model,
)


def _set(factory: sessionmaker[Session], project_id: int, user_id: int, setting: ClipSetting):
    with factory() as session, session.begin():
        return set_clip_setting(session, project_id, setting, user=session.get(User, user_id))


def _stored(factory: sessionmaker[Session], project_id: int) -> ClipSetting:
    with factory() as session:
        return clip_setting(session.get(Project, project_id))


def test_defaults_name_the_winclip_model_and_the_projects_object(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    setting = _stored(session_factory, project_id)
    assert setting == ClipSetting(DEFAULT_CLIP_MODEL_NAME, DEFAULT_CLIP_PRETRAINED, "solar cell")
    assert setting.detector_config()["object_name"] == "solar cell"


def test_a_manager_stores_trimmed_values_next_to_the_other_settings(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    manager = make_user("manager-1", Role.MANAGER)
    with session_factory() as session, session.begin():
        set_language_model(
            session,
            project_id,
            LanguageModelSetting(enabled=True, source="smollm2"),
            user=session.get(User, manager),
        )
    stored = _set(
        session_factory,
        project_id,
        manager,
        ClipSetting("  ViT-B-16 ", " /models/clip.safetensors ", "  metal   nut "),
    )
    assert stored == ClipSetting("ViT-B-16", "/models/clip.safetensors", "metal nut")
    assert _stored(session_factory, project_id) == stored
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert language_model_setting(project).enabled  # the other option is kept
    cleared = _set(session_factory, project_id, manager, ClipSetting("ViT-B-16", "x.pt", ""))
    assert cleared.object_name == "solar cell"  # empty follows the project's object again


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (ClipSetting("", "laion400m_e32"), "Name a CLIP model"),
        (ClipSetting("ViT B 16", "laion400m_e32"), "no spaces"),
        (ClipSetting("ViT-B-16", "   "), "Give the CLIP weights"),
        (ClipSetting("ViT-B-16", "/x/" + "a" * 600), "longer than"),
        (ClipSetting("ViT-B-16", "laion400m_e32", "x" * 61), "object name is longer"),
        (ClipSetting("ViT-B-16", "laion400m_e32", "nut {0}"), "braces"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
    setting: ClipSetting,
    message: str,
) -> None:
    manager = make_user("manager-1", Role.MANAGER)
    with pytest.raises(ValueError, match=message):
        _set(session_factory, project_id, manager, setting)
    assert _stored(session_factory, project_id).model_name == DEFAULT_CLIP_MODEL_NAME


def test_inspectors_cannot_change_it_and_unknown_projects_are_refused(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    inspector = make_user("inspector-1", Role.INSPECTOR)
    with pytest.raises(PermissionDenied):
        _set(session_factory, project_id, inspector, ClipSetting("ViT-B-16", "x.pt"))
    assert _stored(session_factory, project_id).pretrained == DEFAULT_CLIP_PRETRAINED
    manager = make_user("manager-1", Role.MANAGER)
    with pytest.raises(LookupError):
        _set(session_factory, project_id + 100, manager, ClipSetting("ViT-B-16", "x.pt"))
