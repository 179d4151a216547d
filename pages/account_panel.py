"""The signed-in user's own account, in the sidebar: change the password.

Not a page. A password change ends every session of the account, this one included
(:func:`db.users.change_password`), so the user signs in again with the new password.
"""

from __future__ import annotations

import streamlit as st

from db.users import MIN_PASSWORD_LENGTH, change_password
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import forget_session_state, load_user

#: Session-state key of the last refused change's message (shown under the popover once).
PROBLEM_KEY = "_password_change_problem"


def change_clicked() -> None:
    """Form callback: change the password, then sign this tab out with a note."""
    current = st.session_state.get("own_password_current") or ""
    new = st.session_state.get("own_password_new") or ""
    repeated = st.session_state.get("own_password_repeat") or ""
    if new != repeated:
        st.session_state[PROBLEM_KEY] = "The new passwords do not match; nothing was changed."
        return
    try:
        with transaction() as session:
            change_password(session, load_user(session), current, new)
    except ACTION_ERRORS as err:
        st.session_state[PROBLEM_KEY] = f"The password was not changed: {err}"
        return
    forget_session_state()  # the session has ended: this tab signs in again
    flash("Your password was changed: sign in with the new one.", "success")


def password_change_popover() -> None:
    """A sidebar popover with the password change form."""
    with (
        st.sidebar.popover("Change password", icon=":material/password:"),
        st.form("own_password", clear_on_submit=True),
    ):
        st.text_input("Current password", type="password", key="own_password_current")
        st.text_input(
            f"New password (at least {MIN_PASSWORD_LENGTH} characters)",
            type="password",
            key="own_password_new",
        )
        st.text_input("New password again", type="password", key="own_password_repeat")
        st.form_submit_button("Save the new password", on_click=change_clicked)
    problem = st.session_state.pop(PROBLEM_KEY, None)
    if problem:
        st.sidebar.error(problem)
