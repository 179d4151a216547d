"""The one rule of a verdict: a part is flagged when its score reaches the threshold.

Everything that turns a score into a verdict calls :func:`verdict_for` (or :func:`is_flagged`):
a detector's :class:`adcore.detectors.base.ScoredImage`, the explanation's facts
(:mod:`adcore.explain.facts`), the feedback scorer's decision (its p(defect) against its own
threshold) and the scoring service (:mod:`services.scoring`). The review queue's SQL
(``db/review_queue.py``) states the same rule in SQL and points here.
"""

from __future__ import annotations

DEFECT, GOOD = "defect", "good"
"""The two verdicts (the values of :class:`db.Label`)."""


def is_flagged(score: float, threshold: float) -> bool:
    """Whether a part is flagged: ``score >= threshold`` (a score at the threshold is flagged)."""
    return bool(score >= threshold)


def verdict_for(score: float, threshold: float) -> str:
    """``"defect"`` when :func:`is_flagged`, else ``"good"``."""
    return DEFECT if is_flagged(score, threshold) else GOOD
