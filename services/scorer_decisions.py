"""The active feedback scorer deciding verdicts at inspection time.

When a project has an active feedback scorer that fits the detector doing the scoring (trained
on it or on an instant-update ancestor, :func:`services.scorer_training.active_scorer`), the
scorer's calibrated p(defect) against its own threshold decides each part's verdict; the
detector's score, threshold and anomaly map are stored and shown as before. Parts without a
detector vector, and projects without a fitting scorer, keep the detector's verdict
(``score >= threshold``). Until there are enough labels for a scorer (see
:data:`adcore.feedback_scorer.MIN_PER_CLASS`), the detector alone decides.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from adcore.errors import LoupeError
from db.model_families import ModelFamily, active_version
from db.review_queue import DEFAULT_PROBABILITY_THRESHOLD
from services.scorer_training import ActiveScorer, active_scorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScorerDecision:
    """A feedback scorer's verdict on one part.

    Attributes:
        scorer_version_id: The scorer version that decided.
        scorer_version: Its version number.
        probability: Its calibrated p(defect).
        threshold: The probability threshold in force.
    """

    scorer_version_id: int
    scorer_version: int
    probability: float
    threshold: float

    @property
    def verdict(self) -> str:
        """``"defect"`` when ``probability >= threshold``, else ``"good"``."""
        return "defect" if self.probability >= self.threshold else "good"

    def sentence(self) -> str:
        """One sentence for the explanation, e.g. after the detector's own facts."""
        action = "flagged" if self.verdict == "defect" else "passed"
        return (
            f"The feedback scorer v{self.scorer_version}, trained on the inspectors' labels, "
            f"gives p(defect) {self.probability:.2f} against {self.threshold:.2f}: {action}."
        )


def deciding_scorer(
    session: Session, project_id: int, detector_version_id: int
) -> ActiveScorer | None:
    """The active scorer that decides for parts scored by ``detector_version_id``, if any.

    Only the active detector's predictions are decided by a scorer (a part scored by an older
    version keeps the detector's verdict). A scorer whose files cannot be loaded is logged and
    ignored: the detector decides, the line keeps running.
    """
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    if detector is None or detector.id != detector_version_id:
        return None
    try:
        return active_scorer(session, project_id)
    except (LoupeError, OSError, ValueError) as err:
        logger.error("The active feedback scorer of project %s is unusable: %s", project_id, err)
        return None


def scorer_decisions(
    scorer: ActiveScorer | None, scores: Sequence[float], vectors: Sequence[np.ndarray | None]
) -> list[ScorerDecision | None]:
    """The scorer's decision for each part (None where the detector decides).

    Args:
        scorer: The deciding scorer (:func:`deciding_scorer`), or None.
        scores: (N,) detector scores.
        vectors: N detector vectors of shape (D,), or None where a part has none.

    Returns:
        N decisions; None for parts without a vector, or all None without a scorer.
    """
    decisions: list[ScorerDecision | None] = [None] * len(scores)
    usable = [i for i, vector in enumerate(vectors) if vector is not None]
    if scorer is None or not usable:
        return decisions
    try:
        probabilities = scorer.scorer.predict_proba(
            np.asarray([scores[i] for i in usable], dtype=np.float64),
            np.stack([np.asarray(vectors[i], dtype=np.float32) for i in usable]),
        )
    except (LoupeError, ValueError) as err:  # e.g. vectors of another length: detector decides
        logger.error("Feedback scorer v%s not applied: %s", scorer.version, err)
        return decisions
    threshold = (
        float(scorer.threshold) if scorer.threshold is not None else DEFAULT_PROBABILITY_THRESHOLD
    )
    for i, probability in zip(usable, probabilities, strict=True):
        decisions[i] = ScorerDecision(
            scorer.version_id, scorer.version, float(probability), threshold
        )
    return decisions
