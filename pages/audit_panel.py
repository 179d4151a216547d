"""The "Miss rate among passed parts (audits)" section of the Dashboard (a helper module).

Reviews alone only see the parts sent to a human; every region where the line passes parts
(passed far below the threshold, passed just below it, flagged but auto-accepted by the triage
model) is audited with a known, nonzero probability, and this section shows what the audits
say: the miss rate among passed parts with its 95% interval, overall and per day or week (the
interval as a band), and the project's audit odds per region, which managers change here. The
role and the ranges are checked by :func:`services.project_settings.set_audit_odds`, not only by
the page.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from adcore.audit import MIN_AUDIT_ODDS, AuditOdds
from adcore.loop_estimate import LoopEstimate
from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.audit_sampling import MissRateReport, miss_rate_report
from services.loop_rates import loop_rates
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


def miss_rate_chart(report: MissRateReport, period: str) -> go.Figure:
    """The miss rate per period as a line, with its 95% interval as a shaded band."""
    periods = [f"{point.period_start:%Y-%m-%d}" for point in report.points]
    estimates = [point.estimate for point in report.points]
    counts = [[e.n_audited, e.n_missed] for e in estimates]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=periods,
            y=[e.high for e in estimates],
            mode="lines",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            name="95% upper",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=periods,
            y=[e.low for e in estimates],
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(214, 39, 40, 0.18)",
            name="95% interval",
            hoverinfo="skip",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=periods,
            y=[e.rate for e in estimates],
            mode="lines+markers",
            line={"color": "#d62728"},
            name="Miss rate",
            customdata=counts,
            hovertemplate="%{y:.1%} (%{customdata[1]} missed of %{customdata[0]} audited)"
            "<extra></extra>",
        )
    )
    figure.update_xaxes(type="category", title=period)
    figure.update_yaxes(tickformat=".0%", rangemode="tozero", title="missed among passed")
    figure.update_layout(title="Miss rate among passed parts (95% interval)", height=340)
    return figure


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


def line_estimate(estimate: LoopEstimate) -> None:
    """The line's FNR and FPR estimated from reviews plus audits weighted by their odds."""
    fnr, fpr = estimate.fnr, estimate.fpr
    cols = st.columns(2)
    for col, name, rate in (
        (cols[0], "Estimated miss rate (FNR)", fnr),
        (cols[1], "Estimated false alarms (FPR)", fpr),
    ):
        if rate.low is None or rate.high is None:
            col.metric(name, "not enough parts")
            continue
        point = "n/a" if rate.rate is None else percent(rate.rate)
        col.metric(name, point, help=f"95% interval {percent(rate.low)} – {percent(rate.high)}")
        col.caption(f"95% interval {percent(rate.low)} – {percent(rate.high)}")
    st.caption(
        "Defects passed or auto-accepted / all defects, and good parts sent to a human / all "
        "good parts, over every part inspected: reviews of parts sent to a human plus audits, "
        "each audited label weighted by 1 / the known odds it was drawn with (stratified by "
        "decision region, Jeffreys intervals). Rates computed from reviews alone cannot see "
        "missed defects. " + " ".join(f"{note[0].upper()}{note[1:]}." for note in estimate.notes)
    )


def audit_section(project_id: int, period: str, *, can_change: bool) -> None:
    """Draw the whole section: estimate, interval, chart over time and the odds setting."""
    with transaction() as session:
        report = miss_rate_report(session, project_id, period)
        project = get_project(session, project_id)
        odds = audit_odds(project) if project is not None else AuditOdds()
        line = loop_rates(session, project_id)
    st.subheader("The line's estimated miss rate and false alarms")
    line_estimate(line)
    st.subheader("Miss rate among passed parts (audits)")
    overall = report.overall
    if overall.rate is None or overall.low is None or overall.high is None:
        st.info(
            f"No audited parts yet: passed parts are drawn for audit with known odds "
            f"({odds_sentence(odds)}) and queued for review; the estimate appears once they "
            "are labelled."
        )
    else:
        cols = st.columns(3)
        cols[0].metric("Miss rate among passed parts", percent(overall.rate))
        cols[1].metric("95% interval", f"{percent(overall.low)} – {percent(overall.high)}")
        cols[2].metric("Audited parts labelled", overall.n_audited)
        st.caption(
            f"{overall.n_missed} of {overall.n_audited} audited passed parts were labelled "
            "defect (each part counted once, by its current label; Wilson interval)."
        )
        st.plotly_chart(miss_rate_chart(report, period), key="audit-miss-rate")
    if report.n_waiting:
        st.caption(f"{report.n_waiting} audited part(s) are waiting in the review queue.")
    audit_odds_setting(project_id, odds, can_change=can_change)
