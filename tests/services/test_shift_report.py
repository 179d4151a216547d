"""Shift reports on the hand-built history of ``tests/support/shift_history.py``."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from pypdf import PdfReader
from shift_history import DAY, build_shift_history
from sqlalchemy.orm import Session, sessionmaker

from adcore.rates import rate_estimate
from services.shift_report import (
    NOT_ENOUGH_PARTS,
    REVIEWED_ONLY,
    ShiftReport,
    build_shift_report,
    report_file_stem,
    report_window,
)
from services.shift_report_files import CSV_COLUMNS, SUMMARY_COLUMNS, shift_report_csv
from services.shift_report_pdf import LINE_HEADING, NO_DATA, percent, shift_report_pdf

NOW = datetime(2025, 3, 4, 6, tzinfo=UTC)


@pytest.fixture
def history(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> dict[str, int]:
    return build_shift_history(session_factory, project_id, make_user)


def report_of(
    factory: sessionmaker[Session], project_id: int, day: date, shift: str | None
) -> ShiftReport:
    with factory() as session:
        return build_shift_report(session, project_id, day, shift, now=NOW)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def csv_tables(content: bytes) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The CSV's summary block and its parts table, each read by its own header."""
    summary, parts = content.decode("utf-8").split("\n\n", 1)
    summary_rows = list(csv.DictReader(io.StringIO(summary)))
    assert tuple(summary_rows[0]) == SUMMARY_COLUMNS
    return summary_rows, list(csv.DictReader(io.StringIO(parts)))


