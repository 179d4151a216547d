"""A shift report as files: its PDF and its CSV, written side by side for ``loupe report``.

:func:`write_shift_report` builds the report (:mod:`services.shift_report`), renders the PDF
(:mod:`services.shift_report_pdf`) and the CSV, and writes both so that a scheduler watching the
folder never picks up a half-written file. It lives apart from :mod:`services.shift_report`
because the PDF renderer imports that module.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.projects import get_project
from services.shift_report import build_shift_report, report_file_stem, shift_report_csv
from services.shift_report_pdf import shift_report_pdf

__all__ = ["write_shift_report"]


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
