"""The sign-in audit trail on the Users page (admins): recent attempts and their outcomes.

Not a page. Every attempt is listed with its time, the user name as typed, the client's
address and the outcome: success, failure (wrong name or password) or refused (the name or the
client was locked, see :mod:`services.sign_in`).
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from db.base import SignInOutcome, utcnow
from db.sign_in_attempts import outcome_counts, recent_attempts
from pages.db_session import transaction

#: How many of the latest attempts the table shows.
SHOWN_ATTEMPTS = 200
OUTCOME_TEXT = {
    SignInOutcome.SUCCESS.value: "success",
    SignInOutcome.FAILURE.value: "failure",
    SignInOutcome.REFUSED.value: "refused (locked)",
}


def sign_in_audit_section() -> None:
    """The latest sign-in attempts, newest first, with the last day's failures counted."""
    st.subheader("Sign-in attempts")
    with transaction() as session:
        attempts = [
            {
                "Time": attempt.attempted_at.astimezone(),
                "User name": attempt.user_name,
                "Client": attempt.client,
                "Outcome": OUTCOME_TEXT.get(attempt.outcome, attempt.outcome),
            }
            for attempt in recent_attempts(session, limit=SHOWN_ATTEMPTS)
        ]
        last_day = outcome_counts(session, since=utcnow() - timedelta(days=1))
    if not attempts:
        st.caption("No sign-in attempts yet.")
        return
    st.caption(
        f"In the last 24 hours: {last_day[SignInOutcome.FAILURE]} failed, "
        f"{last_day[SignInOutcome.REFUSED]} refused while locked, "
        f"{last_day[SignInOutcome.SUCCESS]} succeeded. The table shows the latest "
        f"{SHOWN_ATTEMPTS} attempts at most."
    )
    st.dataframe(
        pd.DataFrame(attempts),
        hide_index=True,
        key="sign_in_attempts_table",
        column_config={"Time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")},
    )
