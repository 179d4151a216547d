"""Review: one part at a time from the project's review queue; Good / Defect / Undo."""

from __future__ import annotations

import time

import streamlit as st

import db
from db.projects import get_project
from db.review_queue import queue_size, review_queue, undo_last
from pages.common import (
    ACTION_ERRORS,
    ALL_ROLES,
    flash,
    load_user,
    require_page_role,
    require_project,
    save_review,
    show_flashes,
    show_part,
    transaction,
)
from pages.explanation_panels import show_explanations
from pages.page_tasks import learn_after_review, show_instant_learning

SHOWN_KEY = "review_shown"  # (image_id, monotonic time when first shown)
TYPE_KEY = "review_defect_type"
NEW_TYPE_KEY = "review_new_defect_type"
NO_TYPE = "(unspecified)"
NEW_TYPE = "New type…"


def note_key(image_id: int) -> str:
    """The session-state key of the note field for ``image_id``."""
    return f"review_note_{image_id}"


def seconds_on(image_id: int) -> float | None:
    """Seconds since ``image_id`` was first shown, or None if it is not the part shown."""
    shown = st.session_state.get(SHOWN_KEY)
    if not shown or shown[0] != image_id:
        return None
    return max(time.monotonic() - shown[1], 0.0)


def submit(image_id: int, name: str, label: str, flagged: bool = False) -> None:
    """Button callback: record the label (runs before the next part is drawn)."""
    note = (st.session_state.get(note_key(image_id)) or "").strip() or None
    defect_type = new_type = None
    if label == db.Label.DEFECT:
        choice = st.session_state.get(TYPE_KEY)
        if choice == NEW_TYPE:
            new_type = (st.session_state.get(NEW_TYPE_KEY) or "").strip() or None
            defect_type = new_type
        elif choice and choice != NO_TYPE:
            defect_type = choice
    # A new defect type joins the project's vocabulary inside record_review.
    saved = save_review(
        image_id,
        label,
        defect_type=defect_type,
        note=note,
        seconds_spent=seconds_on(image_id),
    )
    if not saved:
        return
    st.session_state.pop(SHOWN_KEY, None)
    if new_type is not None:
        st.session_state[NEW_TYPE_KEY] = ""
        st.session_state[TYPE_KEY] = new_type
    detail = f" ({defect_type})" if defect_type else ""
    flash(f"{name}: {label}{detail}", "success")
    learn_after_review(project_id, image_id, label, flagged)


def undo() -> None:
    """Button callback: cancel the user's last review (appends an undo row)."""
    try:
        with transaction() as session:
            row = undo_last(session, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not undo: {err}", "error")
        return
    st.session_state.pop(SHOWN_KEY, None)
    flash("Undid your last review." if row is not None else "Nothing to undo.", "info")


require_page_role(*ALL_ROLES)
project_id = require_project()
st.title("Review")
show_flashes()
show_instant_learning()

with transaction() as session:
    remaining = queue_size(session, project_id)
    items = review_queue(session, project_id, limit=1)
    project = get_project(session, project_id)
    defect_types = list(project.defect_types or []) if project is not None else []
    prediction = db.get_prediction(session, items[0].prediction_id) if items else None
    anomaly_map_path = prediction.anomaly_map_path if prediction is not None else None

if not items:
    st.success("Nothing left to review in this project.")
    st.button("Undo last", on_click=undo, key="undo", shortcut="u", icon=":material/undo:")
    st.stop()

item = items[0]
shown = st.session_state.get(SHOWN_KEY)
if not shown or shown[0] != item.image_id:
    st.session_state[SHOWN_KEY] = (item.image_id, time.monotonic())

st.markdown(f"**{remaining}** remaining · {item.original_name}")
if item.audit:
    st.badge(
        "Audit sample (passed part)",
        icon=":material/fact_check:",
        color="violet",
        help="Drawn at random among the parts that passed, to measure the miss rate: "
        "label it like any other part.",
    )
show_part(
    stored_path=item.stored_path,
    anomaly_map_path=anomaly_map_path,
    score=item.score,
    threshold=item.threshold,
    verdict=item.verdict,
    key="review",
    caption=item.original_name,
    scorer=(
        (item.defect_probability, item.probability_threshold)
        if item.defect_probability is not None and item.probability_threshold is not None
        else None
    ),
)
show_explanations(item.prediction_id)

choice = st.selectbox("Defect type (for Defect)", [NO_TYPE, *defect_types, NEW_TYPE], key=TYPE_KEY)
if choice == NEW_TYPE:
    st.text_input("New defect type", key=NEW_TYPE_KEY, max_chars=64)
st.text_input("Note (optional)", key=note_key(item.image_id))

flagged = item.verdict == db.Verdict.DEFECT
good, defect, back = st.columns([2, 2, 1])
good.button(
    "Good",
    type="primary",
    width="stretch",
    shortcut="g",
    icon=":material/check_circle:",
    on_click=submit,
    args=(
        item.image_id,
        item.original_name,
        db.Label.GOOD.value,
        item.verdict == db.Verdict.DEFECT,
    ),
    key="good",
)
defect.button(
    "Defect",
    type="primary",
    width="stretch",
    shortcut="d",
    icon=":material/report:",
    on_click=submit,
    args=(item.image_id, item.original_name, db.Label.DEFECT.value),
    key="defect",
)
back.button(
    "Undo last", width="stretch", shortcut="u", icon=":material/undo:", on_click=undo, key="undo"
)
st.caption("Shortcuts: G = good, D = defect, U = undo last.")
