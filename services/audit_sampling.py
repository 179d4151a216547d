"""Audit sampling of passed parts: who is drawn at inspection, and the miss rate it estimates.

Reviews alone are censored (inspectors see flagged and near-threshold parts only), so a share
of the parts that *pass* is drawn at random and queued for review like flagged parts
(:mod:`adcore.audit` explains the statistics). This module joins the core and the store:

* :class:`AuditSampler` decides, when inspection stores a prediction, whether it is an audit
  sample, with the known odds of the part's decision region (:class:`adcore.audit.AuditOdds`:
  deep pass, near pass, auto-accepted; parts sent to a human have probability 1 and are not
  audits). The region and its odds are stored with the part. A part is drawn at most once, at
  its first inspection; a part scored before (re-scoring after an instant update or a
  promotion, or the same image uploaded again) is never drawn again but keeps its earlier
  region, odds and flag, so a drawn part stays in the review queue until it is labelled,
  whatever a newer model says about it. Re-drawing at every re-score would give often
  re-scored parts more chances and the odds would no longer be known.
* :func:`project_miss_rate` gives the threshold jobs the miss rate among passed parts (every
  labelled audited part; see :mod:`db.audits` for how parts count). The line's miss rate, with
  each audit weighted by its odds, is :mod:`services.loop_rates`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy.orm import Session

from adcore.audit import (
    SENT_TO_HUMAN,
    AuditOdds,
    MissRateEstimate,
    draw_audit,
    miss_rate_estimate,
)
from db.audits import audit_counts, first_decision
from db.projects import get_project
from services.project_settings import audit_odds

__all__ = [
    "AuditDraw",
    "AuditSampler",
    "audit_sampler",
    "project_miss_rate",
]


@dataclass(frozen=True)
class AuditDraw:
    """What is stored with a prediction about the line's decision and its audit.

    Attributes:
        region: The part's decision region (:data:`adcore.audit.REGIONS`).
        probability: The known probability that a part of the region is looked at by a
            human (1 for parts sent to a human).
        audit: Whether the part was drawn for audit.
    """

    region: str
    probability: float
    audit: bool


@dataclass(frozen=True)
class AuditSampler:
    """Draws parts for audit with the known odds of their decision region.

    Attributes:
        odds: The project's audit odds per region (and its near band).
        rng: The random generator (seed one for reproducible draws); ``None`` for the system's.
    """

    odds: AuditOdds
    rng: random.Random | None = None

    def decide(self, session: Session, image_id: int, region: str) -> AuditDraw:
        """The region, odds and audit flag to store with ``image_id``'s new prediction.

        Call it in the transaction that stores the prediction, before adding it. The generator
        is only consulted for a part's first prediction, and only outside the sent-to-human
        region. A part scored before keeps its first prediction's region, odds and flag.

        Args:
            session: The storing transaction's session.
            image_id: The (flushed) image.
            region: The new prediction's decision region.

        Returns:
            What to store (``Prediction.decision_region``, ``audit_probability``, ``audit``).
        """
        first = first_decision(session, image_id)
        if first is not None:  # scored before: one draw per part, its decision carries on
            if first.region is not None and first.audit_probability is not None:
                return AuditDraw(first.region, first.audit_probability, first.audit)
            # decided before regions existed: keep its flag, record the region it has now
            return AuditDraw(region, self.odds.probability(region), first.audit)
        probability = self.odds.probability(region)
        if region == SENT_TO_HUMAN:
            return AuditDraw(region, probability, False)
        return AuditDraw(region, probability, draw_audit(probability, self.rng))


def audit_sampler(
    session: Session, project_id: int, rng: random.Random | None = None
) -> AuditSampler:
    """The sampler for a project's inspections, with its current audit odds.

    Raises:
        LookupError: If the project does not exist.
    """
    project = get_project(session, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    return AuditSampler(audit_odds(project), rng)


def project_miss_rate(session: Session, project_id: int) -> MissRateEstimate:
    """The miss rate among a project's passed parts, from every labelled audited part."""
    n_missed, n_audited = audit_counts(session, project_id)
    return miss_rate_estimate(n_missed, n_audited)
