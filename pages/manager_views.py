"""Dashboard panels: defect Pareto, inspector agreement, score drift."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.rate_charts import interval_text
from services.dashboard_stats import DriftCheck, PairAgreement


def show_defect_pareto(counts: Sequence[tuple[str, int]]) -> None:
    """Defect types of the parts labelled defect, most frequent first, with the cumulative share."""
    st.subheader("Defect types (Pareto)")
    if not counts:
        st.info("No part is labelled defect yet.")
        return
    names = [name for name, _ in counts]
    values = [n for _, n in counts]
    total = sum(values)
    cumulative = [sum(values[: i + 1]) / total for i in range(len(values))]
    figure = go.Figure()
    figure.add_trace(go.Bar(x=names, y=values, name="parts"))
    figure.add_trace(
        go.Scatter(
            x=names,
            y=cumulative,
            name="cumulative share",
            yaxis="y2",
            mode="lines+markers",
            hovertemplate="%{x}: %{y:.0%} of defects so far<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"Defect types of {total} defective parts (current labels)",
        yaxis={"title": "parts"},
        yaxis2={
            "title": "cumulative",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".0%",
            "range": [0, 1.05],
        },
        legend={"orientation": "h"},
    )
    st.plotly_chart(figure, key="defect-pareto")


def show_agreement(pairs: Sequence[PairAgreement]) -> None:
    """Agreement of reviewer pairs on the parts both labelled (second opinions)."""
    st.subheader("Inspector agreement")
    if not pairs:
        st.info("No part has been labelled by two reviewers yet: no agreement to show.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "Reviewers": [" & ".join(p.reviewers) for p in pairs],
                "Agreement (95% interval, parts)": [interval_text(p.agreement) for p in pairs],
                "Cohen's kappa": [p.kappa for p in pairs],
            }
        ),
        hide_index=True,
        key="agreement_table",
        column_config={"Cohen's kappa": st.column_config.NumberColumn(format="%.2f")},
    )
    st.caption(
        "Agreement counts the parts both reviewers labelled, each with their latest label. "
        "Cohen's kappa discounts the agreement expected by chance (1 = perfect, 0 = chance); it "
        "is empty when both reviewers gave one and the same label to every shared part."
    )


def show_drift(check: DriftCheck | None) -> None:
    """The drift alarm of recent good parts' scores against the active model's first ones."""
    st.subheader("Score drift of good parts")
    if check is None:
        st.info("No active model: no drift to check.")
        return
    if not check.tested:
        st.info(f"No drift test yet: {check.reason}")
    elif check.alarm:
        st.error(
            f"Drift: the last {check.n_recent} good parts score differently from the active "
            f"model's first {check.n_reference} (KS statistic {check.statistic:.2f}, "
            f"p = {check.p_value:.2g}; median score moved by {check.median_shift:+.3g}). "
            "Check the camera, lighting and parts; consider a refit."
        )
    else:
        st.success(
            f"No drift: the last {check.n_recent} good parts score like the active model's "
            f"first {check.n_reference} (KS statistic {check.statistic:.2f}, "
            f"p = {check.p_value:.2g})."
        )
    if check.tested:
        reference, recent = check.reference_span, check.recent_span
        st.caption(
            f"Reference: good parts scored {reference[0]:%Y-%m-%d} to {reference[1]:%Y-%m-%d}; "
            f"recent: {recent[0]:%Y-%m-%d} to {recent[1]:%Y-%m-%d}. Rule: {check.rule}."
        )
