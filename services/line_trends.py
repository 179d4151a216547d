"""The line's estimated miss rate, false alarms and load over time, per model lineage.

The Dashboard's headline. Each part counts once, in the period in which the line decided it
(its first prediction, :mod:`db.loop_parts`) and under the model lineage that decided it (the
model, all revisions together: :mod:`db.model_lineages`). Rates are the loop's own estimate
(:func:`services.loop_rates.estimate_counts`: reviews of parts sent to a human plus audits
weighted by 1 / their known odds, stratified by decision region, 95% intervals), never rates
over reviewed parts alone, which cannot see missed defects.

**Sparse periods are merged.** A period's estimate needs labels in every decision region that
has parts there: a week with 150 deep passes and no audited one among them has no estimate of
its misses, and a day with 3 labelled parts would show a 0% point with a 0-70% bar. So, per
series, consecutive periods are merged (oldest first) until every stratum with parts holds at
least one usable label and as many as its design promises, up to :data:`MIN_STRATUM_LABELS`:
a region audited at 2% with 150 parts expects 3 audits, one with 60 parts expects 1; a region
sent to a human expects all its parts labelled. The rule reads only how many parts were
decided, drawn and labelled, never what the labels say, so merging does not choose periods by
their miss rate. A trailing group that is still short joins the group before it; a group that
still lacks labels (a series that never has enough, or a tail that brings a new region) is
marked ``enough=False`` and shown as "not enough parts".

**The load** is counted per period, unmerged: parts decided, parts sent to a human (the
decision, with the share), the estimated good parts among them (sent-to-human parts' labels,
point estimate), parts auto-accepted by a triage model, and audits drawn and done (labelled).
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from adcore.audit import AUDITED_REGIONS, AUTO_ACCEPTED
from adcore.loop_estimate import SEND_STRATA, LoopEstimate, label_enters, stratum_of
from adcore.rates import DEFAULT_CONFIDENCE
from db.loop_parts import LoopPart, loop_part_counts
from db.model_lineages import model_label, model_numbers
from db.projects import get_project
from services.loop_rates import estimate_counts
from services.shift_report import SHIFTS

__all__ = [
    "LINE",
    "MIN_STRATUM_LABELS",
    "PERIODS",
    "LineTrends",
    "LoadPeriod",
    "RatePeriod",
    "TrendPeriod",
    "line_trends",
    "load_over_time",
    "period_of",
    "rates_over_time",
]

TrendPeriod = Literal["day", "week", "shift"]
PERIODS: tuple[str, ...] = ("day", "week", "shift")
SHIFT_STARTS: tuple[tuple[time, str], ...] = tuple(
    (begins, name) for name, (begins, _ends) in SHIFTS.items()
)
"""The shifts of :data:`services.shift_report.SHIFTS` (UTC): 06-14, 14-22, 22-06 next day."""
MIN_STRATUM_LABELS = 3
"""The most usable labels a stratum is asked for before a period's estimate is shown."""
LINE = "all models"
"""The series name of the whole line (every lineage together)."""


@dataclass(frozen=True)
class RatePeriod:
    """The estimate over one period, or over consecutive periods merged.

    Attributes:
        series: The model lineage's label (``"v2"``) or :data:`LINE`.
        start: First moment of the first period (aware UTC).
        end: End of the last period (exclusive).
        label: ``"2026-11-02"``, ``"week of 2026-11-02"``, ``"2026-11-02 early"``, or for
            merged periods ``"<first label> to <last label>"``.
        n_periods: How many periods with parts were merged (1 when not merged).
        enough: Whether every stratum with parts has enough usable labels (``False``: shown
            as "not enough parts").
        estimate: The loop's estimate over the group's parts.
    """

    series: str
    start: datetime
    end: datetime
    label: str
    n_periods: int
    enough: bool
    estimate: LoopEstimate


@dataclass(frozen=True)
class LoadPeriod:
    """The work the line gave humans in one period (not merged).

    Attributes:
        start: First moment of the period (aware UTC).
        label: The period's label.
        n_parts: Parts the line decided.
        n_sent_to_human: Of those, parts sent to a human by the decision (audits not counted).
        est_goods_to_human: Estimated good parts among them (from their labels; ``None`` while
            none of them is labelled).
        n_auto_accepted: Flagged parts the triage model auto-accepted.
        n_audits_drawn: Passed or auto-accepted parts drawn for audit.
        n_audits_done: Of those, parts labelled.
    """

    start: datetime
    label: str
    n_parts: int
    n_sent_to_human: int
    est_goods_to_human: float | None
    n_auto_accepted: int
    n_audits_drawn: int
    n_audits_done: int

    @property
    def share_sent_to_human(self) -> float:
        """Share of the period's parts sent to a human (0 without parts)."""
        return self.n_sent_to_human / self.n_parts if self.n_parts else 0.0


