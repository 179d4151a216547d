"""What a browser tab remembers in ``st.session_state``: the signed-in user and the project.

Not a page. ``app.py`` checks the tab's sign-in on every run (:func:`refresh_user`) and keeps
the sidebar's project picker in :data:`PROJECT_KEY`; the pages ask for a role
(:func:`require_page_role`), the picked project (:func:`require_project`) and the user as a
database row for the service functions (:func:`load_user`). The browser's session cookie,
shared by its tabs, is :mod:`pages.browser_session`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

import db
from pages.db_session import transaction
from pages.routing import ensure_routed

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Session-state keys (one place, so pages and tests agree).
USER_KEY = "user"
PROJECT_KEY = "project_id"
PICKER_KEY = "sidebar_project"  # the sidebar project selectbox


# --------------------------------------------------------------------------- the user


def sign_in(user: db.User, session_id: int) -> None:
    """Remember the signed-in user and their session (``db.auth_sessions``) in this tab."""
    st.session_state[USER_KEY] = {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "session_id": session_id,
    }


def sign_out() -> None:
    """End the signed-in session (every tab of this browser) and forget this tab's state."""
    from services.sign_in import sign_out as end_signed_in_session

    info = signed_in()
    if info is not None:
        with transaction() as session:
            end_signed_in_session(session, info["session_id"])
    forget_session_state()


def forget_session_state() -> None:
    """Forget the signed-in user and everything this tab was doing."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def signed_in() -> dict | None:
    """``{"id", "name", "role", "session_id"}`` of the signed-in user, or None."""
    return st.session_state.get(USER_KEY)


def refresh_user() -> dict | None:
    """Check this tab's session on every run; resume one from the browser's cookie.

    Called once per run by ``app.py``: a session that ended (sign-out in another tab, a
    password or role change, a deactivation) or expired signs this tab out; a role changed in
    the database directly takes effect. A tab without a user (a reload, a new tab) is signed
    in from the session cookie when that session is live.
    """
    from db.auth_sessions import live_session
    from pages.browser_session import browser_cookie
    from services.sign_in import resume_session

    info = signed_in()
    with transaction() as session:
        if info is None:
            resumed = resume_session(session, browser_cookie())
        else:
            resumed = live_session(session, info["session_id"])
        if resumed is not None:
            sign_in(resumed.user, resumed.id)
            return signed_in()
    if info is not None:
        forget_session_state()
    return None


def load_user(session: Session) -> db.User:
    """The signed-in user as a row of ``session`` (what the service functions check).

    Raises:
        PermissionError: If nobody is signed in or the account was deactivated.
    """
    info = signed_in()
    user = None if info is None else db.get_user(session, info["id"])
    if user is None or not user.active:
        raise PermissionError("Please sign in again.")
    return user


def require_page_role(*roles: str) -> dict:
    """Stop the page unless the signed-in user has one of ``roles`` (navigation hides it too)."""
    ensure_routed()
    info = signed_in()
    if info is None or info["role"] not in roles:
        st.error("You do not have access to this page.")
        st.stop()
    return info


# --------------------------------------------------------------------------- the project


def current_project_id() -> int | None:
    """The project picked in the sidebar, or None."""
    return st.session_state.get(PROJECT_KEY)


def choose_project(project_id: int) -> None:
    """Make ``project_id`` the picked project (call from a callback, before the sidebar runs)."""
    st.session_state[PROJECT_KEY] = project_id
    st.session_state[PICKER_KEY] = project_id


def require_project() -> int:
    """The picked project's id; stops the page with a hint when there is none."""
    project_id = current_project_id()
    if project_id is None:
        st.info("No project yet. A manager can create one on the Models page.")
        st.stop()
    return project_id


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
