"""Dashboard panel: FNR and FPR per period and model, each with its 95% interval.

A model is a lineage (``v2``): its instant updates and recalibrations (``v2.0`` ... ``v2.14``)
are one series, so a model that learns from every review stays one line on the chart.

A rate is drawn as a point with its Wilson interval as an error bar and the number of parts
behind it in the hover and the table, so a rate from 12 parts does not read like one from 12,000.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from adcore.rates import RateEstimate, rate_estimate
from db.dashboard import RatePoint

RATES = (
    # column, chart title, what the rate needs, event count field, parts field
    ("FNR", "Missed defects (FNR)", "defective", "n_missed", "n_defect"),
    ("FPR", "False alarms (FPR)", "good", "n_false_alarm", "n_good"),
)


def rate_table(rates: Sequence[RatePoint]) -> pd.DataFrame:
    """One row per (period, model): each rate, its interval and the counts behind it."""
    rows = []
    for point in rates:
        row: dict[str, object] = {
            "period": f"{point.period_start:%Y-%m-%d}",
            "model": point.model,
            "model_number": point.model_number,
        }
        for name, _title, _needs, events, parts in RATES:
            estimate = rate_estimate(getattr(point, events), getattr(point, parts))
            row |= {
                name: estimate.rate,
                f"{name} low": estimate.low,
                f"{name} high": estimate.high,
                f"{name} parts": estimate.n,
                f"{name} events": estimate.count,
                f"{name} text": interval_text(estimate),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def interval_bars(rows: pd.DataFrame, column: str) -> dict[str, object]:
    """Plotly ``error_y`` that draws each rate's interval as an error bar.

    Reads the columns ``column``, ``"<column> low"`` and ``"<column> high"`` of ``rows``.
    """
    return {
        "type": "data",
        "symmetric": False,
        "array": rows[f"{column} high"] - rows[column],
        "arrayminus": rows[column] - rows[f"{column} low"],
    }


def interval_text(estimate: RateEstimate) -> str:
    """``"3.0% (1.2-7.4%), 4 of 133"``, or ``"no parts"``."""
    if estimate.rate is None:
        return "no parts"
    return (
        f"{estimate.rate:.1%} ({estimate.low:.1%}-{estimate.high:.1%}), "
        f"{estimate.count} of {estimate.n}"
    )


def show_error_rates(rates: Sequence[RatePoint], period: str) -> None:
    """Draw the FNR and FPR charts (points with 95% error bars) and the table under them."""
    st.subheader("Error rates on reviewed parts")
    if not rates:
        st.info("No reviewed parts yet: rates appear once parts are labelled on the Review page.")
        return
    table = rate_table(rates)
    left, right = st.columns(2)
    for column, (name, title, needs, _events, _parts) in zip((left, right), RATES, strict=True):
        points = table.dropna(subset=[name])
        if points.empty:
            column.markdown(f"**{title}**")
            column.info(f"No {needs} part reviewed yet: no {name} to show.")
            continue
        figure = go.Figure()
        for (_number, model), rows in points.groupby(["model_number", "model"], sort=True):
            figure.add_trace(
                go.Scatter(
                    x=rows["period"],
                    y=rows[name],
                    mode="lines+markers",
                    name=str(model),
                    error_y=interval_bars(rows, name),
                    customdata=rows[
                        [f"{name} events", f"{name} parts", f"{name} low", f"{name} high"]
                    ].to_numpy(),
                    hovertemplate=(
                        "%{x}: %{y:.1%} (95% interval %{customdata[2]:.1%}-"
                        "%{customdata[3]:.1%})<br>%{customdata[0]} of %{customdata[1]} parts"
                        "<extra>%{fullData.name}</extra>"
                    ),
                )
            )
        figure.update_layout(title=f"{title}, with 95% intervals", legend_title="model")
        figure.update_xaxes(type="category", title=period)
        figure.update_yaxes(tickformat=".0%", range=[0, 1.05])
        column.plotly_chart(figure, key=f"rate-{name}")
    shown = pd.DataFrame(
        {
            "Period": table["period"],
            "Model": table["model"],
            **{f"{name} (95% interval, parts)": table[f"{name} text"] for name, *_ in RATES},
        }
    )
    st.dataframe(shown, hide_index=True, key="rates_table")
