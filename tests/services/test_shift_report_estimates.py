"""The shift report's lead figures: the line's estimated FNR and FPR, worked out by hand.

One model version (threshold 1.0, near band 10%: near passes score from 0.9). Day D = Monday
3 March 2025. Parts decided in the early shift (06:00-14:00 UTC), by decision region:

    region          odds  parts  usable labels                       weighted defect share
    sent_to_human   1     4      defect, defect, defect, good        3/4
    near_pass       0.5   4      audited: defect, good (a third      1/2
                                 part is labelled but not audited,
                                 a fourth unlabelled)
    deep_pass       0.1   10     audited: good (another audited      0
                                 part waits for its label)

Estimated defects 4·3/4 + 4·1/2 + 0 = 5, of them passed 2: FNR 2/5 = 40%. Estimated good parts
1 + 2 + 10 = 13, of them sent to a human 1: FPR 1/13. Usable labels saying defect: 4.
A deep pass decided at 05:00 (the night before the shift) was audited and is a defect: it is
outside the window and must not count. The late shift (14:00-22:00) has a part sent to a human
(labelled) and a deep pass nobody audited: neither rate can be estimated there.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import Review
from services.shift_report import (
    NOT_ENOUGH_PARTS,
    REVIEWED_ONLY,
    ShiftReport,
    build_shift_report,
    summary_figures,
)
from services.shift_report_files import shift_report_csv
from services.shift_report_pdf import percent, shift_report_pdf

DAY = date(2025, 3, 3)
D = datetime(2025, 3, 3, tzinfo=UTC)
NOW = datetime(2025, 3, 4, 6, tzinfo=UTC)
REGION_ODDS = {"sent_to_human": 1.0, "near_pass": 0.5, "deep_pass": 0.1}
SCORES = {"sent_to_human": 1.5, "near_pass": 0.95, "deep_pass": 0.1}


@pytest.fixture
def parts(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    """Store the parts of the module docstring."""
    ines = make_user("ines")
    version = add_version(session_factory, project_id, threshold=1.0)
    labels: list[tuple[int, str, float]] = []  # (image, label, hours after D)
    n = 0

    def part(region: str, hours: float, *, audit: bool = False, label: str | None = None) -> None:
        nonlocal n
        n += 1
        image = add_image(session_factory, project_id, n)
        add_prediction(
            session_factory,
            image,
            version,
            SCORES[region],
            at=D + timedelta(hours=hours),
            decision_region=region,
            audit_probability=REGION_ODDS[region],
            audit=audit,
        )
        if label is not None:
            labels.append((image, label, hours + 0.5))

    for label in ("defect", "defect", "defect", "good"):
        part("sent_to_human", 7, label=label)
    part("near_pass", 8, audit=True, label="defect")
    part("near_pass", 8, audit=True, label="good")
    part("near_pass", 8, label="defect")  # labelled, not audited: not usable
    part("near_pass", 8)
    part("deep_pass", 9, audit=True, label="good")
    part("deep_pass", 9, audit=True)  # waiting for its label
    for _ in range(8):
        part("deep_pass", 10)
    part("deep_pass", 5, audit=True, label="defect")  # before the early shift
    part("sent_to_human", 15, label="defect")  # the late shift
    part("deep_pass", 15)
    with session_factory() as session, session.begin():
        for image, label, hours in labels:
            session.add(
                Review(
                    image_id=image,
                    reviewer_id=ines,
                    label=label,
                    seconds_spent=10.0,
                    created_at=D + timedelta(hours=hours),
                )
            )


def report_of(factory: sessionmaker[Session], project_id: int, shift: str) -> ShiftReport:
    with factory() as session:
        return build_shift_report(session, project_id, DAY, shift, now=NOW)


def pdf_text(content: bytes) -> str:
    """The PDF's text with its whitespace (justified lines, wrapped cells) made single spaces."""
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    return " ".join(text.split())


def csv_summary(report: ShiftReport) -> list[list[str]]:
    """The rows of the CSV's summary block (its header first)."""
    block = shift_report_csv(report).decode("utf-8").split("\n\n", 1)[0]
    return list(csv.reader(io.StringIO(block)))


def test_the_early_shift_estimates_the_line_from_reviews_and_weighted_audits(
    session_factory: sessionmaker[Session], project_id: int, parts: None
) -> None:
    line = report_of(session_factory, project_id, "early").line
    assert (line.n_parts, line.n_labelled_defects) == (18, 4)
    assert (line.est_defects, line.est_missed) == pytest.approx((5.0, 2.0))
    assert (line.est_goods, line.est_goods_to_human) == pytest.approx((13.0, 1.0))
    assert line.fnr.rate == pytest.approx(0.4)
    assert line.fpr.rate == pytest.approx(1 / 13)
    for interval in (line.fnr, line.fpr):
        assert 0.0 <= interval.low < interval.rate < interval.high <= 1.0


def test_the_pdf_and_the_csv_lead_with_the_line_estimates(
    session_factory: sessionmaker[Session], project_id: int, parts: None
) -> None:
    report = report_of(session_factory, project_id, "early")
    fnr, fpr = report.line.fnr, report.line.fpr
    figures = summary_figures(report)
    assert [figure.rate for figure in figures[:2]] == [fnr.rate, fpr.rate]
    assert all(REVIEWED_ONLY in figure.name for figure in figures[2:4])

    text = pdf_text(shift_report_pdf(report))
    line_block = text[: text.index("Summary")]  # the estimates come before everything else
    assert f"40.0% {percent(fnr.low)} – {percent(fnr.high)} about 2.0 of 5.0 defects" in line_block
    assert f"7.7% {percent(fpr.low)} – {percent(fpr.high)} about 1.0 of 13.0 good parts" in (
        line_block
    )
    assert "estimated from 18 parts decided in the window" in line_block
    assert "Rates on reviewed parts: cannot see missed defects" in text

    header, fnr_row, fpr_row, *reviewed = csv_summary(report)
    assert header == ["figure", "rate", "low_95", "high_95", "basis"]
    assert fnr_row[0].startswith("Estimated FNR of the line")
    assert fpr_row[0].startswith("Estimated FPR of the line")
    numbers = [float(value) for value in (*fnr_row[1:4], *fpr_row[1:4])]
    expected = (0.4, fnr.low, fnr.high, 1 / 13, fpr.low, fpr.high)
    assert numbers == pytest.approx(expected, rel=1e-3)
    assert [row[0].endswith(REVIEWED_ONLY) for row in reviewed] == [True, True, False]


def test_a_window_whose_estimate_lacks_audits_says_not_enough_parts(
    session_factory: sessionmaker[Session], project_id: int, parts: None
) -> None:
    report = report_of(session_factory, project_id, "late")
    assert report.line.n_parts == 2 and report.line.fnr.rate is None
    fnr, fpr = summary_figures(report)[:2]
    assert (fnr.rate, fnr.low, fnr.high, fpr.rate) == (None, None, None, None)
    assert "no audited deep pass part is labelled yet" in fnr.basis

    text = pdf_text(shift_report_pdf(report))
    line_block = text[: text.index("Summary")]
    assert f"{NOT_ENOUGH_PARTS} – no audited deep pass part is labelled yet" in line_block
    assert "%" not in line_block.replace("95%", "")  # never a 0% point for a missing figure
    _, fnr_row, fpr_row, *_ = csv_summary(report)
    assert fnr_row[1:4] == fpr_row[1:4] == [NOT_ENOUGH_PARTS, "", ""]
