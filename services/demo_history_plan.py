"""The demo's simulated history, planned: which part passes when, by which version, who reviews it.

Pure and seeded (no I/O): :func:`plan_history` turns cells scored once by the real detector
into four weeks of parts, shifts, verdicts, decision regions, audits, reviews and v2's
threshold; audits are drawn as the live line draws them (:class:`adcore.audit.AuditOdds`: each
part's decision region and that region's known odds, stored with the part);
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

from adcore.audit import (
    SENT_TO_HUMAN,
    AuditOdds,
    MissRateEstimate,
    decision_region,
    draw_audit,
    miss_rate_estimate,
)
from adcore.datasets import Sample
from adcore.thresholds import SafeThreshold, cap_censored_raise, select_threshold
from adcore.verdicts import verdict_for
from db import Project

HISTORY_KEY = "demo_history"
"""Project settings key of the marker: ``{"simulated_before": "YYYY-MM-DD", ...}``."""
HISTORY_DAYS = 28
PARTS_PER_DAY = 48
"""Parts inspected per simulated day (16 a shift, two an hour): enough audited passed parts a
week for the line's weekly estimate (see :data:`DEMO_AUDIT_ODDS`); each is an image to store."""
DEFECT_SHARE = 0.2
"""Share of the simulated parts that are defective cells (ELPV's test split has 45%)."""
HISTORY_GOOD_CELLS = 80
HISTORY_DEFECT_CELLS = 40
"""How many good and defective cells are scored for the history (the scoring is the cost)."""
SWITCH_FRACTION = 2 / 3
DEMO_AUDIT_ODDS = AuditOdds(deep_pass=0.1, near_pass=0.2, auto_accepted=0.1, near_band=0.1)
"""The demo project's audit odds per decision region (its stored setting, see
:func:`services.demo.seed_demo`): the live defaults, except deep passes at 10% (the default,
2%, suits a plant passing thousands of parts a day). The demo line passes a few hundred parts
a week, most of them deep passes: at 2% a week brings a handful of audited deep passes (fewer
after the recalibration, when fewer parts pass deep) and some weeks' estimates cannot be
given; at 10%, the share the demo audited every passed part with before regions, every
region that passes parts has audited parts each whole week."""
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
    """One simulated inspection: the cell, when, by which version, and its reviews.

    ``region`` is the part's decision region (:data:`adcore.audit.REGIONS`) and
    ``audit_probability`` that region's known odds that a human looks at the part (1 for parts
    sent to a human), as the live line stores them with the prediction.
    """

    cell: ScoredCell
    at: datetime
    shift: int
    version: int
    threshold: float
    verdict: str
    region: str
    audit_probability: float
    audit: bool
    reviews: tuple[PlannedReview, ...] = ()


@dataclass(frozen=True)
class HistoryPlan:
    """The simulated history: parts in time order, the switch moment and v2's threshold.

    Attributes:
        parts: The parts in time order.
        start: Midnight (UTC) of the history's first day.
        switch_at: When v2 took over.
        simulated_before: The first day that is not simulated.
        threshold_v1: v1's threshold.
        threshold_v2: v2's threshold (chosen again on the parts reviewed before the switch).
        threshold_note: The threshold rule's own note (:class:`adcore.thresholds.SafeThreshold`).
        audit_before: What the audits of parts passed before the switch found (the evidence
            the recalibration had, counted as the live job counts it).
        odds: The audit odds the parts were drawn with.
    """

    parts: list[PlannedPart]
    start: datetime
    switch_at: datetime
    simulated_before: date
    threshold_v1: float
    threshold_v2: float
    threshold_note: str
    audit_before: MissRateEstimate
    odds: AuditOdds

    @property
    def switch_day(self) -> int:
        """The history's day (1 = its first) on which v2 took over."""
        return (self.switch_at - self.start).days + 1

    @property
    def recalibration_note(self) -> str:
        """Why v2 exists, in plain words with the history's numbers (stored on v2)."""
        return recalibration_note(
            self.switch_day,
            self.switch_at.date(),
            self.audit_before,
            self.threshold_v1,
            self.threshold_v2,
        )


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


