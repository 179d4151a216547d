"""The "Miss rate among passed parts (audits)" section of the Dashboard (a helper module).

Reviews alone only see flagged and near-threshold parts; a share of the passed parts is drawn
at random for review (audit samples) and this section shows what they say: the miss rate among
passed parts with its 95% interval, overall and per day or week (the interval as a band), and
the project's audit share, which managers change here. The role is checked by
:func:`services.project_settings.set_audit_share`, not only by the page.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from adcore.audit import MAX_AUDIT_SHARE
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.audit_sampling import MissRateReport, miss_rate_report
from services.project_settings import set_audit_share


def share_input_key(project_id: int) -> str:
    """Session-state key of the project's audit-share input (one per project)."""
    return f"audit_share_percent_{project_id}"


def percent(value: float) -> str:
    """A share as a percentage with as many decimals as small values need (0.3%, 12%)."""
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def save_share_clicked(project_id: int) -> None:
    """Button callback: store the audit share typed in percent (the service checks the role)."""
    key = share_input_key(project_id)
    typed = st.session_state.get(key)
    try:
        with transaction() as session:
            stored = set_audit_share(
                session, project_id, (typed or 0.0) / 100.0, user=load_user(session)
            )
    except ACTION_ERRORS as err:
        st.session_state.pop(key, None)  # show the stored value again
        flash(f"Could not change the audit share: {err}", "error")
        return
    if stored == 0:
        flash("Audit sampling is off: no passed part is drawn for review.", "info")
    else:
        flash(f"{percent(stored)} of the passed parts are now drawn for review.")


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


def audit_share_setting(project_id: int, share: float, *, can_change: bool) -> None:
    """The project's audit share: a number input in % for managers, a caption otherwise."""
    if not can_change:
        st.caption(f"Audit share: {percent(share)} of passed parts (managers change it).")
        return
    key = share_input_key(project_id)
    if key not in st.session_state:
        st.session_state[key] = round(share * 100.0, 2)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.number_input(
        "Audit share (% of passed parts drawn for review)",
        min_value=0.0,
        max_value=MAX_AUDIT_SHARE * 100.0,
        step=0.5,
        format="%.1f",
        key=key,
        help="Drawn at random when a part passes inspection, then queued for review after the "
        "flagged parts. 0 turns sampling off; parts drawn earlier stay audited.",
    )
    right.button(
        "Save audit share", key="save_audit_share", on_click=save_share_clicked, args=(project_id,)
    )


def audit_section(project_id: int, period: str, *, can_change: bool) -> None:
    """Draw the whole section: estimate, interval, chart over time and the share setting."""
    with transaction() as session:
        report = miss_rate_report(session, project_id, period)
    st.subheader("Miss rate among passed parts (audits)")
    overall = report.overall
    if overall.rate is None or overall.low is None or overall.high is None:
        if report.share > 0:
            st.info(
                f"No audited parts yet: {percent(report.share)} of passed parts are drawn for "
                "audit and queued for review; the estimate appears once they are labelled."
            )
        else:
            st.info("No audited parts yet: audit sampling is off (0% of passed parts drawn).")
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
    audit_share_setting(project_id, report.share, can_change=can_change)
