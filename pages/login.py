"""Sign-in page: the only page a signed-out visitor sees.

Attempts go through the throttle of :mod:`services.sign_in` (a growing delay after each
failure, then a lock); a success starts a session that the browser keeps in its cookie
(:mod:`pages.browser_session`), so a reload or a new tab stays signed in.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from db.base import SignInOutcome, utcnow
from pages.action_feedback import show_flashes
from pages.browser_session import client_address, drop_stale_cookie, hand_cookie_to_browser
from pages.db_session import transaction
from pages.routing import ensure_routed
from pages.tab_state import sign_in
from services.sign_in import SignInResult
from services.sign_in import sign_in as check_sign_in

WRONG_CREDENTIALS = "Wrong user name or password."


def wait_text(until: datetime) -> str:
    """``14:05:31 (in 4 min 50 s)``: a retry time in the server's clock, and how far off."""
    seconds = max(1, round((until - utcnow()).total_seconds()))
    minutes, rest = divmod(seconds, 60)
    left = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return f"{until.astimezone():%H:%M:%S} (in {left})"


def show_outcome(result: SignInResult) -> None:
    """The message for a failed or refused attempt."""
    if result.outcome == SignInOutcome.FAILURE:
        st.error(WRONG_CREDENTIALS)
        if result.locked and result.retry_at is not None:
            st.warning(
                "Too many failed sign-ins: further attempts are refused until "
                f"{wait_text(result.retry_at)}."
            )
    elif result.retry_at is not None and result.locked:
        st.error(
            "Too many failed sign-ins: this attempt was refused without checking the "
            f"password. Try again after {wait_text(result.retry_at)}."
        )
    elif result.retry_at is not None:
        st.error(f"Too fast after a failed sign-in: try again after {wait_text(result.retry_at)}.")


ensure_routed()
st.title("Loupe")
st.caption("Visual inspection workbench. Please sign in.")
show_flashes()
drop_stale_cookie()

with st.form("login"):
    name = st.text_input("User name", key="login_name")
    password = st.text_input("Password", type="password", key="login_password")
    submitted = st.form_submit_button("Sign in", type="primary")

if submitted:
    try:  # one transaction: the attempt, the session and a password re-hash, if argon2 asks
        with transaction() as session:
            result = check_sign_in(session, name, password, client_address())
            if result.user is not None and result.auth_session is not None:
                sign_in(result.user, result.auth_session.id)
    except ValueError as err:  # a misconfigured LOUPE_SESSION_HOURS or throttle variable
        st.error(f"Sign-in is not possible: {err}")
        st.stop()
    if result.outcome == SignInOutcome.SUCCESS and result.handoff_code:
        hand_cookie_to_browser(result.handoff_code)
        st.rerun()
    show_outcome(result)
