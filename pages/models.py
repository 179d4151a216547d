"""Models (managers, admins): models and revisions, the decision cascade, the learning loop.

The project's models, each with its revisions (instant updates, recalibrations) and one
promote / roll back action per model, are drawn by :mod:`pages.model_lineages_panel`. The
decision cascade (the screen and the triage model, stage 2: on or off and why, its
auto-accept budget) is drawn by :mod:`pages.cascade_panel`. The learning loop (queue a
retraining job, follow it, compare the candidate with the active model, promote through the
gate or roll back) is drawn by :mod:`pages.model_jobs_panel`; the per-project language-model
option and explainer tuning by :mod:`pages.explanation_settings_panel`; the CLIP zero-/few-shot
detector and its LoRA adaptation by :mod:`pages.clip_settings_panel`.
"""

from __future__ import annotations

import streamlit as st

import db
from adcore.detectors.registry import DETECTOR_KINDS
from db.dashboard import score_ranges
from db.model_lineages import label_of, lineages
from db.projects import create_project, get_project, set_threshold
from pages.action_feedback import ACTION_ERRORS, flash, show_flashes
from pages.cascade_panel import cascade_section
from pages.clip_settings_panel import clip_section
from pages.db_session import session_factory, transaction
from pages.explanation_settings_panel import explanations_section
from pages.model_candidates_panel import candidates_section
from pages.model_jobs_panel import improve_section, jobs_panel
from pages.model_lineages_panel import lineages_section
from pages.page_tasks import TaskProgress, start_task
from pages.routing import MANAGERS
from pages.server_settings import models_root
from pages.tab_state import choose_project, current_project_id, load_user, require_page_role
from services.model_management import recommended_threshold, threshold_preview, train_first_model

JOB_KEY = "training_job"
# CLIP starts from its own section (its weights and prompts come from the project option).
FIRST_MODEL_KINDS = tuple(kind for kind in DETECTOR_KINDS if kind != "clip")


# --------------------------------------------------------------------------- callbacks


def create_project_clicked() -> None:
    """Form callback: create the project from the form fields and flash the outcome."""
    name = (st.session_state.get("new_project_name") or "").strip()
    types = [t for t in (st.session_state.get("new_project_types") or "").split(",") if t.strip()]
    try:
        with transaction() as session:
            project = create_project(
                session,
                name=name,
                object_name=st.session_state.get("new_project_object") or "",
                defect_types=types,
                target_fnr=float(st.session_state.get("new_project_fnr", 1.0)) / 100.0,
                user=load_user(session),
            )
            project_id = project.id
    except ACTION_ERRORS as err:
        flash(f"Could not create the project: {err}", "error")
        return
    choose_project(project_id)
    flash(f"Created project {name!r}.")


