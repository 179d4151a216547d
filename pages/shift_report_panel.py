"""The "Shift report" section of the Dashboard (a helper module): PDF and CSV downloads.

A manager picks a day (UTC) and a shift, or the whole day, and presses "Prepare report"; the
report (:mod:`services.shift_report`) is gathered and rendered only then, kept in the session
state for that choice, and offered as two downloads. Changing the day or the shift asks for a
new "Prepare report". The same files are written by ``loupe report`` for a scheduler.

The report and its summary here lead with the line's estimated FNR and FPR over the window
(the Dashboard's headline estimate), "not enough parts" where they cannot be estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import streamlit as st

from pages.db_session import transaction
from services.shift_report import (
    NOT_ENOUGH_PARTS,
    SHIFTS,
    ReportFigure,
    ShiftReport,
    build_shift_report,
    report_file_stem,
    summary_figures,
)
from services.shift_report_files import shift_report_csv
from services.shift_report_pdf import shift_report_pdf

WHOLE_DAY = "whole day"


@dataclass(frozen=True)
class PreparedReport:
    """A rendered report and the choice it answers."""

    day: date
    shift: str | None
    stem: str
    pdf: bytes
    csv: bytes
    summary: str


def widget_key(project_id: int, name: str) -> str:
    """Session-state key of one of the panel's widgets (``day``, ``shift``, ``prepare``...)."""
    return f"shift_report_{name}_{project_id}"


def shift_label(shift: str) -> str:
    """``"early (06:00-14:00 UTC)"``, or the whole day."""
    if shift == WHOLE_DAY:
        return "Whole day (UTC)"
    start, end = SHIFTS[shift]
    return f"{shift.capitalize()} ({start:%H:%M}-{end:%H:%M} UTC)"


def _estimate(figure: ReportFigure) -> str:
    """``"12.5% (5.0%–30.0%)"``, or "not enough parts"."""
    if figure.rate is None or figure.low is None or figure.high is None:
        return NOT_ENOUGH_PARTS
    return f"{figure.rate:.1%} ({figure.low:.1%}–{figure.high:.1%})"


def report_summary(report: ShiftReport) -> str:
    """One line: the line's estimated FNR and FPR first, then what was scored and reviewed."""
    if report.is_empty:
        return "Nothing was scored, reviewed or audited in this window."
    fnr, fpr = summary_figures(report)[:2]
    return (
        f"Line's estimated FNR {_estimate(fnr)}, FPR {_estimate(fpr)} (95% intervals). "
        f"{report.n_scored} parts scored, {report.n_reviewed} reviewed, "
        f"{len(report.missed)} missed, {len(report.overturned)} overturned."
    )


def prepare(project_id: int, day: date, shift: str | None) -> PreparedReport:
    """Gather and render the report (PDF and CSV) for one choice."""
    with transaction() as session:
        report = build_shift_report(session, project_id, day, shift)
    return PreparedReport(
        day=day,
        shift=shift,
        stem=report_file_stem(report.project, day, shift),
        pdf=shift_report_pdf(report),
        csv=shift_report_csv(report),
        summary=report_summary(report),
    )


def show_shift_report(project_id: int) -> None:
    """Draw the section: day and shift inputs, "Prepare report", then the two downloads.

    Args:
        project_id: The project reported on (the caller has checked the user's role).
    """
    st.subheader("Shift report")
    st.caption(
        "The line's estimated FNR and FPR with 95% intervals first, then KPIs, rates on "
        "reviewed parts, charts, missed and overturned parts and who reviewed what, as PDF; "
        "the same rates and one row per reviewed part as CSV. "
        "`loupe report` writes the same files for a scheduler."
    )
    columns = st.columns(3, vertical_alignment="bottom")
    day = columns[0].date_input(
        "Day (UTC)", value=datetime.now(UTC).date(), key=widget_key(project_id, "day")
    )
    choice = columns[1].selectbox(
        "Shift",
        [WHOLE_DAY, *SHIFTS],
        format_func=shift_label,
        key=widget_key(project_id, "shift"),
    )
    shift = None if choice == WHOLE_DAY else choice
    prepared_key = widget_key(project_id, "prepared")
    if columns[2].button("Prepare report", key=widget_key(project_id, "prepare")):
        with st.spinner("Preparing the report…"):
            st.session_state[prepared_key] = prepare(project_id, day, shift)
    prepared: PreparedReport | None = st.session_state.get(prepared_key)
    if prepared is None or (prepared.day, prepared.shift) != (day, shift):
        st.info("Choose a day and a shift, then press **Prepare report** to download it.")
        return
    st.write(prepared.summary)
    downloads = st.columns(2)
    downloads[0].download_button(
        "Download PDF",
        prepared.pdf,
        file_name=f"{prepared.stem}.pdf",
        mime="application/pdf",
        key=widget_key(project_id, "pdf"),
        on_click="ignore",
    )
    downloads[1].download_button(
        "Download CSV",
        prepared.csv,
        file_name=f"{prepared.stem}.csv",
        mime="text/csv",
        key=widget_key(project_id, "csv"),
        on_click="ignore",
    )
