"""The CLIP section of the Models page: the option, the disabled state, queuing CLIP jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_support import INSPECTOR, MANAGER, Workbench, signed_in_app
from clip_tiny import TINY_CLIP, save_tiny_clip
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from pages.routing import pages_for_role
from services.project_settings import ClipSetting, clip_setting, set_clip_setting

CLIP_BUTTONS = ("queue-train_clip-zero", "queue-train_clip-few", "queue-tune_clip")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip-ui"))


@pytest.fixture(autouse=True)
def fresh_reason_cache() -> None:
    from pages.clip_settings_panel import unavailable_reason

    unavailable_reason.clear()


def use_clip(workbench: Workbench, model_name: str, pretrained: str) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        set_clip_setting(
            session, workbench.project_id, ClipSetting(model_name, pretrained), user=manager
        )


def open_models() -> AppTest:
    at = signed_in_app("manager")
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def clip_jobs(workbench: Workbench) -> list[db.Job]:
    with workbench.factory() as session:
        return list(
            session.scalars(
                select(db.Job)
                .where(db.Job.kind.in_(("train_clip", "tune_clip")))
                .order_by(db.Job.id)
            )
        )


def test_without_weights_every_clip_action_is_disabled_with_the_reason(
    workbench: Workbench, tmp_path: Path
) -> None:
    absent = tmp_path / "no-clip-here.safetensors"
    use_clip(workbench, "ViT-B-16-plus-240", str(absent))
    at = open_models()

    assert "CLIP detector (zero-/few-shot)" in [header.value for header in at.subheader]
    warnings = [warning.value for warning in at.warning if "CLIP cannot be used" in warning.value]
    assert len(warnings) == 1 and str(absent) in warnings[0]
    for key in CLIP_BUTTONS:
        button = at.button(key=key)
        assert button.disabled and str(absent) in button.help
    assert "clip" not in at.selectbox(key="train_kind").options  # started from its section
    assert clip_jobs(workbench) == []


def test_with_a_checkpoint_the_manager_saves_the_option_and_queues_zero_and_few_shot(
    workbench: Workbench, tiny_checkpoint: Path
) -> None:
    at = open_models()
    project_id = workbench.project_id
    assert at.text_input(key=f"clip_object_{project_id}").value == "widget"  # the project's
    at.text_input(key=f"clip_model_{project_id}").input(TINY_CLIP)
    at.text_input(key=f"clip_weights_{project_id}").input(str(tiny_checkpoint))
    at.button(key="save_clip").click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        stored = clip_setting(session.get(db.Project, project_id))
    assert stored == ClipSetting(TINY_CLIP, str(tiny_checkpoint), "widget")
    assert not [w for w in at.warning if "CLIP cannot be used" in w.value]
    assert not at.button(key="queue-train_clip-zero").disabled
    tune = at.button(key="queue-tune_clip")
    assert tune.disabled and "active detector is patchcore" in tune.help  # not a CLIP one

    at.button(key="queue-train_clip-zero").click().run()
    at.number_input(key=f"clip_shots_{project_id}").set_value(2)
    at.text_input(key=f"clip_folder_{project_id}").input("/data/good")
    at.button(key="queue-train_clip-few").click().run()

    assert not at.exception, at.exception
    zero, few = clip_jobs(workbench)
    assert (zero.kind, zero.parameters, zero.project_id) == ("train_clip", {"shots": 0}, project_id)
    assert few.parameters == {"shots": 2, "train_folder": "/data/good"}
    assert zero.status == "queued" and zero.created_by_id == workbench.users[MANAGER]


def test_a_bad_value_is_refused_without_a_crash(workbench: Workbench) -> None:
    at = open_models()
    at.text_input(key=f"clip_model_{workbench.project_id}").input("ViT B 16")
    at.button(key="save_clip").click().run()

    assert not at.exception, at.exception
    assert any("Could not save the CLIP option" in error.value for error in at.error)
    with workbench.factory() as session:
        assert clip_setting(session.get(db.Project, workbench.project_id)).model_name != "ViT B 16"


def test_inspectors_cannot_change_the_clip_option(workbench: Workbench) -> None:
    assert "pages/models.py" not in [page.path for page in pages_for_role("inspector")]
    with workbench.factory() as session, pytest.raises(db.PermissionDenied):
        set_clip_setting(
            session,
            workbench.project_id,
            ClipSetting(TINY_CLIP, "/x.safetensors"),
            user=session.get(db.User, workbench.users[INSPECTOR]),
        )
