"""The Review page's options for managers (not a page): accepting a page as good."""

from __future__ import annotations

import streamlit as st

from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.routing import MANAGERS
from pages.tab_state import load_user, signed_in
from services.review_options import ReviewOptions, review_options, set_review_options

ACCEPT_TOGGLE_KEY = "review_accept_page_toggle"


def toggle_accept_page(project_id: int) -> None:
    """Toggle callback: store the option (the service checks the role)."""
    wanted = bool(st.session_state.get(ACCEPT_TOGGLE_KEY))
    try:
        with transaction() as session:
            set_review_options(
                session,
                project_id,
                ReviewOptions(accept_page_as_good=wanted),
                user=load_user(session),
            )
    except ACTION_ERRORS as err:
        st.session_state.pop(ACCEPT_TOGGLE_KEY, None)
        flash(f"Could not change the review options: {err}", "error")
        return
    flash(
        "Reviewers can now accept the passed parts on their page as good in one press."
        if wanted
        else "Every part is reviewed one by one again.",
        "info",
    )


def review_options_panel(project_id: int) -> None:
    """Managers: the project's review options; others see nothing."""
    user = signed_in()
    if user is None or user["role"] not in MANAGERS:
        return
    with transaction() as session:
        project = get_project(session, project_id)
        current = review_options(project).accept_page_as_good if project is not None else False
    with st.expander("Review options (managers)"):
        st.toggle(
            "Let reviewers accept the passed parts on their page as good in one press (A)",
            value=current,
            key=ACCEPT_TOGGLE_KEY,
            on_change=toggle_accept_page,
            args=(project_id,),
            help="One review per part, by the reviewer. Flagged parts and audit samples are "
            "never accepted this way: each needs its own look.",
        )
