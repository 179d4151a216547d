"""Shift reports: a day's or a shift's KPIs, error rates, overturned parts and reviewers.

A report covers a window ``[start, end)`` in UTC: a whole day, or one of three eight-hour
shifts (:data:`SHIFTS`; the night shift of a day starts at 22:00 that day and ends at 06:00 the
next). :func:`build_shift_report` gathers a :class:`ShiftReport` from the store
(:mod:`db.shift_report_queries`, :mod:`db.audits`, :mod:`services.loop_rates`);
:func:`services.shift_report_files.shift_report_csv` writes its CSV and
:func:`services.shift_report_pdf.shift_report_pdf` its PDF;
:func:`services.shift_report_files.write_shift_report` writes both files, for ``loupe report``
and a scheduler.

The report leads with the line's estimated FNR (defects passed or auto-accepted ÷ all defects)
and FPR (good parts sent to a human ÷ all good parts) over the parts the line decided in the
window, with 95% intervals: the Dashboard's headline estimate (:func:`services.loop_rates.
loop_rates`, reviews plus audits weighted by their known odds). A figure that cannot be
estimated says :data:`NOT_ENOUGH_PARTS`, never a 0% point. :func:`summary_figures` gives the
figures in the order the PDF and the CSV show them.

The other rates are over the parts reviewed in the window (their current label given then),
with 95% Wilson intervals (:func:`adcore.rates.rate_estimate`): they cannot see missed defects
(passed parts are reviewed only when audited), and say so (:data:`REVIEWED_ONLY`). The miss
rate among passed parts comes from the audited parts that passed in the window
(:mod:`db.audits`).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.orm import Session

from adcore.audit import MissRateEstimate, miss_rate_estimate
from adcore.loop_estimate import LoopEstimate, RateInterval
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
from services.loop_rates import loop_rates

__all__ = [
    "NOT_ENOUGH_PARTS",
    "REVIEWED_ONLY",
    "SHIFTS",
    "ReportFigure",
    "ReviewedPart",
    "ReviewerSummary",
    "ShiftReport",
    "build_shift_report",
    "report_file_stem",
    "report_window",
    "summary_figures",
]

SHIFTS: dict[str, tuple[time, time]] = {
    "early": (time(6), time(14)),
    "late": (time(14), time(22)),
    "night": (time(22), time(6)),
}
"""Shift name -> (start, end) in UTC; an end before the start is on the next day."""

NOT_ENOUGH_PARTS = "not enough parts"
"""What a figure that cannot be estimated says (never a 0% point)."""
REVIEWED_ONLY = "rates on reviewed parts: cannot see missed defects"
"""The label of the rates over reviewed parts (passed parts are reviewed only when audited)."""
LINE_FNR = "Estimated FNR of the line (defects passed or auto-accepted ÷ all defects)"
LINE_FPR = "Estimated FPR of the line (good parts sent to a human ÷ all good parts)"


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
        line: The line's estimated FNR and FPR over the parts it decided in the window
            (:func:`services.loop_rates.loop_rates`).
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
    line: LoopEstimate
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
        counts = (self.n_scored, self.n_labels, self.audit.n_audited, self.line.n_parts)
        return not (any(counts) or self.parts)

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
        line=loop_rates(session, project_id, since=start, until=end),
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


@dataclass(frozen=True)
class ReportFigure:
    """One rate of the report's summary, as the PDF and the CSV show it.

    Attributes:
        name: What the rate is, in plain words (the CSV's ``figure``).
        label: Its row in the PDF, whose table heading says the rest.
        rate: The point estimate; ``None`` when it cannot be given (:data:`NOT_ENOUGH_PARTS`).
        low: Lower end of the 95% interval (``None`` with ``rate``).
        high: Upper end of the 95% interval (``None`` with ``rate``).
        basis: What it rests on (counts), or why it cannot be given.
    """

    name: str
    label: str
    rate: float | None
    low: float | None
    high: float | None
    basis: str


def summary_figures(report: ShiftReport) -> list[ReportFigure]:
    """The report's rates in the order shown: the line's estimates first, then the others.

    The first two are the line's estimated FNR and FPR (:attr:`ShiftReport.line`); then the
    FNR and FPR over the parts reviewed in the window (:data:`REVIEWED_ONLY`) and the miss
    rate among the audited parts passed in the window.
    """
    line, audit = report.line, report.audit
    fnr = ("FNR (defects passed)", report.fnr, "reviewed defects")
    fpr = ("FPR (good parts flagged)", report.fpr, "reviewed good parts")
    return [
        _line_figure(LINE_FNR, line.fnr, line.est_missed, line.est_defects, "defects", line),
        _line_figure(
            LINE_FPR, line.fpr, line.est_goods_to_human, line.est_goods, "good parts", line
        ),
        *(
            _rate_figure(f"{label}, {REVIEWED_ONLY}", label, estimate, of_what)
            for label, estimate, of_what in (fnr, fpr)
        ),
        _rate_figure(
            "Miss rate among passed parts (audits)",
            "Miss rate among passed parts (audits)",
            RateEstimate(
                audit.n_missed, audit.n_audited, audit.rate, audit.low, audit.high, audit.confidence
            ),
            "audited parts",
        ),
    ]


def _line_figure(
    name: str,
    interval: RateInterval,
    count: float | None,
    total: float | None,
    of_what: str,
    line: LoopEstimate,
) -> ReportFigure:
    """A line estimate: :data:`NOT_ENOUGH_PARTS` (with the estimator's notes) unless complete."""
    decided = f"{line.n_parts} parts decided in the window"
    if None in (interval.rate, interval.low, interval.high, count, total):
        why = "; ".join(note.replace("_", " ") for note in line.notes) or "no usable label"
        return ReportFigure(name, name, None, None, None, f"{why} ({decided})")
    basis = (
        f"about {count:.1f} of {total:.1f} {of_what}, estimated from {decided} "
        "(reviews and audits weighted by their odds)"
    )
    return ReportFigure(name, name, interval.rate, interval.low, interval.high, basis)


def _rate_figure(name: str, label: str, estimate: RateEstimate, of_what: str) -> ReportFigure:
    """A rate over counted parts: ``"<count> of <n> <of_what>"``, or ``"no <of_what>"``."""
    if estimate.rate is None:
        return ReportFigure(name, label, None, None, None, f"no {of_what}")
    basis = f"{estimate.count} of {estimate.n} {of_what}"
    return ReportFigure(name, label, estimate.rate, estimate.low, estimate.high, basis)


def report_file_stem(project: str, day: date, shift: str | None = None) -> str:
    """``<project-slug>-<YYYY-MM-DD>[-<shift>]``: the report's file name without extension."""
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project"
    return f"{slug}-{day:%Y-%m-%d}" + (f"-{shift}" if shift else "")
