"""The "CLIP detector" section of the Models page (not a page: a helper module).

Managers name the project's CLIP model (open_clip architecture, weights as a cached pretrained
tag or a local checkpoint path, and the object named in the prompts). When the weights are not
on this machine the reason is shown and every CLIP action is disabled with it (nothing is ever
downloaded). Otherwise three background jobs (see :mod:`services.training.clip_jobs`) each make a
detector candidate:

* ``train_clip`` zero-shot: no image needed;
* ``train_clip`` few-shot: a folder of good images on the server and/or the confirmed-good parts;
* ``tune_clip``: LoRA adapters + learnable prompts of the active CLIP detector, trained on the
  inspectors' labelled parts.

Roles are checked by :func:`services.project_settings.set_clip_setting` and
:func:`db.jobs.enqueue_job`. The method and its costs: ``docs/clip.md``.
"""

from __future__ import annotations

import streamlit as st

import db
from db.model_families import ModelFamily, active_version
from db.projects import get_project
from pages import model_jobs_panel
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.project_settings import (
    MAX_CLIP_MODEL_NAME,
    MAX_CLIP_OBJECT_NAME,
    MAX_SOURCE_LENGTH,
    ClipSetting,
    clip_setting,
    set_clip_setting,
)
from services.training.training_data import labelled_parts

TRAIN_CLIP, TUNE_CLIP = model_jobs_panel.CLIP_JOB_SPECS
MAX_SHOTS = 64
DOCS = "docs/clip.md"


def field_key(project_id: int, name: str) -> str:
    """Session-state key of one input of the project's CLIP option."""
    return f"clip_{name}_{project_id}"


@st.cache_data(ttl=30, show_spinner=False)
def unavailable_reason(model_name: str, pretrained: str) -> str | None:
    """Why these CLIP weights cannot be used here (None when they can); cached briefly."""
    from adcore.detectors.clip import clip_unavailable

    return clip_unavailable(model_name, pretrained)