def save_threshold_clicked(version_id: int, key: str) -> None:
    """Button callback: save the threshold in ``st.session_state[key]`` for the version."""
    value = st.session_state.get(key)
    try:
        with transaction() as session:
            set_threshold(session, version_id=version_id, threshold=value, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not save the threshold: {err}", "error")
        return
    flash(f"Saved threshold {value:.4g}.")


def use_value(key: str, value: float) -> None:
    """Button callback: put ``value`` into the threshold input ``key``."""
    st.session_state[key] = value


def start_training(project_id: int) -> None:
    """Start training a first model on the typed folder as a background job."""
    folder = (st.session_state.get("train_folder") or "").strip()
    kind = st.session_state.get("train_kind") or "patchcore"
    if not folder:
        flash("Enter the folder of good images first.", "warning")
        return
    with transaction() as session:
        user = load_user(session)  # detached copy: the service re-reads and checks the role
    factory, root = session_factory(), models_root()

    def work(progress: TaskProgress) -> dict:
        version = train_first_model(
            factory,
            project_id=project_id,
            folder_or_paths=folder,
            user=user,
            detector_kind=kind,
            models_root=root,
            progress=progress.update,
        )
        return {"label": label_of(version), "id": version.id, "status": version.status}

    st.session_state[JOB_KEY] = start_task(f"training {kind} on {folder}", work)


@st.fragment(run_every=1.0)
def training_progress() -> None:
    """Poll the background training job; a full rerun when it ends refreshes the page."""
    job: TaskProgress | None = st.session_state.get(JOB_KEY)
    if job is None:
        return
    snap = job.snapshot()
    st.progress(snap["fraction"], text=f"{job.description}: {snap['message']}")
    if snap["done"]:
        st.rerun()


# --------------------------------------------------------------------------- page

signed_in_user = require_page_role(*MANAGERS)
st.title("Models")
show_flashes()

with (
    st.expander("New project", expanded=current_project_id() is None),
    st.form("new_project", clear_on_submit=True),
):
    st.text_input("Name", key="new_project_name", max_chars=128)
    st.text_input("Object inspected", key="new_project_object", placeholder="solar cell")
    st.text_input("Defect types (comma-separated)", key="new_project_types")
    st.number_input("Target miss rate (FNR, %)", 0.0, 50.0, 1.0, 0.5, key="new_project_fnr")
    st.form_submit_button("Create project", on_click=create_project_clicked)

project_id = current_project_id()
if project_id is None:
    st.stop()

with transaction() as session:
    project = get_project(session, project_id)
    models = lineages(session, project_id)
    version_score_ranges = score_ranges(session, project_id)
active_id = project.active_model_version_id if project is not None else None
# every revision of every model, the newest (highest internal number) first
versions = sorted((r for m in models for r in m.revisions), key=lambda r: -r.version)

# ---- models and their revisions
lineages_section(project.name, models)

# ---- the decision cascade: the screen (detector) and the triage model (feedback scorer)
cascade_section(project_id, can_change=signed_in_user["role"] in MANAGERS)

# ---- the learning loop: candidates, jobs that make them
candidates_section(project_id)
improve_section(project_id, has_active_detector=active_id is not None)
clip_section(project_id)
explanations_section(project_id)
jobs_panel(project_id)

# ---- training
st.subheader("Train a first model")
job: TaskProgress | None = st.session_state.get(JOB_KEY)
snap = job.snapshot() if job is not None else None
running = snap is not None and not snap["done"]
st.text_input(
    "Folder of good images on the server",
    key="train_folder",
    placeholder="/data/line-3/good",
    disabled=running,
)
st.selectbox("Detector", FIRST_MODEL_KINDS, key="train_kind", disabled=running)
st.caption("For a CLIP detector (zero-shot needs no images), see the CLIP section above.")
st.button(
    "Train",
    type="primary",
    disabled=running,
    key="train",
    on_click=start_training,
    args=(project_id,),
)
if running:
    training_progress()
elif snap is not None:
    if snap["error"]:
        st.error(f"Training failed: {snap['error']}")
    else:
        result = snap["result"]
        if result["status"] == db.ModelStatus.ACTIVE:
            st.success(f"Trained {result['label']}; it is now the active model.")
        else:
            st.success(
                f"Trained {result['label']}: a candidate, promote it under Candidates to use it."
            )
    if st.button("Dismiss", key="dismiss_job"):
        del st.session_state[JOB_KEY]
        st.rerun()

# ---- threshold
st.subheader("Threshold")
if not versions:
    st.stop()
ids = [v.version_id for v in versions]
by_id = {v.version_id: v for v in versions}
version_id = st.selectbox(
    "Model revision",
    ids,
    index=ids.index(active_id) if active_id in ids else 0,
    format_func=lambda i: f"{by_id[i].label} ({by_id[i].kind}, {by_id[i].status})",
    key="threshold_version",
)
chosen = by_id[version_id]
key = f"threshold-{version_id}"
current = chosen.threshold
low, high = version_score_ranges.get(version_id, (None, None))
if low is None:
    st.caption("No scored parts for this revision yet: type the threshold.")
    st.number_input("Threshold", value=float(current or 0.0), format="%.4f", key=key)
else:
    values = [low, high] + ([current] if current is not None else [])
    low, high = min(values), max(values)
    if high <= low:
        high = low + 1.0
    if key not in st.session_state:
        st.session_state[key] = float(current if current is not None else (low + high) / 2)
    st.slider(
        "Threshold (flag a part when score ≥ threshold)",
        min_value=float(low),
        max_value=float(high),
        step=float((high - low) / 500),
        format="%.4f",
        key=key,
    )
threshold = float(st.session_state[key])

factory = session_factory()
preview = threshold_preview(
    factory, project_id=project_id, model_version_id=version_id, threshold=threshold
)
choice = recommended_threshold(factory, project_id=project_id, model_version_id=version_id)


def percent(value: float | None) -> str:
    """A rate in [0, 1] as a percentage with one decimal, or ``n/a``."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


cols = st.columns(4)
cols[0].metric("Miss rate (FNR)", percent(preview.get("fnr")), help="On labelled defects")
cols[1].metric("False alarms (FPR)", percent(preview.get("fpr")), help="On labelled good parts")
cols[2].metric("Labelled defects", preview.get("n_defect", 0))
cols[3].metric("Labelled good", preview.get("n_good", 0))
st.caption(f"Saved threshold: {'none' if current is None else f'{current:.4f}'}.")
if choice is not None:
    rule = (
        f"lowest FPR with FNR ≤ {percent(choice.target_fnr)}"
        if choice.rule == "fnr_target"
        else f"{choice.good_quantile:.0%} quantile of good scores (no labelled defects yet)"
    )
    st.markdown(f"Recommended: **{choice.value:.4f}** ({rule}).")
    if low is None or low <= choice.value <= high:
        st.button(
            "Use recommended", key="use_recommended", on_click=use_value, args=(key, choice.value)
        )
st.button(
    "Save threshold",
    type="primary",
    key="save_threshold",
    on_click=save_threshold_clicked,
    args=(version_id, key),
)