@dataclass(frozen=True)
class LineTrends:
    """Everything the Dashboard's headline draws.

    Attributes:
        period: ``"day"``, ``"week"`` or ``"shift"``.
        overall: The estimate over every decided part.
        active_model: The active detector's lineage label (``"v2"``), ``None`` without one.
        active_estimate: The estimate over the parts that lineage decided, ``None`` without.
        rates: Per model lineage, then per period (merged where sparse), oldest first.
        load: The load per period.
    """

    period: str
    overall: LoopEstimate
    active_model: str | None
    active_estimate: LoopEstimate | None
    rates: list[RatePeriod]
    load: list[LoadPeriod]


def period_of(moment: datetime, period: TrendPeriod) -> tuple[datetime, datetime, str]:
    """The UTC period holding ``moment``: ``(start, end, label)``.

    Days start at midnight UTC; weeks on Monday (ISO); shifts at 06:00, 14:00 and 22:00 UTC
    (the night shift belongs to the day it starts on).

    Raises:
        ValueError: On an unknown period or a naive moment.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}.")
    if moment.tzinfo is None:
        raise ValueError("The moment must be timezone-aware.")
    moment = moment.astimezone(UTC)
    return _period_at(moment.date(), moment.hour if period == "shift" else 0, period)


@functools.lru_cache(maxsize=8192)
def _period_at(day: date, hour: int, period: str) -> tuple[datetime, datetime, str]:
    """:func:`period_of` for a UTC day and hour (shifts start on whole hours), memoised."""
    midnight = datetime.combine(day, time(0), tzinfo=UTC)
    if period == "day":
        return midnight, midnight + timedelta(days=1), f"{midnight:%Y-%m-%d}"
    if period == "week":
        monday = midnight - timedelta(days=midnight.weekday())
        return monday, monday + timedelta(days=7), f"week of {monday:%Y-%m-%d}"
    moment = midnight + timedelta(hours=hour)
    starts = [
        (datetime.combine(day + timedelta(days=shift), begins, tzinfo=UTC), name)
        for shift in (-1, 0)
        for begins, name in SHIFT_STARTS
    ]
    start, name = max((s, n) for s, n in starts if s <= moment)
    return start, start + timedelta(hours=8), f"{start:%Y-%m-%d} {name}"


Counted = tuple[LoopPart, int]
"""A decided part and how many parts share everything the estimate reads (1 for one part)."""


def rates_over_time(
    parts: Iterable[LoopPart | Counted],
    period: TrendPeriod,
    series_of: Callable[[LoopPart], str],
    *,
    min_labels: int = MIN_STRATUM_LABELS,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[RatePeriod]:
    """The estimate per series and period, consecutive periods merged while too sparse.

    Args:
        parts: Decided parts (:func:`db.loop_parts.loop_parts`), or ``(part, count)`` pairs
            (:func:`db.loop_parts.loop_part_counts`).
        period: ``"day"``, ``"week"`` or ``"shift"``.
        series_of: The series of a part (its lineage label, or :data:`LINE` for all).
        min_labels: The most usable labels a stratum is asked for (see the module docstring).
        confidence: Confidence level of the intervals, in (0, 1).

    Returns:
        Groups sorted by series, then by start.

    Raises:
        ValueError: On an unknown period, a confidence outside (0, 1) or ``min_labels < 1``.
    """
    if min_labels < 1:
        raise ValueError(f"min_labels must be at least 1, got {min_labels!r}.")
    by_series: dict[str, dict[tuple[datetime, datetime, str], list[Counted]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for part, n in _counted(parts):
        by_series[series_of(part)][period_of(part.decided_at, period)].append((part, n))
    groups: list[RatePeriod] = []
    for series in sorted(by_series, key=_series_order):
        merged = _merge_sparse(sorted(by_series[series].items()), min_labels)
        for bounds, members, enough in merged:
            labels = [label for _start, _end, label in bounds]
            groups.append(
                RatePeriod(
                    series=series,
                    start=bounds[0][0],
                    end=bounds[-1][1],
                    label=labels[0] if len(labels) == 1 else f"{labels[0]} to {labels[-1]}",
                    n_periods=len(bounds),
                    enough=enough,
                    estimate=estimate_counts(members, confidence),
                )
            )
    return groups


def load_over_time(parts: Iterable[LoopPart | Counted], period: TrendPeriod) -> list[LoadPeriod]:
    """The load per period in which the line decided parts, oldest first."""
    by_period: dict[tuple[datetime, datetime, str], list[Counted]] = defaultdict(list)
    for part, n in _counted(parts):
        by_period[period_of(part.decided_at, period)].append((part, n))
    rows = []
    for (start, _end, label), members in sorted(by_period.items()):
        sent = [(part, n) for part, n in members if _stratum(part) in SEND_STRATA]
        labels: Counter[str | None] = Counter()
        for part, n in sent:
            labels[part.label] += n
        n_sent = sum(n for _part, n in sent)
        n_labelled = labels["good"] + labels["defect"]
        audits = [
            (part, n) for part, n in members if part.audited and _stratum(part) not in SEND_STRATA
        ]
        rows.append(
            LoadPeriod(
                start=start,
                label=label,
                n_parts=sum(n for _part, n in members),
                n_sent_to_human=n_sent,
                est_goods_to_human=n_sent * labels["good"] / n_labelled if n_labelled else None,
                n_auto_accepted=sum(n for part, n in members if part.region == AUTO_ACCEPTED),
                n_audits_drawn=sum(n for _part, n in audits),
                n_audits_done=sum(n for part, n in audits if part.label is not None),
            )
        )
    return rows


def line_trends(
    session: Session,
    project_id: int,
    period: TrendPeriod = "week",
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> LineTrends:
    """The Dashboard's headline from the store (one read of the decided parts, counted).

    Raises:
        LookupError: If the project does not exist.
        ValueError: On an unknown period or a confidence outside (0, 1).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}.")
    project = get_project(session, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    counts = loop_part_counts(session, project_id, by="hour" if period == "shift" else "day")
    counted: list[Counted] = [
        (
            LoopPart(
                0,
                count.decided_in,
                count.region,
                count.audit_probability,
                count.audited,
                count.verdict,
                count.label,
                count.model_version_id,
            ),
            count.n,
        )
        for count in counts
    ]
    numbers = model_numbers(session, project_id)
    lineage = _lineage_labels(numbers)
    active = project.active_model_version_id
    active_model = None if active is None or active not in numbers else lineage[active]
    active_parts = [
        (part, n) for part, n in counted if lineage.get(part.model_version_id) == active_model
    ]
    return LineTrends(
        period=period,
        overall=estimate_counts(counted, confidence),
        active_model=active_model,
        active_estimate=(
            estimate_counts(active_parts, confidence)
            if active_model is not None and active_parts
            else None
        ),
        rates=rates_over_time(
            counted,
            period,
            lambda part: lineage.get(part.model_version_id, "unknown model"),
            confidence=confidence,
        ),
        load=load_over_time(counted, period),
    )


def _counted(parts: Iterable[LoopPart | Counted]) -> Iterator[Counted]:
    """``(part, count)`` pairs from parts (count 1) or pairs."""
    for item in parts:
        if isinstance(item, LoopPart):
            yield item, 1
        else:
            yield item


def _lineage_labels(numbers: Mapping[int, tuple[int, int]]) -> dict[int, str]:
    """``{version id: its model's label ("v2")}``."""
    return {version_id: model_label(model) for version_id, (model, _rev) in numbers.items()}


def _series_order(series: str) -> tuple[int, str]:
    """Lineages in model order (v2 before v10), other series after."""
    digits = series[1:]
    return (
        (int(digits), series) if series.startswith("v") and digits.isdigit() else (1 << 30, series)
    )


def _stratum(part: LoopPart) -> str:
    """The estimator's stratum of a stored part (:func:`adcore.loop_estimate.stratum_of`)."""
    return stratum_of(part.region, part.verdict)


class _Tally:
    """Parts, usable labels and promised labels per stratum of a group of parts."""

    def __init__(self) -> None:
        self.sizes: Counter[str] = Counter()
        self.usable: Counter[str] = Counter()
        self.expected: Counter[str] = Counter()

    def add_parts(self, parts: Iterable[Counted]) -> None:
        """Count more parts in."""
        for part, n in parts:
            stratum = _stratum(part)
            self.sizes[stratum] += n
            usable = part.label is not None and label_enters(stratum, part.audited)
            self.usable[stratum] += n * usable
            drawn_with = part.audit_probability if stratum in AUDITED_REGIONS else 1.0
            self.expected[stratum] += n * (1.0 if drawn_with is None else drawn_with)

    def add(self, other: _Tally) -> None:
        """Count another group's parts in."""
        self.sizes.update(other.sizes)
        self.usable.update(other.usable)
        self.expected.update(other.expected)

    def enough(self, min_labels: int) -> bool:
        """Every stratum with parts holds the usable labels it needs (module docstring)."""
        return all(
            self.usable[name] >= max(1, min(min_labels, math.floor(self.expected[name] + 1e-9)))
            for name in self.sizes
        )


def _merge_sparse(
    periods: Sequence[tuple[tuple[datetime, datetime, str], list[Counted]]], min_labels: int
) -> list[tuple[list[tuple[datetime, datetime, str]], list[Counted], bool]]:
    """Merge consecutive periods until each group has enough labels (module docstring).

    Returns:
        ``(the merged periods' bounds, their parts, enough)`` per group, oldest first.
    """
    groups: list[tuple[list[tuple[datetime, datetime, str]], list[Counted], _Tally]] = []
    bounds: list[tuple[datetime, datetime, str]] = []
    members: list[Counted] = []
    tally = _Tally()
    for period_bounds, period_parts in periods:
        bounds.append(period_bounds)
        members.extend(period_parts)
        tally.add_parts(period_parts)
        if tally.enough(min_labels):
            groups.append((bounds, members, tally))
            bounds, members, tally = [], [], _Tally()
    if members and groups:  # a short tail joins the group before it
        last_bounds, last_members, last_tally = groups.pop()
        last_tally.add(tally)
        groups.append((last_bounds + bounds, last_members + members, last_tally))
    elif members:
        groups.append((bounds, members, tally))
    return [(b, m, t.enough(min_labels)) for b, m, t in groups]
