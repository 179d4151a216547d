"""Shift reports: a day's or a shift's KPIs, error rates, overturned parts and reviewers.

A report covers a window ``[start, end)`` in UTC: a whole day, or one of three eight-hour
shifts (:data:`SHIFTS`; the night shift of a day starts at 22:00 that day and ends at 06:00 the
next). :func:`build_shift_report` gathers a :class:`ShiftReport` from the store
(:mod:`db.shift_report_queries`, :mod:`db.audits`); :func:`shift_report_csv` writes one row
per part reviewed in the window and :func:`services.shift_report_pdf.shift_report_pdf` the
PDF. :func:`services.shift_report_files.write_shift_report` writes both files, for
``loupe report`` and a scheduler.

Rates are over the parts reviewed in the window (their current label given then), with 95%
Wilson intervals (:func:`adcore.rates.rate_estimate`); the miss rate among passed parts comes
from the audited parts that passed in the window (:mod:`db.audits`).
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.orm import Session

from adcore.audit import MissRateEstimate, miss_rate_estimate
from adcore.rates import RateEstimate, rate_estimate
from db.audits import audit_counts
from db.base import Label, utcnow
from db.projects import get_project
from db.shift_report_queries import (
    ReviewedPart,
    ReviewWork,
    review_work,
    reviewed_parts,
    scored_counts,
)

__all__ = [
    "CSV_COLUMNS",
    "SHIFTS",
    "ReviewedPart",
    "ReviewerSummary",
    "ShiftReport",
    "build_shift_report",
    "report_file_stem",
    "report_window",
    "shift_report_csv",
]

SHIFTS: dict[str, tuple[time, time]] = {
    "early": (time(6), time(14)),
    "late": (time(14), time(22)),
    "night": (time(22), time(6)),
}
"""Shift name -> (start, end) in UTC; an end before the start is on the next day."""

CSV_COLUMNS = (
    "image_id",
    "part",
    "reviewed_at_utc",
    "reviewer",
    "label",
    "defect_type",
    "model_version",
    "score",
    "threshold",
    "verdict",
    "missed",
    "overturned",
    "audit",
    "seconds_spent",
)
"""Header of :func:`shift_report_csv`: one row per part reviewed in the window."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ReviewerSummary:
    """Who reviewed what in the window.

    Attributes:
        reviewer: The user name.
        n_labels: Labels given in the window (corrections and later-undone ones included).
        n_parts: Parts whose current label is theirs from the window.
        n_defects: Of those, the parts they labelled defect.
        n_overturned: Of those, the parts where their label differs from the model verdict.
        median_seconds: Median time per label given (``None`` when none was recorded).
    """

    reviewer: str
    n_labels: int
    n_parts: int
    n_defects: int
    n_overturned: int
    median_seconds: float | None


@dataclass(frozen=True)
class ShiftReport:
    """Everything a shift report shows, for the window ``[start, end)`` (UTC).

    Attributes:
        project: The project's name.
        day: The reported day.
        shift: The shift's name (:data:`SHIFTS`), or ``None`` for the whole day.
        start: Start of the window (included).
        end: End of the window (excluded).
        generated_at: When the report was gathered.
        n_scored: Parts scored in the window (each once).
        n_flagged: Of those, parts the model flagged in the window.
        n_labels: Labels given in the window (all reviewers).
        parts: Parts whose current label was given in the window, oldest first.
        fnr: Missed defects among the reviewed defects (scored ones), with its interval.
        fpr: False alarms among the reviewed good parts (scored ones), with its interval.
        audit: The miss rate among parts passed in the window, from their audits
            (``n_audited`` 0 when none of them was audited and labelled).
        reviewers: One summary per reviewer, by name.
        reviews_per_hour: Labels given per hour of the window (one count per hour).
    """

    project: str
    day: date
    shift: str | None
    start: datetime
    end: datetime
    generated_at: datetime
    n_scored: int
    n_flagged: int
    n_labels: int
    parts: list[ReviewedPart]
    fnr: RateEstimate
    fpr: RateEstimate
    audit: MissRateEstimate
    reviewers: list[ReviewerSummary]
    reviews_per_hour: list[int]

    @property
    def n_reviewed(self) -> int:
        """Parts whose current label was given in the window."""
        return len(self.parts)

    @property
    def missed(self) -> list[ReviewedPart]:
        """Reviewed parts labelled defect that the model passed."""
        return [part for part in self.parts if part.missed]

    @property
    def overturned(self) -> list[ReviewedPart]:
        """Reviewed parts whose label differs from the model verdict (misses first)."""
        return sorted(
            (part for part in self.parts if part.overturned),
            key=lambda part: (not part.missed, part.reviewed_at, part.image_id),
        )

    @property
    def is_empty(self) -> bool:
        """Nothing was scored, labelled or audited in the window."""
        return not (self.n_scored or self.n_labels or self.parts or self.audit.n_audited)

    @property
    def title(self) -> str:
        """``"<day>, early shift (06:00-14:00 UTC)"`` or ``"<day> (whole day, UTC)"``."""
        if self.shift is None:
            return f"{self.day:%Y-%m-%d} (whole day, UTC)"
        return f"{self.day:%Y-%m-%d}, {self.shift} shift ({self.start:%H:%M}-{self.end:%H:%M} UTC)"


