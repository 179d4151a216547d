"""Accept or edit a shown explanation with one click (not a page: a helper module).

Under the "Why" text: **Accept explanation** stores the shown text as it is, **Edit** opens a
text area prefilled with it and **Save my wording** stores the inspector's words. Either way an
:class:`db.models.ExplanationNote` is appended (:func:`db.explanation_notes.add_explanation_note`
checks the role and the text), which becomes training data for explanation adapters. The
latest note of the part is shown afterwards.
"""

from __future__ import annotations

import streamlit as st

from db.explanation_notes import MAX_NOTE_LENGTH, add_explanation_note, latest_note
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user, signed_in


def editing_key(prediction_id: int) -> str:
    """Session-state key of an open edit box: ``(shown text, source)`` when it was opened."""
    return f"explanation_editing_{prediction_id}"


def wording_key(prediction_id: int) -> str:
    """Session-state key of a prediction's edit box."""
    return f"explanation_wording_{prediction_id}"


def store_note(prediction_id: int, shown_text: str, text: str | None, source: str) -> bool:
    """Append a note as the signed-in user; flash an error and return False on failure."""
    try:
        with transaction() as session:
            add_explanation_note(
                session,
                prediction_id=prediction_id,
                shown_text=shown_text,
                text=text,
                source=source,
                user=load_user(session),
            )
    except ACTION_ERRORS as err:
        flash(f"Could not save the explanation: {err}", "error")
        return False
    return True


def accept_clicked(prediction_id: int, shown_text: str, source: str) -> None:
    """Button callback: the shown explanation is right as it is."""
    if store_note(prediction_id, shown_text, None, source):
        st.session_state.pop(editing_key(prediction_id), None)
        flash("Explanation accepted.")


def edit_clicked(prediction_id: int, shown_text: str, source: str) -> None:
    """Button callback: open the edit box, prefilled with the shown text."""
    st.session_state[editing_key(prediction_id)] = (shown_text, source)
    st.session_state[wording_key(prediction_id)] = shown_text


def cancel_clicked(prediction_id: int) -> None:
    """Button callback: close the edit box without saving."""
    st.session_state.pop(editing_key(prediction_id), None)


def save_wording_clicked(prediction_id: int) -> None:
    """Button callback: store the inspector's own wording of the text the box was opened on."""
    opened = st.session_state.get(editing_key(prediction_id))
    if not opened:
        return
    shown_text, source = opened
    text = st.session_state.get(wording_key(prediction_id)) or ""
    if store_note(prediction_id, shown_text, text, source):
        st.session_state.pop(editing_key(prediction_id), None)
        flash("Saved your wording of the explanation.")


def note_line(action: str, author: str | None, text: str, mine: bool) -> str:
    """How the latest note reads under the explanation."""
    if action == "accepted":
        return f"Accepted by {author or 'a former user'}."
    who = "Your wording" if mine else f"Wording by {author or 'a former user'}"
    return f"{who}: {text}"


def explanation_notes(prediction_id: int, shown_text: str, source: str) -> None:
    """The latest note and the Accept / Edit buttons under a shown explanation.

    Args:
        prediction_id: The prediction whose explanation is shown.
        shown_text: The text the inspector sees.
        source: Who wrote it: ``grounded``, ``model`` or ``adapter``.
    """
    user = signed_in() or {}
    with transaction() as session:
        note = latest_note(session, prediction_id)
        latest = (
            None
            if note is None
            else note_line(
                note.action,
                note.author.name if note.author else None,
                note.text,
                note.author_id == user.get("id"),
            )
        )
    if latest is not None:
        st.caption(f":material/rate_review: {latest}")
    accept, edit = st.columns(2)
    accept.button(
        "Accept explanation",
        key=f"accept_explanation_{prediction_id}",
        icon=":material/thumb_up:",
        on_click=accept_clicked,
        args=(prediction_id, shown_text, source),
        width="stretch",
        help="Keep this explanation as it is (it becomes training data for the explainer).",
    )
    edit.button(
        "Edit",
        key=f"edit_explanation_{prediction_id}",
        icon=":material/edit:",
        on_click=edit_clicked,
        args=(prediction_id, shown_text, source),
        width="stretch",
        help="Write the explanation in your own words.",
    )
    if not st.session_state.get(editing_key(prediction_id)):
        return
    st.text_area(
        "Your wording of the explanation",
        key=wording_key(prediction_id),
        max_chars=MAX_NOTE_LENGTH,
    )
    save, cancel = st.columns(2)
    save.button(
        "Save my wording",
        key=f"save_wording_{prediction_id}",
        type="primary",
        icon=":material/save:",
        on_click=save_wording_clicked,
        args=(prediction_id,),
        width="stretch",
    )
    cancel.button(
        "Cancel",
        key=f"cancel_wording_{prediction_id}",
        on_click=cancel_clicked,
        args=(prediction_id,),
        width="stretch",
    )
