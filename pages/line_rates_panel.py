"""The Dashboard's headline: the line's estimated miss rate and false alarms, and its load.

Drawn from :class:`services.line_trends.LineTrends` (reviews plus audits weighted by their known
odds, per period and model lineage, sparse periods merged). Each point is a period (or merged
periods) of one model with its 95% interval as an error bar; groups without enough labels are
listed as "not enough parts", never drawn as a 0% point.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from adcore.loop_estimate import LoopEstimate, RateInterval
from pages.audit_panel import percent
from pages.rate_charts import interval_bars
from services.line_trends import LineTrends, LoadPeriod, RatePeriod
from services.model_changes import DetectorHistory

ESTIMATE_CAPTION = (
    "The line's miss rate (FNR) is defects passed or auto-accepted / all defects; its false "
    "alarms (FPR) are good parts sent to a human / all good parts. Both are estimated over "
    "every part the line decided: reviews of the parts sent to a human plus audits of passed "
    "parts, each audited label weighted by 1 / the known odds it was drawn with (stratified by "
    "decision region, 95% Jeffreys intervals). Periods are merged until every region holds "
    "enough labels. Rates computed from reviews alone cannot see missed defects."
)
RATES = (
    ("fnr", "Estimated miss rate (FNR)", "#d62728"),
    ("fpr", "Estimated false alarms (FPR)", "#1f77b4"),
)
MODEL_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d")


def interval_text(rate: RateInterval) -> str:
    """``"4.1% (1.2%-9.8%)"``, or ``"not enough parts"`` when it cannot be estimated."""
    if rate.rate is None or rate.low is None or rate.high is None:
        return "not enough parts"
    return f"{percent(rate.rate)} ({percent(rate.low)}-{percent(rate.high)})"


def headline_metrics(name: str, estimate: LoopEstimate | None) -> None:
    """Two metrics (FNR, FPR) with their intervals for one set of parts."""
    cols = st.columns(2)
    for col, (field, title, _colour) in zip(cols, RATES, strict=True):
        rate = None if estimate is None else getattr(estimate, field)
        if rate is None or rate.rate is None or rate.low is None or rate.high is None:
            col.metric(f"{title}, {name}", "not enough parts")
            continue
        col.metric(f"{title}, {name}", percent(rate.rate))
        col.caption(f"95% interval {percent(rate.low)} – {percent(rate.high)}")


def rate_frame(groups: Sequence[RatePeriod]) -> pd.DataFrame:
    """One row per group: its span, model, each rate with its interval, and the counts."""
    rows = []
    for group in groups:
        estimate = group.estimate
        row: dict[str, object] = {
            "model": group.series,
            "period": group.label,
            "middle": group.start + (group.end - group.start) / 2,
            "merged": group.n_periods,
            "enough": group.enough,
            "parts": estimate.n_parts,
            "labelled defects": estimate.n_labelled_defects,
        }
        for field, _title, _colour in RATES:
            rate: RateInterval = getattr(estimate, field)
            row |= {
                field: rate.rate if group.enough else None,
                f"{field} low": rate.low,
                f"{field} high": rate.high,
                f"{field} text": interval_text(rate) if group.enough else "not enough parts",
            }
        rows.append(row)
    return pd.DataFrame(rows)


def rate_figure(frame: pd.DataFrame, field: str, title: str, period: str) -> go.Figure:
    """Points per model and period with 95% error bars (time on x, merged spans in hover)."""
    figure = go.Figure()
    drawn = frame.dropna(subset=[field, f"{field} low", f"{field} high"])
    for index, (model, rows) in enumerate(drawn.groupby("model", sort=False)):
        figure.add_trace(
            go.Scatter(
                x=rows["middle"],
                y=rows[field],
                mode="lines+markers",
                name=str(model),
                line={"color": MODEL_COLOURS[index % len(MODEL_COLOURS)]},
                error_y=interval_bars(rows, field),
                customdata=rows[["period", f"{field} low", f"{field} high", "parts"]].to_numpy(),
                hovertemplate=(
                    "%{customdata[0]}: %{y:.1%} (95% interval %{customdata[1]:.1%}-"
                    "%{customdata[2]:.1%}), %{customdata[3]} parts<extra>%{fullData.name}</extra>"
                ),
            )
        )
    figure.update_layout(
        title=f"{title} per {period}, with 95% intervals", legend_title="model", height=360
    )
    figure.update_xaxes(title=period)
    figure.update_yaxes(tickformat=".0%", rangemode="tozero")
    return figure


def show_line_rates(trends: LineTrends) -> None:
    """The headline: overall and active-model metrics, FNR and FPR per period and model."""
    st.subheader("The line's estimated miss rate and false alarms")
    if trends.overall.n_parts == 0:
        st.info("No parts inspected yet: the estimates appear once the line decides parts.")
        return
    headline_metrics("all parts", trends.overall)
    if trends.active_model is not None:
        headline_metrics(f"active model {trends.active_model}", trends.active_estimate)
    frame = rate_frame(trends.rates)
    left, right = st.columns(2)
    for column, (field, title, _colour) in zip((left, right), RATES, strict=True):
        if frame[field].notna().any():
            column.plotly_chart(
                rate_figure(frame, field, title, trends.period), key=f"line-rate-{field}"
            )
        else:
            column.markdown(f"**{title}**")
            column.info("Not enough parts in any period yet.")
    short = frame[~frame["enough"]]
    if not short.empty:
        st.caption(
            "Not enough parts to estimate: "
            + "; ".join(f"{row.model}, {row.period}" for row in short.itertuples())
            + " (a region with parts has too few labelled or audited parts)."
        )
    st.caption(ESTIMATE_CAPTION + notes_sentence(trends.overall))
    st.dataframe(
        pd.DataFrame(
            {
                "Model": frame["model"],
                "Period": frame["period"],
                "Miss rate (95% interval)": frame["fnr text"],
                "False alarms (95% interval)": frame["fpr text"],
                "Parts": frame["parts"],
                "Labelled defects": frame["labelled defects"],
            }
        ),
        hide_index=True,
        key="line_rates_table",
    )


def notes_sentence(estimate: LoopEstimate) -> str:
    """The estimate's notes as sentences (leading space), or ``""``."""
    return "".join(f" {note[0].upper()}{note[1:]}." for note in estimate.notes)


