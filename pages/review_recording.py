"""Recording the signed-in user's label for a part, and showing what the review set off.

Not a page. The review service (:func:`services.reviewing.label_part`) records a label and
queues what it calls for; here it is called for the Inspect page (:func:`save_review`) and the
Review desk (:func:`record_label`), and its notices and instant update are shown
(:func:`show_review_outcome`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import streamlit as st

from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import session_factory
from pages.tab_state import signed_in

if TYPE_CHECKING:
    from services.reviewing import Notice

#: Session-state key: the ids of the instant-update jobs this tab follows (oldest first), shown
#: until they end by :func:`pages.page_tasks.show_instant_learning`.
LEARNING_JOBS_KEY = "instant_learning_jobs"


def save_review(
    image_id: int,
    label: str,
    *,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
) -> bool:
    """Record the signed-in user's label for an image; flash an error and return False on failure.

    For button callbacks (Inspect): :func:`record_label` with its refusal flashed.
    """
    error = record_label(
        image_id, label, defect_type=defect_type, note=note, seconds_spent=seconds_spent
    )
    if error is not None:
        flash(f"Could not save the review: {error}", "error")
    return error is None


def record_label(
    image_id: int,
    label: str,
    *,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
    region: dict[str, Any] | None = None,
) -> str | None:
    """Record the signed-in user's label for an image; return why not, or None when saved.

    The review service (:func:`services.reviewing.label_part`) records it and queues what it
    calls for, in one transaction; what it set off is shown (:func:`show_review_outcome`).
    """
    from services.reviewing import label_part

    info = signed_in()
    if info is None:
        return "Please sign in again."
    try:
        saved = label_part(
            session_factory(),
            user_id=info["id"],
            image_id=image_id,
            label=label,
            defect_type=defect_type,
            note=note,
            seconds_spent=seconds_spent,
            region=region,
        )
    except ACTION_ERRORS as err:
        return str(err)
    show_review_outcome(saved.notices, saved.learning_job_id)
    return None


def show_review_outcome(notices: Iterable[Notice], learning_job_id: int | None = None) -> None:
    """Flash a review's notices; follow the instant update that learns the part, if any."""
    for notice in notices:
        flash(notice.text, notice.kind)
    if learning_job_id is not None:
        followed = st.session_state.setdefault(LEARNING_JOBS_KEY, [])
        if learning_job_id not in followed:
            followed.append(learning_job_id)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
