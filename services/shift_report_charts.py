"""The shift report's charts as PNG images (matplotlib, no pyplot: safe in a server thread).

Each function returns the PNG bytes, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from services.shift_report import ShiftReport

CHART_SIZE_INCHES = (7.0, 2.6)
CHART_DPI = 150
GOOD_COLOUR = "#2ca02c"
DEFECT_COLOUR = "#d62728"
HISTOGRAM_BINS = 30


def _whole_counts(axes: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=CHART_DPI)
    return buffer.getvalue()


def score_distribution_png(report: ShiftReport) -> bytes | None:
    """Scores of the window's reviewed parts, good and defect apart, with each threshold.

    Returns:
        PNG bytes, or ``None`` when no reviewed part had a score.
    """
    judged = [part for part in report.parts if part.score is not None]
    if not judged:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=CHART_SIZE_INCHES)
    axes = figure.add_subplot()
    scores = [part.score for part in judged]
    low, high = min(scores), max(scores)
    thresholds = sorted({(part.model_label or "", part.threshold) for part in judged})
    low = min([low, *(threshold for _, threshold in thresholds)])
    high = max([high, *(threshold for _, threshold in thresholds)])
    bins = HISTOGRAM_BINS if high > low else 1
    for label, colour in (("good", GOOD_COLOUR), ("defect", DEFECT_COLOUR)):
        values = [part.score for part in judged if part.label == label]
        if values:
            axes.hist(
                values,
                bins=bins,
                range=(low, high) if high > low else None,
                alpha=0.6,
                color=colour,
                label=f"labelled {label} ({len(values)})",
            )
    for version, threshold in thresholds:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1)
        axes.annotate(
            f"{version} threshold {threshold:g}",
            (threshold, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=7,
        )
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("reviewed parts")
    axes.set_title("Score distribution of the parts reviewed", fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _whole_counts(axes)
    return _png(figure)


def reviews_per_hour_png(report: ShiftReport) -> bytes | None:
    """Labels given per hour of the window (UTC).

    Returns:
        PNG bytes, or ``None`` when no label was given.
    """
    if not any(report.reviews_per_hour):
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=CHART_SIZE_INCHES)
    axes = figure.add_subplot()
    counts = report.reviews_per_hour
    hours = [f"{report.start + timedelta(hours=index):%H}" for index in range(len(counts))]
    axes.bar(hours, counts, color="#1f77b4")
    axes.set_xlabel("hour (UTC)")
    axes.set_ylabel("labels given")
    axes.set_title("Reviews per hour", fontsize=10)
    _whole_counts(axes)
    return _png(figure)