def save_clicked(project_id: int) -> None:
    """Store the typed CLIP option (the db function checks the role and the values)."""
    wanted = ClipSetting(
        model_name=st.session_state.get(field_key(project_id, "model")) or "",
        pretrained=st.session_state.get(field_key(project_id, "weights")) or "",
        object_name=st.session_state.get(field_key(project_id, "object")) or "",
    )
    try:
        with transaction() as session:
            stored = set_clip_setting(session, project_id, wanted, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not save the CLIP option: {err}", "error")
        return
    unavailable_reason.clear()
    for name, value in (
        ("model", stored.model_name),
        ("weights", stored.pretrained),
        ("object", stored.object_name),
    ):
        st.session_state[field_key(project_id, name)] = value
    flash(f"Saved the CLIP option: {stored.model_name} with {stored.pretrained}.")


def start_clicked(project_id: int, few_shot: bool) -> None:
    """Queue a zero-shot or few-shot ``train_clip`` job."""
    parameters: dict[str, object] = {"shots": 0}
    label = "Start zero-shot CLIP detector"
    if few_shot:
        shots = int(st.session_state.get(field_key(project_id, "shots")) or 4)
        parameters = {"shots": shots}
        folder = (st.session_state.get(field_key(project_id, "folder")) or "").strip()
        if folder:
            parameters["train_folder"] = folder
        label = f"Start few-shot CLIP detector ({shots} shots)"
    model_jobs_panel.queue_clicked(project_id, TRAIN_CLIP.kind, label, parameters)


def _tuning_blocker(session: object, project_id: int) -> str | None:
    """Why LoRA tuning cannot be queued now (None when it can)."""
    active = active_version(session, project_id, ModelFamily.DETECTOR)
    if active is None or active.kind != "clip":
        now = "no active detector" if active is None else f"the active detector is {active.kind}"
        return f"Adapting needs an active CLIP detector ({now}): start one and promote it."
    parts = labelled_parts(session, project_id, db.data_dir())
    n_defect = sum(part.is_defect for part in parts)
    if n_defect == 0 or n_defect == len(parts):
        return (
            "Adapting needs labelled good and defective parts "
            f"({len(parts) - n_defect} good, {n_defect} defective so far): label some in Review."
        )
    return None


def clip_section(project_id: int) -> None:
    """The CLIP option, the reason it cannot be used (if any) and the CLIP jobs."""
    with transaction() as session:
        project = get_project(session, project_id)
        if project is None:
            return
        setting = clip_setting(project)
        blocker = _tuning_blocker(session, project_id)
    st.subheader("CLIP detector (zero-/few-shot)")
    st.caption(
        "A detector from a pre-trained CLIP model: it needs no training images (zero-shot) or "
        "a few good ones (few-shot), and can be adapted with LoRA once parts are labelled. "
        f"The weights must already be on this server; nothing is downloaded (see `{DOCS}`)."
    )
    for name, value in (
        ("model", setting.model_name),
        ("weights", setting.pretrained),
        ("object", setting.object_name),
    ):
        st.session_state.setdefault(field_key(project_id, name), value)
    left, middle, right = st.columns(3)
    left.text_input(
        "CLIP model (open_clip name)",
        key=field_key(project_id, "model"),
        max_chars=MAX_CLIP_MODEL_NAME,
    )
    middle.text_input(
        "Weights: pretrained tag or checkpoint path",
        key=field_key(project_id, "weights"),
        max_chars=MAX_SOURCE_LENGTH,
        help="An open_clip tag already in the local cache (e.g. laion400m_e32) or a local "
        ".safetensors / .bin checkpoint file.",
    )
    right.text_input(
        "Object in the prompts",
        key=field_key(project_id, "object"),
        max_chars=MAX_CLIP_OBJECT_NAME,
        help="Empty: the project's object.",
    )
    st.button("Save CLIP option", key="save_clip", on_click=save_clicked, args=(project_id,))

    reason = unavailable_reason(setting.model_name, setting.pretrained)
    if reason is not None:
        st.warning(
            f"CLIP cannot be used: {reason}. Here, give a checkpoint file's path as the weights.",
            icon=":material/block:",
        )
    kind_known = TRAIN_CLIP.kind in model_jobs_panel.registered_kinds()
    start_reason = reason or (None if kind_known else "This installation has no CLIP jobs.")
    zero, few = st.columns(2)
    zero.button(
        "Start zero-shot CLIP detector",
        key="queue-train_clip-zero",
        icon=TRAIN_CLIP.icon,
        on_click=start_clicked,
        args=(project_id, False),
        disabled=start_reason is not None,
        help=start_reason or "No image needed: CLIP compares each part with text prompts.",
        width="stretch",
    )
    few.button(
        "Start few-shot CLIP detector",
        key="queue-train_clip-few",
        icon=TRAIN_CLIP.icon,
        on_click=start_clicked,
        args=(project_id, True),
        disabled=start_reason is not None,
        help=start_reason
        or "Up to the chosen number of good images (the folder below, then the confirmed-good "
        "parts) become references.",
        width="stretch",
    )
    with st.expander("Few-shot options"):
        st.number_input(
            "Good reference images (shots)", 1, MAX_SHOTS, 4, key=field_key(project_id, "shots")
        )
        st.text_input(
            "Folder of good images on the server (optional: else the confirmed-good parts)",
            key=field_key(project_id, "folder"),
            placeholder="/data/line-3/good",
        )
    tune_reason = reason or blocker
    st.button(
        TUNE_CLIP.label,
        key="queue-tune_clip",
        icon=TUNE_CLIP.icon,
        on_click=model_jobs_panel.queue_clicked,
        args=(project_id, TUNE_CLIP.kind, TUNE_CLIP.label),
        disabled=tune_reason is not None,
        help=tune_reason or TUNE_CLIP.explanation,
    )
    if tune_reason is not None and reason is None:
        st.caption(tune_reason)
