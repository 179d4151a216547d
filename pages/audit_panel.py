"""The "Audits" section of the Dashboard (a helper module).

Reviews alone only see the parts sent to a human; every region where the line passes parts
(passed far below the threshold, passed just below it, flagged but auto-accepted by the triage
model) is audited with a known, nonzero probability. This section counts the audits drawn,
labelled and waiting, and holds the project's audit odds per region, which managers change
here. What the audits say is in the headline (:mod:`pages.line_rates_panel`): the line's
estimated miss rate, each audited label weighted by its odds. The role and the ranges are
checked by :func:`services.project_settings.set_audit_odds`, not only by the page.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from adcore.audit import MIN_AUDIT_ODDS, AuditOdds
from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.line_trends import LoadPeriod
from services.project_settings import audit_odds, set_audit_odds

ODDS_FIELDS: dict[str, str] = {
    "deep_pass": "Deep pass (% of parts passed far below the threshold)",
    "near_pass": "Near pass (% of parts passed within the near band)",
    "auto_accepted": "Auto-accepted (% of flagged parts the triage model accepts)",
}
"""The audited regions' odds, as the inputs name them."""
NEAR_BAND_LABEL = "Near band (% of the threshold below it that counts as a near pass)"
ODDS_CAPTION = (
    "Every region the line passes is audited with a known, nonzero probability, stored with "
    "each part; changing the odds never rewrites the odds of parts already drawn."
)


def odds_input_key(project_id: int, name: str) -> str:
    """Session-state key of one audit-odds input (``deep_pass``, ..., ``near_band``; in %)."""
    return f"audit_{name}_percent_{project_id}"


def percent(value: float) -> str:
    """A share as a percentage with as many decimals as small values need (0.3%, 12%)."""
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def odds_sentence(odds: AuditOdds) -> str:
    """The odds in words, e.g. "deep pass 2.0%, near pass 20%, auto-accepted 10%"."""
    return (
        f"deep pass {percent(odds.deep_pass)}, near pass {percent(odds.near_pass)}, "
        f"auto-accepted {percent(odds.auto_accepted)}; near band {percent(odds.near_band)} "
        "below the threshold"
    )


def save_odds_clicked(project_id: int) -> None:
    """Button callback: store the audit odds typed in percent (the service checks the role)."""
    keys = {name: odds_input_key(project_id, name) for name in [*ODDS_FIELDS, "near_band"]}
    typed = {name: st.session_state.get(key) for name, key in keys.items()}
    changes = {name: (value or 0.0) / 100.0 for name, value in typed.items()}
    try:
        with transaction() as session:
            stored = set_audit_odds(session, project_id, user=load_user(session), **changes)
    except ACTION_ERRORS as err:
        for key in keys.values():  # show the stored values again
            st.session_state.pop(key, None)
        flash(f"Could not change the audit odds: {err}", "error")
        return
    flash(
        f"Audit odds saved: {odds_sentence(stored)}. Parts inspected from now on are drawn "
        "with them; parts drawn earlier keep theirs."
    )


def audit_odds_setting(project_id: int, odds: AuditOdds, *, can_change: bool) -> None:
    """The project's audit odds: number inputs in % for managers, a caption otherwise."""
    if not can_change:
        st.caption(f"Audit odds: {odds_sentence(odds)} (managers change them).")
        st.caption(ODDS_CAPTION)
        return
    stored = odds.to_json()
    st.markdown("**Audit odds per region**")
    st.caption(ODDS_CAPTION)
    cols = st.columns(4)
    for col, (name, label) in zip(cols, ODDS_FIELDS.items(), strict=False):
        key = odds_input_key(project_id, name)
        if key not in st.session_state:
            st.session_state[key] = round(stored[name] * 100.0, 2)
        col.number_input(
            label,
            min_value=MIN_AUDIT_ODDS * 100.0,
            max_value=100.0,
            step=0.5,
            format="%.1f",
            key=key,
            help=f"Drawn at random when a part of this region is inspected, then queued for "
            f"review; at least {MIN_AUDIT_ODDS:.1%} (never zero: a region nobody looks at "
            "hides its misses).",
        )
    key = odds_input_key(project_id, "near_band")
    if key not in st.session_state:
        st.session_state[key] = round(stored["near_band"] * 100.0, 2)
    cols[3].number_input(
        NEAR_BAND_LABEL,
        min_value=0.0,
        max_value=100.0,
        step=1.0,
        format="%.0f",
        key=key,
        help="A passed part scoring within this share of the threshold's size below it is a "
        "near pass; the others are deep passes.",
    )
    st.button(
        "Save audit odds", key="save_audit_odds", on_click=save_odds_clicked, args=(project_id,)
    )


def audit_section(project_id: int, load: Sequence[LoadPeriod], *, can_change: bool) -> None:
    """Draw the section: audits drawn, labelled and waiting, and the odds setting."""
    with transaction() as session:
        project = get_project(session, project_id)
        odds = audit_odds(project) if project is not None else AuditOdds()
    st.subheader("Audits")
    drawn = sum(row.n_audits_drawn for row in load)
    done = sum(row.n_audits_done for row in load)
    if drawn == 0:
        st.info(
            f"No part drawn for audit yet: passed parts are drawn with known odds "
            f"({odds_sentence(odds)}) and queued for review; the line's estimated miss rate "
            "needs their labels."
        )
    else:
        st.caption(
            f"{drawn} passed or auto-accepted part(s) drawn for audit, {done} labelled, "
            f"{drawn - done} waiting in the review queue. Their labels, weighted by their odds, "
            "feed the line's estimated miss rate above."
        )
    audit_odds_setting(project_id, odds, can_change=can_change)
