"""A shift report as files: its CSV, and its PDF and CSV side by side for ``loupe report``.

:func:`shift_report_csv` renders the CSV: a summary block of the report's rates, the line's
estimated FNR and FPR first (:func:`services.shift_report.summary_figures`), then one row per
part reviewed in the window. :func:`write_shift_report` builds the report
(:mod:`services.shift_report`), renders the PDF (:mod:`services.shift_report_pdf`) and the CSV,
and writes both so that a scheduler watching the folder never picks up a half-written file. It
lives apart from :mod:`services.shift_report` because the PDF renderer imports that module.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.projects import get_project
from services.shift_report import (
    NOT_ENOUGH_PARTS,
    ShiftReport,
    build_shift_report,
    report_file_stem,
    summary_figures,
)
from services.shift_report_pdf import shift_report_pdf

__all__ = ["CSV_COLUMNS", "SUMMARY_COLUMNS", "shift_report_csv", "write_shift_report"]

CSV_COLUMNS = (
    "image_id",
    "part",
    "reviewed_at_utc",
    "reviewer",
    "label",
    "defect_type",
    "model_version",
    "model",
    "score",
    "threshold",
    "verdict",
    "missed",
    "overturned",
    "audit",
    "seconds_spent",
)
"""Header of :func:`shift_report_csv`'s parts table: one row per part reviewed in the window."""
SUMMARY_COLUMNS = ("figure", "rate", "low_95", "high_95", "basis")
"""Header of :func:`shift_report_csv`'s summary block (:func:`summary_figures`), its first rows."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_shift_report(
    factory: sessionmaker[Session],
    project_name: str,
    day: date,
    shift: str | None,
    out_dir: Path,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>.pdf`` and ``.csv`` (:func:`report_file_stem`) for a project.

    Both files are written to temporary names first and renamed, so a scheduler never picks up
    a half-written report.

    Returns:
        The PDF's and the CSV's paths.

    Raises:
        LookupError: If no project has this name.
        ValueError: On an unknown shift name.
    """
    with factory() as session:
        project = get_project(session, project_name)
        if project is None:
            raise LookupError(f"No project named {project_name!r}.")
        report = build_shift_report(session, project.id, day, shift)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_file_stem(report.project, day, shift)
    written = []
    for suffix, content in ((".pdf", shift_report_pdf(report)), (".csv", shift_report_csv(report))):
        path = out_dir / f"{stem}{suffix}"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(content)
        partial.replace(path)
        written.append(path)
    return written[0], written[1]


def _number(value: float | int | None) -> str:
    return "" if value is None else f"{value:g}"


def _text(value: str | None) -> str:
    """A name as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    if not value:
        return ""
    return f"'{value}" if value[0] in FORMULA_STARTS else value


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def shift_report_csv(report: ShiftReport) -> bytes:
    """The summary block, a blank line, then one row per part reviewed in the window. UTF-8.

    The summary block (header :data:`SUMMARY_COLUMNS`) holds :func:`summary_figures`, the
    line's estimated FNR and FPR first; rates are fractions (``0.125``), and a figure that
    cannot be estimated has :data:`NOT_ENOUGH_PARTS` as its rate and empty interval ends. The
    parts table (header :data:`CSV_COLUMNS`) follows: ``missed`` and ``overturned`` are 1 or 0
    (empty when the part had no model verdict). Names that a spreadsheet would take for a
    formula (``=``, ``+``, ``-``, ``@``...) get a leading ``'``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for figure in summary_figures(report):
        rate = NOT_ENOUGH_PARTS if figure.rate is None else _rate(figure.rate)
        writer.writerow([figure.name, rate, _rate(figure.low), _rate(figure.high), figure.basis])
    writer.writerow([])
    writer.writerow(CSV_COLUMNS)
    for part in report.parts:
        judged = part.verdict is not None
        writer.writerow(
            [
                part.image_id,
                _text(part.name),
                part.reviewed_at.astimezone(UTC).isoformat(timespec="seconds"),
                _text(part.reviewer),
                part.label,
                _text(part.defect_type),
                _number(part.model_version),
                _text(part.model_label),
                _number(part.score),
                _number(part.threshold),
                part.verdict or "",
                int(part.missed) if judged else "",
                int(part.overturned) if judged else "",
                "" if part.audit is None else int(part.audit),
                _number(part.seconds_spent),
            ]
        )
    return buffer.getvalue().encode("utf-8")
