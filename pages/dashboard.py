"""Dashboard (managers, admins): the line's estimated rates and load, then the details.

The headline (:mod:`pages.line_rates_panel`) is the line's miss rate and false alarms estimated
from reviews plus audits weighted by their known odds, per period and model lineage, and the
load on the inspectors. Rates on reviewed parts alone (which cannot see missed defects) stay
available in an expander; the audits and their odds are :mod:`pages.audit_panel`.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import db
from db.dashboard import data_version
from pages.action_feedback import show_flashes
from pages.audit_panel import audit_section
from pages.db_session import transaction
from pages.demo_history_notice import show_simulated_history_notice
from pages.line_rates_panel import show_line_rates, show_load, show_model_changes
from pages.manager_views import show_agreement, show_defect_pareto, show_drift
from pages.rate_charts import show_error_rates
from pages.routing import MANAGERS
from pages.shift_report_panel import show_shift_report
from pages.tab_state import require_page_role, require_project
from services.dashboard_data import DashboardData, dashboard_data, detail_period

UNREVIEWED = "unreviewed"

signed_in_user = require_page_role(*MANAGERS)
project_id = require_project()
st.title("Dashboard")
show_flashes()
show_simulated_history_notice(project_id)


@st.cache_data(max_entries=64, show_spinner="Computing the dashboard…")
def cached_dashboard_data(url: str, project_id: int, period: str, version: tuple) -> DashboardData:
    """Every cached query of the page (:func:`services.dashboard_data.dashboard_data`).

    ``version`` (:func:`db.dashboard.data_version`) moves with every new review, prediction,
    image, threshold or activation, so a rerun with unchanged data costs one cheap query.
    """
    del url, version  # cache-key parts only
    with transaction() as session:
        return dashboard_data(session, project_id, period)


period = st.radio(
    "Group by",
    ["week", "day", "shift"],
    horizontal=True,
    key="dashboard_period",
    help="Shifts group the headline and the load; the other charts group shifts by day.",
)
with transaction() as session:
    version = data_version(session, project_id)
(line, changes, rates, counts, matrix, distribution, work, defect_types, agreement, drift) = (
    cached_dashboard_data(db.database_url(), project_id, period, version)
)
by = detail_period(period)

# ---- the headline: the line's estimated rates, then the load
show_line_rates(line)
show_model_changes(changes)
show_load(line)

# ---- counts
cols = st.columns(4)
cols[0].metric("Scored parts", counts["total"])
cols[1].metric("Reviewed", counts["reviewed"])
cols[2].metric("Unreviewed", counts["unreviewed"])
cols[3].metric("Flagged, not reviewed", counts["flagged_unreviewed"])

# ---- audits drawn and their odds; not cached: it reads the current odds
audit_section(project_id, line.load, can_change=signed_in_user["role"] in MANAGERS)

# ---- rates over reviewed parts only
with st.expander("Rates on reviewed parts (cannot see missed defects)"):
    st.caption(
        "These rates count only the parts a human reviewed (flagged parts and audits, each "
        "once, unweighted). A missed defect is a passed part nobody looked at, so the miss "
        "rate here is near 0% by construction: the line's estimated miss rate is the headline "
        "above."
    )
    show_error_rates(rates, by)

# ---- confusion matrix
st.subheader("Confusion matrix (active model, all its revisions, current labels)")
st.caption("Reviewed parts only: a passed part nobody looked at is in no cell.")
if sum(matrix.values()) == 0:
    st.info("No reviewed parts scored by the active model yet.")
else:
    z = [[matrix["tp"], matrix["fn"]], [matrix["fp"], matrix["tn"]]]
    heatmap = go.Figure(
        go.Heatmap(
            z=z,
            x=["flagged defect", "passed good"],
            y=["labelled defect", "labelled good"],
            text=[[str(v) for v in row] for row in z],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    heatmap.update_layout(xaxis_title="Model verdict", yaxis_title="Human label", height=320)
    heatmap.update_yaxes(autorange="reversed")
    st.plotly_chart(heatmap, key="confusion")

show_defect_pareto(defect_types)

# ---- score histogram
st.subheader("Score distribution")
if not distribution.points:
    st.info("No scored parts yet.")
else:
    scores = pd.DataFrame(
        {
            "score": [score for score, _ in distribution.points],
            "label": [label or UNREVIEWED for _, label in distribution.points],
        }
    )
    histogram = px.histogram(
        scores,
        x="score",
        color="label",
        nbins=50,
        barmode="overlay",
        opacity=0.7,
        color_discrete_map={"good": "#2ca02c", "defect": "#d62728", UNREVIEWED: "#9e9e9e"},
    )
    if distribution.threshold is not None:
        histogram.add_vline(
            x=distribution.threshold,
            line_dash="dash",
            line_color="black",
            annotation_text=f"threshold {distribution.threshold:.4g}",
        )
    st.plotly_chart(histogram, key="scores")
show_drift(drift)

# ---- throughput
st.subheader("Review throughput")
if not work:
    st.info("No reviews yet.")
else:
    frame = pd.DataFrame(work)
    bars = px.bar(
        frame,
        x="period_start",
        y="n_reviews",
        color="reviewer",
        barmode="group",
        hover_data=["median_seconds"],
        labels={"period_start": by, "n_reviews": "reviews"},
    )
    st.plotly_chart(bars, key="throughput")
    st.dataframe(
        frame.rename(
            columns={
                "reviewer": "Reviewer",
                "period_start": "Period",
                "n_reviews": "Reviews",
                "median_seconds": "Median seconds",
            }
        ),
        hide_index=True,
        key="throughput_table",
    )
show_agreement(agreement)

# ---- shift report (PDF and CSV of a day or a shift)
show_shift_report(project_id)