def load_frame(load: Sequence[LoadPeriod]) -> pd.DataFrame:
    """One row per period of the load."""
    return pd.DataFrame(
        {
            "period": [row.label for row in load],
            "parts": [row.n_parts for row in load],
            "sent": [row.n_sent_to_human for row in load],
            "share": [row.share_sent_to_human for row in load],
            "goods": [row.est_goods_to_human for row in load],
            "auto": [row.n_auto_accepted for row in load],
            "drawn": [row.n_audits_drawn for row in load],
            "done": [row.n_audits_done for row in load],
        }
    )


def show_load(trends: LineTrends) -> None:
    """The load: share sent to a human, estimated goods among them, auto-accepts, audits."""
    st.subheader("The load on the inspectors")
    if not trends.load:
        st.info("No parts inspected yet.")
        return
    frame = load_frame(trends.load)
    share = go.Figure(
        go.Scatter(
            x=frame["period"],
            y=frame["share"],
            mode="lines+markers",
            name="sent to a human",
            customdata=frame[["sent", "parts"]].to_numpy(),
            hovertemplate="%{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]} parts)"
            "<extra></extra>",
        )
    )
    share.update_layout(title="Share of parts sent to a human by the decision", height=340)
    share.update_xaxes(type="category", title=trends.period)
    share.update_yaxes(tickformat=".0%", rangemode="tozero")
    counts = go.Figure()
    for column, name in (
        ("goods", "good parts sent to a human (estimated)"),
        ("auto", "auto-accepted by the triage model"),
        ("drawn", "audits drawn"),
        ("done", "audits labelled"),
    ):
        if column == "auto" and not frame["auto"].any():
            continue  # no cascade: nothing is auto-accepted
        counts.add_trace(go.Bar(x=frame["period"], y=frame[column], name=name))
    counts.update_layout(title="Parts per period", barmode="group", height=340)
    counts.update_xaxes(type="category", title=trends.period)
    left, right = st.columns(2)
    left.plotly_chart(share, key="load-share")
    right.plotly_chart(counts, key="load-counts")
    st.caption(
        "Sent to a human: parts the line flagged and no triage model accepted (audits come on "
        "top). Good parts among them are estimated from their labels; parts still waiting in "
        "the queue count in proportion."
    )


def show_model_changes(history: DetectorHistory) -> None:
    """Which detector revision went live when, and the reason recorded with it."""
    if not history.changes:
        return
    st.markdown("**Model changes** (the detector that decides parts)")
    st.dataframe(
        pd.DataFrame(
            {
                "Live from (UTC)": [f"{c.at:%Y-%m-%d %H:%M}" for c in history.changes],
                "Model": [c.label for c in history.changes],
                "Made by": [c.origin for c in history.changes],
                "Threshold": [c.threshold for c in history.changes],
                "Why": [c.why or "(no reason recorded)" for c in history.changes],
            }
        ),
        hide_index=True,
        key="model_changes_table",
    )
    if history.instant_updates:
        st.caption(
            "Instant updates (confirmed good parts learned, same model and threshold) are "
            "revisions too: "
            + ", ".join(f"{model}: {n}" for model, n in history.instant_updates.items())
            + "."
        )
