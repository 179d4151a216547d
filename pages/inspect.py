"""Inspect: score uploaded images or a server folder with the project's active model."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import db
from adcore.errors import LoupeError
from db.model_lineages import label_of
from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash, show_flashes
from pages.db_session import session_factory, transaction
from pages.detector_cache import load_detector_cached
from pages.explanation_panels import show_explanations
from pages.inspect_options_panel import inspect_options_panel
from pages.page_tasks import show_instant_learning
from pages.part_display import show_part
from pages.review_recording import save_review
from pages.routing import ALL_ROLES
from pages.tab_state import load_user, require_page_role, require_project
from services.inspect_options import may_score_server_folders
from services.inspection import InspectionRequest, inspect_folder, inspect_uploads
from services.scoring.predictor import Predictor
from services.scoring.runtime import ONNX, RuntimeChoiceError, configured_runtime
from services.server_folders import ServerFolderError, describe_roots

RESULTS_KEY = "inspect_results"
LABEL_TYPE_KEY = "inspect_defect_type"
NO_TYPE = "(unspecified)"
SOURCE_UPLOAD = "Upload images"
SOURCE_FOLDER = "Server folder"

viewer = require_page_role(*ALL_ROLES)
project_id = require_project()
st.title("Inspect")
show_flashes()
show_instant_learning()
inspect_options_panel(project_id)

with transaction() as session:
    project = get_project(session, project_id)
    folder_allowed = project is not None and may_score_server_folders(viewer["role"], project)
    version = project.active_model_version if project is not None else None
    artifact = version.artifact_path if version is not None else None
    version_id = version.id if version is not None else None
    version_label = f"{label_of(version)} ({version.kind})" if version is not None else ""

if version_id is None:
    st.info("This project has no active model yet. A manager can train one on the Models page.")
    st.stop()
try:
    runtime = configured_runtime()
except RuntimeChoiceError as err:
    st.error(str(err))
    st.stop()
runtime_name = "onnxruntime" if runtime == ONNX else "torch"
st.caption(f"Scoring with model {version_label} on {runtime_name}.")

if folder_allowed:  # managers; inspectors when a manager allows it (the service checks too)
    source = st.radio("Images from", [SOURCE_UPLOAD, SOURCE_FOLDER], horizontal=True, key="source")
else:
    source = SOURCE_UPLOAD
uploads = folder = None
if source == SOURCE_UPLOAD:
    uploads = st.file_uploader("Images", accept_multiple_files=True, key="uploads")
else:
    try:
        roots = f"Only folders under {describe_roots()} can be read."
    except ServerFolderError as err:  # a relative root in the environment
        roots = str(err)
    folder = st.text_input(
        "Folder on the server", key="folder", placeholder="/data/line-3/2024-06-01", help=roots
    )
# A typed folder is only committed when the field loses focus: never disable for it.
ready = bool(uploads) if source == SOURCE_UPLOAD else True

clicked = st.button("Score", type="primary", disabled=not ready, key="score")
if clicked and source == SOURCE_FOLDER and not (folder and folder.strip()):
    st.warning("Enter a folder on the server first.")
elif clicked:
    bar = st.progress(0.0, text="Loading the model…")

    def progress(fraction: float, message: str) -> None:
        """Show the scoring progress (``fraction`` clamped to [0, 1]) on the bar."""
        bar.progress(min(max(fraction, 0.0), 1.0), text=message)

    try:
        scoring = load_detector_cached(artifact, runtime)
        detector = scoring.detector
        if scoring.note:
            st.caption(scoring.note)
        predictor = Predictor.load(
            session_factory(),
            project_id=project_id,
            model_version_id=version_id,
            detector=detector,
        )
        request = InspectionRequest(predictor, progress=progress)
        if source == SOURCE_UPLOAD:
            uploaded = [(file.name, file.getvalue()) for file in uploads]
            results = inspect_uploads(session_factory(), request, uploaded)
        else:
            with transaction() as session:
                user = load_user(session)
            results = inspect_folder(session_factory(), request, folder.strip(), user=user)
    except (*ACTION_ERRORS, LoupeError, OSError) as err:
        bar.empty()
        st.error(f"Scoring failed: {err}")
    else:
        bar.progress(1.0, text=f"Scored {len(results)} file(s).")
        st.session_state[RESULTS_KEY] = (project_id, results)

shown_project, results = st.session_state.get(RESULTS_KEY) or (None, [])
if shown_project != project_id:  # results of another project: not shown here
    results = []
if not results:
    st.stop()

table = pd.DataFrame(
    {
        "File": [r.name for r in results],
        "Score": [r.score for r in results],
        "Threshold": [r.threshold for r in results],
        "Verdict": [r.verdict or "" for r in results],
        "Error": [r.error or "" for r in results],
    }
).sort_values("Score", ascending=False, na_position="last")
n_defect = sum(r.verdict == db.Label.DEFECT for r in results)
n_error = sum(bool(r.error) for r in results)
st.subheader(f"Results: {len(results)} file(s), {n_defect} flagged, {n_error} refused")
st.dataframe(
    table,
    hide_index=True,
    key="results_table",
    column_config={
        "Score": st.column_config.NumberColumn(format="%.4f"),
        "Threshold": st.column_config.NumberColumn(format="%.4f"),
    },
)

scored = sorted(
    (r for r in results if r.image_id is not None and not r.error),
    key=lambda r: r.score if r.score is not None else float("-inf"),
    reverse=True,
)
if not scored:
    st.stop()
st.subheader("Detail")
index = st.selectbox(
    "Part",
    range(len(scored)),
    format_func=lambda i: f"{scored[i].name} · {scored[i].score:.4g} · {scored[i].verdict}",
    key="detail",
)
chosen = scored[index]
with transaction() as session:
    image = db.get_image(session, chosen.image_id)
    stored_path = image.stored_path if image is not None else None
    latest = db.current_label(session, chosen.image_id)
    current = latest.label if latest is not None else None
if stored_path is None:
    st.warning("This image is no longer stored.")
    st.stop()
show_part(
    stored_path=stored_path,
    anomaly_map_path=chosen.anomaly_map_path,
    score=chosen.score,
    threshold=chosen.threshold,
    verdict=chosen.verdict,
    key=f"inspect-{chosen.image_id}",
    caption=chosen.name,
    prediction_id=chosen.prediction_id,
)
show_explanations(chosen.prediction_id)


def label_part(image_id: int, name: str, label: str) -> None:
    """Button callback: the signed-in user labels the part shown in the detail view."""
    choice = st.session_state.get(LABEL_TYPE_KEY)
    defect_type = choice if label == db.Label.DEFECT and choice not in (None, NO_TYPE) else None
    if save_review(image_id, label, defect_type=defect_type):
        flash(f"{name}: labelled {label}", "success")


st.markdown(f"**Label this part** · current label: {current or 'not reviewed'}")
with transaction() as session:
    project = get_project(session, project_id)
    defect_types = list(project.defect_types or []) if project is not None else []
type_col, good_col, defect_col = st.columns([2, 1, 1])
type_col.selectbox("Defect type (for Defect)", [NO_TYPE, *defect_types], key=LABEL_TYPE_KEY)
good_col.button(
    "Good",
    width="stretch",
    icon=":material/check_circle:",
    on_click=label_part,
    args=(chosen.image_id, chosen.name, db.Label.GOOD.value),
    key="inspect_good",
)
defect_col.button(
    "Defect",
    width="stretch",
    icon=":material/report:",
    on_click=label_part,
    args=(chosen.image_id, chosen.name, db.Label.DEFECT.value),
    key="inspect_defect",
)