def report_window(day: date, shift: str | None = None) -> tuple[datetime, datetime]:
    """The UTC window ``[start, end)`` of a day or of one of its shifts.

    Raises:
        ValueError: On an unknown shift name.
    """
    if shift is None:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return start, start + timedelta(days=1)
    if shift not in SHIFTS:
        raise ValueError(f"Unknown shift {shift!r}: choose one of {', '.join(SHIFTS)}.")
    begins, ends = SHIFTS[shift]
    start = datetime.combine(day, begins, tzinfo=UTC)
    end = datetime.combine(day, ends, tzinfo=UTC)
    if end <= start:
        end += timedelta(days=1)
    return start, end


def build_shift_report(
    session: Session,
    project_id: int,
    day: date,
    shift: str | None = None,
    *,
    now: datetime | None = None,
) -> ShiftReport:
    """Gather a project's shift (or day) report from the store.

    Args:
        session: The caller's session.
        project_id: The project.
        day: The day reported.
        shift: ``"early"``, ``"late"``, ``"night"`` (:data:`SHIFTS`) or ``None`` for the day.
        now: The report's time stamp (default: now).

    Returns:
        The report.

    Raises:
        LookupError: If the project does not exist.
        ValueError: On an unknown shift name.
    """
    project = get_project(session, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    start, end = report_window(day, shift)
    parts = reviewed_parts(session, project_id, start, end)
    work = review_work(session, project_id, start, end)
    scored = scored_counts(session, project_id, start, end)
    n_missed, n_audited = audit_counts(session, project_id, since=start, until=end)
    judged = [part for part in parts if part.verdict is not None]
    defects = [part for part in judged if part.label == Label.DEFECT.value]
    goods = [part for part in judged if part.label == Label.GOOD.value]
    return ShiftReport(
        project=project.name,
        day=day,
        shift=shift,
        start=start,
        end=end,
        generated_at=now or utcnow(),
        n_scored=scored.n_scored,
        n_flagged=scored.n_flagged,
        n_labels=len(work),
        parts=parts,
        fnr=rate_estimate(sum(part.missed for part in defects), len(defects)),
        fpr=rate_estimate(sum(part.false_alarm for part in goods), len(goods)),
        audit=miss_rate_estimate(n_missed, n_audited),
        reviewers=_reviewer_summaries(parts, work),
        reviews_per_hour=_reviews_per_hour(work, start, end),
    )


def _reviewer_summaries(parts: list[ReviewedPart], work: list[ReviewWork]) -> list[ReviewerSummary]:
    labels: Counter[str] = Counter(item.reviewer for item in work)
    seconds: dict[str, list[float]] = defaultdict(list)
    for item in work:
        if item.seconds_spent is not None:
            seconds[item.reviewer].append(item.seconds_spent)
    owned: dict[str, list[ReviewedPart]] = defaultdict(list)
    for part in parts:
        owned[part.reviewer].append(part)
    return [
        ReviewerSummary(
            reviewer=name,
            n_labels=labels[name],
            n_parts=len(owned[name]),
            n_defects=sum(part.label == Label.DEFECT.value for part in owned[name]),
            n_overturned=sum(part.overturned for part in owned[name]),
            median_seconds=statistics.median(seconds[name]) if seconds[name] else None,
        )
        for name in sorted(set(labels) | set(owned))
    ]


def _reviews_per_hour(work: list[ReviewWork], start: datetime, end: datetime) -> list[int]:
    hours = [0] * int((end - start) / timedelta(hours=1))
    for item in work:
        hours[int((item.reviewed_at - start) / timedelta(hours=1))] += 1
    return hours


def _number(value: float | int | None) -> str:
    return "" if value is None else f"{value:g}"


def _text(value: str | None) -> str:
    """A name as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    if not value:
        return ""
    return f"'{value}" if value[0] in FORMULA_STARTS else value


def shift_report_csv(report: ShiftReport) -> bytes:
    """One row per part reviewed in the window (:data:`CSV_COLUMNS`), UTF-8 text.

    ``missed`` and ``overturned`` are 1 or 0 (empty when the part had no model verdict). Names
    that a spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``...) get a leading
    ``'``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
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


def report_file_stem(project: str, day: date, shift: str | None = None) -> str:
    """``<project-slug>-<YYYY-MM-DD>[-<shift>]``: the report's file name without extension."""
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project"
    return f"{slug}-{day:%Y-%m-%d}" + (f"-{shift}" if shift else "")