def test_shift_windows_are_utc_and_the_night_shift_ends_the_next_morning() -> None:
    assert report_window(DAY) == (
        datetime(2025, 3, 3, tzinfo=UTC),
        datetime(2025, 3, 4, tzinfo=UTC),
    )
    assert report_window(DAY, "late") == (
        datetime(2025, 3, 3, 14, tzinfo=UTC),
        datetime(2025, 3, 3, 22, tzinfo=UTC),
    )
    assert report_window(DAY, "night") == (
        datetime(2025, 3, 3, 22, tzinfo=UTC),
        datetime(2025, 3, 4, 6, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="Unknown shift 'noon'"):
        report_window(DAY, "noon")


def test_the_early_shift_report_counts_what_was_scored_reviewed_and_missed(
    session_factory: sessionmaker[Session], project_id: int, history: dict[str, int]
) -> None:
    report = report_of(session_factory, project_id, DAY, "early")
    assert (report.n_scored, report.n_flagged, report.n_reviewed, report.n_labels) == (8, 3, 8, 10)
    assert report.fnr == rate_estimate(2, 4)
    assert report.fpr == rate_estimate(1, 3)
    assert (report.audit.n_missed, report.audit.n_audited) == (1, 1)
    assert [part.image_id for part in report.missed] == [history["img2"], history["img9"]]
    assert [part.image_id for part in report.overturned] == [
        history["img2"],
        history["img9"],
        history["img3"],
    ]
    unscored = next(part for part in report.parts if part.image_id == history["img10"])
    assert (unscored.verdict, unscored.missed, unscored.overturned) == (None, False, False)
    assert [
        (p.reviewer, p.n_labels, p.n_parts, p.n_defects, p.n_overturned, p.median_seconds)
        for p in report.reviewers
    ] == [("ines", 5, 4, 3, 1, 30), ("mona", 5, 4, 2, 2, 9)]
    assert report.reviews_per_hour == [0, 2, 2, 2, 1, 1, 1, 1]


def test_the_day_report_includes_every_shift_and_the_current_label_wins(
    session_factory: sessionmaker[Session], project_id: int, history: dict[str, int]
) -> None:
    report = report_of(session_factory, project_id, DAY, None)
    assert (report.n_scored, report.n_reviewed, report.n_labels) == (8, 9, 11)
    assert report.fpr == rate_estimate(1, 4)  # image 5, reviewed in the late shift, joins
    relabelled = next(part for part in report.parts if part.image_id == history["img6"])
    assert (relabelled.reviewer, relabelled.label, relabelled.overturned) == (
        "mona",
        "defect",
        False,
    )
    # The part scored the day before (8) counts as reviewed today but not as scored today.
    assert history["img8"] in [part.image_id for part in report.parts]
    assert len(report.reviews_per_hour) == 24
    assert report.audit.n_audited == 1  # image 8 was drawn the day before


def test_the_csv_has_one_row_per_reviewed_part_with_its_flags(
    session_factory: sessionmaker[Session], project_id: int, history: dict[str, int]
) -> None:
    report = report_of(session_factory, project_id, DAY, "early")
    _, rows = csv_tables(shift_report_csv(report))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_image = {int(row["image_id"]): row for row in rows}
    assert len(rows) == 8
    assert set(by_image) == {history[f"img{n}"] for n in (1, 2, 3, 4, 6, 8, 9, 10)}
    missed = {image for image, row in by_image.items() if row["missed"] == "1"}
    overturned = {image for image, row in by_image.items() if row["overturned"] == "1"}
    assert missed == {history["img2"], history["img9"]}
    assert overturned == {history["img2"], history["img3"], history["img9"]}
    assert by_image[history["img6"]]["reviewer"] == "mona"
    assert by_image[history["img9"]]["audit"] == "1"
    assert by_image[history["img3"]]["reviewed_at_utc"] == "2025-03-03T09:00:00+00:00"
    assert (by_image[history["img3"]]["score"], by_image[history["img3"]]["verdict"]) == (
        "1.5",
        "defect",
    )
    assert by_image[history["img10"]]["verdict"] == by_image[history["img10"]]["missed"] == ""
    # The model as a person reads it (model 1, revision 0) beside its internal number.
    assert (by_image[history["img3"]]["model_version"], by_image[history["img3"]]["model"]) == (
        "1",
        "v1.0",
    )


def test_the_pdf_holds_the_kpis_rates_and_overturned_parts(
    session_factory: sessionmaker[Session], project_id: int, history: dict[str, int]
) -> None:
    report = report_of(session_factory, project_id, DAY, "early")
    content = shift_report_pdf(report)
    assert content.startswith(b"%PDF") and len(content) > 10_000  # the charts are images
    text = pdf_text(content)
    assert "Shift report: cells" in text
    assert "2025-03-03, early shift (06:00-14:00 UTC)" in text
    assert "Parts scored 8" in text
    assert "Flagged by the model 3" in text
    assert "Labels given (corrections included) 10" in text
    fnr, fpr = rate_estimate(2, 4), rate_estimate(1, 3)
    assert f"{percent(fnr.rate)} {percent(fnr.low)} – {percent(fnr.high)}" in text
    assert "2 of 4 reviewed defects" in text
    assert f"{percent(fpr.rate)} {percent(fpr.low)} – {percent(fpr.high)}" in text
    assert "1 of 3 reviewed good parts" in text
    assert "1 of 1 audited parts" in text
    # The line's estimates come first, the rates on reviewed parts are labelled as blind.
    line = text.index(LINE_HEADING)
    assert line < text.index("Summary") < text.index(REVIEWED_ONLY.capitalize())
    assert "ines 5 4 3 1 30.0" in text
    assert "mona 5 4 2 2 9.0" in text
    assert "missed 2.png" in text and "missed 9.png" in text
    assert "false alarm 3.png" in text


def test_a_window_without_data_gives_a_report_that_says_so(
    session_factory: sessionmaker[Session], project_id: int, history: dict[str, int]
) -> None:
    report = report_of(session_factory, project_id, DAY, "night")
    assert report.is_empty and report.parts == [] and report.fnr.rate is None
    content = shift_report_pdf(report)
    assert content.startswith(b"%PDF")
    assert NO_DATA in pdf_text(content)
    summary, parts = csv_tables(shift_report_csv(report))
    assert parts == [] and shift_report_csv(report).decode("utf-8").endswith(
        ",".join(CSV_COLUMNS) + "\n"
    )
    assert [(row["rate"], row["low_95"], row["high_95"]) for row in summary] == [
        (NOT_ENOUGH_PARTS, "", "")
    ] * 5


def test_an_unknown_project_is_refused(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, pytest.raises(LookupError, match="No project"):
        build_shift_report(session, project_id + 99, DAY)


def test_file_names_slug_the_project_name() -> None:
    assert report_file_stem("Solar Cells / Line 2", DAY) == "solar-cells-line-2-2025-03-03"
    assert report_file_stem("cells", DAY, "night") == "cells-2025-03-03-night"


def test_csv_names_never_run_as_spreadsheet_formulas(
    session_factory: sessionmaker[Session], project_id: int, history: dict[str, int]
) -> None:
    report = report_of(session_factory, project_id, DAY, "early")
    tricky = dataclasses.replace(report.parts[0], name="=HYPERLINK(1)", reviewer="-x")
    report = dataclasses.replace(report, parts=[tricky])
    _, (row,) = csv_tables(shift_report_csv(report))
    assert (row["part"], row["reviewer"], row["score"]) == ("'=HYPERLINK(1)", "'-x", "2")