def history_cells(test: Sequence[Sample], exclude: Sequence[Sample]) -> list[Sample]:
    """The cells the history scores: evenly spread good and defective test cells not excluded."""
    excluded = {sample.path for sample in exclude}
    chosen: list[Sample] = []
    for label, n in ((0, HISTORY_GOOD_CELLS), (1, HISTORY_DEFECT_CELLS)):
        pool = [s for s in test if s.label == label and s.path not in excluded]
        step = max(1, len(pool) // n) if n else 1
        chosen += pool[::step][:n]
    return chosen


def plan_history(
    cells: Sequence[ScoredCell],
    *,
    threshold_v1: float,
    target_fnr: float,
    today: date,
    days: int = HISTORY_DAYS,
    parts_per_day: int = PARTS_PER_DAY,
    odds: AuditOdds = DEMO_AUDIT_ODDS,
    seed: int = _SEED,
) -> HistoryPlan:
    """Plan the simulated history of scored cells (no I/O; the same inputs give the same plan).

    The history covers the ``days`` days ending the day before yesterday, so that night shifts
    and late reviews end before ``today``. Each day has ``parts_per_day`` parts; each part is a
    cell drawn at random, defective with probability :data:`DEFECT_SHARE` (when the cells have
    both kinds), so a cell passes the line on several days. Each part falls in the decision
    region its score and the version's threshold give (:func:`adcore.audit.decision_region`
    with the near band of ``odds``; the demo has no triage model, so nothing is auto-accepted)
    and is drawn for audit with that region's odds, as :class:`services.audit_sampling.
    AuditSampler` draws a part at its first inspection (parts sent to a human are reviewed,
    not drawn).

    Args:
        cells: The scored cells.
        threshold_v1: The fitted model's threshold.
        target_fnr: The project's miss-rate target (chooses v2's threshold).
        today: The first day that is not simulated (UTC).
        days: How many days the history covers.
        parts_per_day: Parts inspected per day.
        odds: The project's audit odds per region (and its near band).
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
        region = decision_region(
            cell.score, threshold, auto_accepted=False, near_band=odds.near_band
        )
        probability = odds.probability(region)
        audit = region != SENT_TO_HUMAN and draw_audit(probability, rng)
        verdict = verdict_for(cell.score, threshold)
        reviews = (
            _reviews(rng, at, shift, cell.sample.label) if verdict == "defect" or audit else ()
        )
        return PlannedPart(
            cell, at, shift, version, threshold, verdict, region, probability, audit, reviews
        )

    before = [inspect(*arrival, 1, threshold_v1) for arrival in arrivals if arrival[0] < switch_at]
    reviewed = [part for part in before if part.reviews]
    audit_before = _audit_evidence(reviewed)
    decision = _recalibrated(reviewed, threshold_v1, target_fnr, audit_before)
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
        audit_before=audit_before,
        odds=odds,
    )


def recalibration_note(
    day: int,
    on: date,
    audit: MissRateEstimate,
    threshold_before: float,
    threshold_after: float,
) -> str:
    """Why a recalibrated version exists, for a manager: the evidence and what to expect.

    Args:
        day: The history's day on which it took over (1 = the first).
        on: That day's date.
        audit: What the audits of passed parts found before.
        threshold_before: The threshold it replaced.
        threshold_after: Its threshold.

    Returns:
        One paragraph, e.g. "Recalibrated on day 19 (2026-03-05): audits of passed parts found
        3 missed defects of 70 audited; ...".
    """
    found = (
        f"audits of passed parts found {audit.n_missed} missed "
        f"{'defect' if audit.n_missed == 1 else 'defects'} of {audit.n_audited} audited"
        if audit.n_audited
        else "no passed part had been audited yet"
    )
    old, new = f"{threshold_before:.4g}", f"{threshold_after:.4g}"
    if threshold_after < threshold_before:
        change = (
            f"the threshold was lowered from {old} to {new} to put missed defects first "
            "(FNR first); expect more good parts sent to a human."
        )
    elif threshold_after > threshold_before:
        change = (
            f"the threshold was raised from {old} to {new}, as the audits show few missed "
            "defects; expect fewer good parts sent to a human."
        )
    else:
        change = f"the threshold stays at {old}; expect the same load on the inspectors."
    return f"Recalibrated on day {day} ({on.isoformat()}): {found}; {change}"


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


def _audit_evidence(reviewed: Sequence[PlannedPart]) -> MissRateEstimate:
    """Audited parts among ``reviewed`` and the defects among them, each part once.

    Counted as :func:`services.audit_sampling.project_miss_rate` counts for the live
    recalibration job (every labelled audited part, unweighted).
    """
    audited = [part for part in reviewed if part.audit]
    return miss_rate_estimate(sum(part.cell.sample.label for part in audited), len(audited))


def _recalibrated(
    reviewed: Sequence[PlannedPart],
    threshold_v1: float,
    target_fnr: float,
    audit: MissRateEstimate,
) -> SafeThreshold:
    """v2's threshold as the recalibration job chooses it, on the parts reviewed before."""
    labels = np.array([part.cell.sample.label for part in reviewed], dtype=int)
    if not labels.any():
        return cap_censored_raise(threshold_v1, threshold_v1, miss_rate_estimate(0, 0), 0.0)
    scores = np.array([part.cell.score for part in reviewed], dtype=float)
    chosen = select_threshold(scores, labels, target_fnr=target_fnr).value
    return cap_censored_raise(chosen, threshold_v1, audit, target_fnr)
