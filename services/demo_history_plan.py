"""The demo's simulated history, planned: which part passes when, by which version, who reviews it.

Pure and seeded (no I/O): :func:`plan_history` turns cells scored once by the real detector
into four weeks of parts, shifts, verdicts, audits, reviews and v2's threshold;
:mod:`services.demo_history` scores the cells and stores the plan (see there for the whole
story). The marker that tells the UI which days are simulated is read here
(:func:`simulated_before`), so pages need not import the scoring side (torch).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from adcore.audit import miss_rate_estimate
from adcore.datasets import Sample
from adcore.thresholds import SafeThreshold, cap_censored_raise, select_threshold
from adcore.verdicts import verdict_for
from db import Project

HISTORY_KEY = "demo_history"
"""Project settings key of the marker: ``{"simulated_before": "YYYY-MM-DD", ...}``."""
HISTORY_DAYS = 28
PARTS_PER_DAY = 36
"""Parts inspected per simulated day (12 a shift)."""
DEFECT_SHARE = 0.2
"""Share of the simulated parts that are defective cells (ELPV's test split has 45%)."""
HISTORY_GOOD_CELLS = 80
HISTORY_DEFECT_CELLS = 40
"""How many good and defective cells are scored for the history (the scoring is the cost)."""
SWITCH_FRACTION = 2 / 3
DEMO_AUDIT_SHARE = 0.1
"""Share of passed parts drawn for audit in the history (stored as the project's share)."""
WRONG_FIRST_LOOK_SHARE = 0.03
SECOND_LOOK_SHARE = 0.05
SHIFT_HOURS = 8
SHIFTS: tuple[tuple[int, str], ...] = (
    (6, "demo.inspector.early"),
    (14, "demo.inspector.late"),
    (22, "demo.inspector.night"),
)
"""Each shift's first hour (UTC) and the simulated inspector who works it."""
_SEED = 14


@dataclass(frozen=True)
class ScoredCell:
    """One ELPV cell scored once by the real detector.

    Attributes:
        sample: The cell and its ground-truth label (1 = defect).
        score: The detector's anomaly score.
        map_path: Its stored anomaly map (relative to the data directory).
        embedding: Its global vector as stored (float16 bytes), or ``None``.
    """

    sample: Sample
    score: float
    map_path: str
    embedding: bytes | None


@dataclass(frozen=True)
class PlannedReview:
    """One simulated review: who, when, which label, how long it took."""

    shift: int
    at: datetime
    label: str
    seconds: float


@dataclass(frozen=True)
class PlannedPart:
    """One simulated inspection: the cell, when, by which version, and its reviews."""

    cell: ScoredCell
    at: datetime
    shift: int
    version: int
    threshold: float
    verdict: str
    audit: bool
    reviews: tuple[PlannedReview, ...] = ()


@dataclass(frozen=True)
class HistoryPlan:
    """The simulated history: parts in time order, the switch moment and v2's threshold."""

    parts: list[PlannedPart]
    start: datetime
    switch_at: datetime
    simulated_before: date
    threshold_v1: float
    threshold_v2: float
    threshold_note: str


def history_marker(project: Project) -> dict[str, Any] | None:
    """The project's simulated-history marker, or ``None`` when it has no simulated history."""
    marker = (project.settings or {}).get(HISTORY_KEY)
    return marker if isinstance(marker, dict) else None


def simulated_before(project: Project) -> date | None:
    """The first day that is not simulated (days before it are), or ``None``."""
    marker = history_marker(project)
    try:
        return date.fromisoformat(str(marker["simulated_before"])) if marker else None
    except (KeyError, ValueError):
        return None


def plan_history(
    cells: Sequence[ScoredCell],
    *,
    threshold_v1: float,
    target_fnr: float,
    today: date,
    days: int = HISTORY_DAYS,
    parts_per_day: int = PARTS_PER_DAY,
    seed: int = _SEED,
) -> HistoryPlan:
    """Plan the simulated history of scored cells (no I/O; the same inputs give the same plan).

    The history covers the ``days`` days ending the day before yesterday, so that night shifts
    and late reviews end before ``today``. Each day has ``parts_per_day`` parts; each part is a
    cell drawn at random, defective with probability :data:`DEFECT_SHARE` (when the cells have
    both kinds), so a cell passes the line on several days.

    Args:
        cells: The scored cells.
        threshold_v1: The fitted model's threshold.
        target_fnr: The project's miss-rate target (chooses v2's threshold).
        today: The first day that is not simulated (UTC).
        days: How many days the history covers.
        parts_per_day: Parts inspected per day.
        seed: The random seed.

    Returns:
        The plan.

    Raises:
        ValueError: Without cells, days or parts.
    """
    if not cells or days < 1 or parts_per_day < 1:
        raise ValueError("A simulated history needs cells, at least one day and one part a day.")
    rng = random.Random(seed)
    defective = [cell for cell in cells if cell.sample.label]
    good = [cell for cell in cells if not cell.sample.label]
    start = datetime.combine(today - timedelta(days=days + 1), datetime.min.time(), UTC)
    arrivals = []
    for day in range(days):
        for _ in range(parts_per_day):
            pool = defective if (rng.random() < DEFECT_SHARE and defective) or not good else good
            shift = rng.randrange(len(SHIFTS))
            offset = timedelta(hours=SHIFTS[shift][0] + rng.uniform(0, SHIFT_HOURS - 1))
            arrivals.append((start + timedelta(days=day) + offset, shift, rng.choice(pool)))
    arrivals.sort(key=lambda arrival: arrival[0])
    switch_at = start + timedelta(days=math.floor(days * SWITCH_FRACTION), hours=SHIFTS[0][0])

    def inspect(at: datetime, shift: int, cell: ScoredCell, version: int, threshold: float):
        verdict = verdict_for(cell.score, threshold)
        audit = verdict == "good" and rng.random() < DEMO_AUDIT_SHARE
        reviews = (
            _reviews(rng, at, shift, cell.sample.label) if verdict == "defect" or audit else ()
        )
        return PlannedPart(cell, at, shift, version, threshold, verdict, audit, reviews)

    before = [inspect(*arrival, 1, threshold_v1) for arrival in arrivals if arrival[0] < switch_at]
    decision = _recalibrated([part for part in before if part.reviews], threshold_v1, target_fnr)
    after = [
        inspect(*arrival, 2, decision.value) for arrival in arrivals if arrival[0] >= switch_at
    ]
    return HistoryPlan(
        parts=before + after,
        start=start,
        switch_at=switch_at,
        simulated_before=today,
        threshold_v1=threshold_v1,
        threshold_v2=decision.value,
        threshold_note=decision.note,
    )


def _reviews(rng: random.Random, at: datetime, shift: int, truth: int) -> tuple[PlannedReview, ...]:
    """The reviews of one part: the shift's inspector, sometimes a second look next shift."""
    label = "defect" if truth else "good"
    other = "good" if truth else "defect"
    seconds = rng.lognormvariate(math.log(35.0 if truth else 20.0), 0.4)
    first_at = at + timedelta(minutes=rng.uniform(2, 60))
    next_shift = (shift + 1) % len(SHIFTS)
    second_at = first_at + timedelta(hours=SHIFT_HOURS)
    draw = rng.random()
    if draw < WRONG_FIRST_LOOK_SHARE:  # the first look is wrong, the next shift corrects it
        return (
            PlannedReview(shift, first_at, other, seconds),
            PlannedReview(next_shift, second_at, label, 1.5 * seconds),
        )
    first = PlannedReview(shift, first_at, label, seconds)
    if draw < WRONG_FIRST_LOOK_SHARE + SECOND_LOOK_SHARE:  # a confirming second look
        return (first, PlannedReview(next_shift, second_at, label, seconds))
    return (first,)


def _recalibrated(
    reviewed: Sequence[PlannedPart], threshold_v1: float, target_fnr: float
) -> SafeThreshold:
    """v2's threshold as the recalibration job chooses it, on the parts reviewed before."""
    labels = np.array([part.cell.sample.label for part in reviewed], dtype=int)
    if not labels.any():
        return cap_censored_raise(threshold_v1, threshold_v1, miss_rate_estimate(0, 0), 0.0)
    scores = np.array([part.cell.score for part in reviewed], dtype=float)
    audited = [part for part in reviewed if part.audit]
    audit = miss_rate_estimate(sum(p.cell.sample.label for p in audited), len(audited))
    chosen = select_threshold(scores, labels, target_fnr=target_fnr).value
    return cap_censored_raise(chosen, threshold_v1, audit, target_fnr)
