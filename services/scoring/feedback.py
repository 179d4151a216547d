"""The triage model (stage 2 of the decision cascade): which one decides, and its decisions.

When a project has an active feedback scorer that fits the detector doing the scoring (trained
on it or on an instant-update ancestor, :func:`active_scorer`), it triages the parts the
screen (the detector at its threshold) flags: its calibrated p(defect) below its own threshold
(the auto-accept threshold) auto-accepts the part as good; otherwise the part goes to a human.
Parts the screen passes are never triaged. The detector's score, threshold and anomaly map are
stored and shown as before. Parts without a detector vector, and projects without a fitting
scorer, keep the screen's verdict (``score >= threshold``, :func:`adcore.verdicts.verdict_for`).
A scorer becomes active only through its gate (:mod:`services.training.scorer_jobs`: out-of-fold
evidence that it sends fewer good parts to a human at the same miss budget).

When the scorer trains is :mod:`services.scorer_training`'s business; this module only looks
the active one up (loaded once per artifact, cached by path and file time) and applies it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session

from adcore.errors import LoupeError
from adcore.verdicts import DEFECT, verdict_for
from db.model_families import ModelFamily, active_version, detector_lineage
from db.model_lineages import label_of
from db.model_metrics import read_metrics
from db.models import ModelVersion
from db.review_queue import DEFAULT_PROBABILITY_THRESHOLD
from services.project_settings import stage2_enabled

if TYPE_CHECKING:
    from adcore.feedback_scorer import FeedbackScorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveScorer:
    """The project's active feedback scorer, ready to use.

    Attributes:
        version_id: Its model version id.
        version: Its version number.
        threshold: Its current probability threshold (a manager may have moved it).
        detector_version_id: The detector version it was trained on.
        scorer: The loaded model (``scorer.predict_proba(scores, vectors)``).
        label: Its lineage label (``"v3.0"``, :mod:`db.model_lineages`), when known.
    """

    version_id: int
    version: int
    threshold: float | None
    detector_version_id: int | None
    scorer: FeedbackScorer
    label: str | None = None


def active_scorer(
    session: Session, project_id: int, detector: ModelVersion | None = None
) -> ActiveScorer | None:
    """The project's active scorer, if there is one that fits the active detector.

    A scorer fits when it was trained on the active detector or an instant-update ancestor
    of it (same scores and vectors); after a refit or a detector rollback it does not, and
    ``None`` is returned (logged) until a scorer is trained on the new detector.

    Args:
        session: The caller's session.
        project_id: The project.
        detector: The project's active detector version when the caller has it read already;
            default: read here.

    Raises:
        ModelFileError: The active scorer's files are missing or tampered with.
    """
    version = active_version(session, project_id, ModelFamily.SCORER)
    if version is None:
        return None
    if detector is None:
        detector = active_version(session, project_id, ModelFamily.DETECTOR)
    trained_on = scorer_detector_id(version)
    if detector is None or trained_on not in detector_lineage(detector):
        logger.info(
            "Scorer %s of project %s was trained on detector id %s, not the active one: unused",
            label_of(version),
            project_id,
            trained_on,
        )
        return None
    return ActiveScorer(
        version_id=version.id,
        version=version.version,
        threshold=version.threshold,
        detector_version_id=trained_on,
        scorer=load_scorer(version.artifact_path),
        label=label_of(version),
    )


def scorer_detector_id(version: ModelVersion) -> int | None:
    """The detector version id a scorer version was trained on (from its metrics)."""
    detector = read_metrics(version).scorer_detector
    return None if detector is None else detector.version_id


def load_scorer(artifact_path: str) -> FeedbackScorer:
    """Load a saved scorer, once per folder and file time (verified on first load)."""
    config = Path(artifact_path) / "config.json"
    stamp = config.stat().st_mtime_ns if config.is_file() else 0
    return _cached_scorer(str(artifact_path), stamp)


@lru_cache(maxsize=16)
def _cached_scorer(artifact_path: str, _stamp: int) -> FeedbackScorer:
    from adcore.feedback_scorer import FeedbackScorer  # torch: only once a scorer is active

    return FeedbackScorer.load(artifact_path)


@dataclass(frozen=True)
class ScorerDecision:
    """A feedback scorer's verdict on one part.

    Attributes:
        scorer_version_id: The scorer version that decided.
        scorer_version: Its version number.
        probability: Its calibrated p(defect).
        threshold: The probability threshold in force.
        scorer_label: Its lineage label (``"v3.0"``), when known.
    """

    scorer_version_id: int
    scorer_version: int
    probability: float
    threshold: float
    scorer_label: str | None = None

    @property
    def verdict(self) -> str:
        """``"defect"`` when the probability reaches the threshold (the one rule), else good."""
        return verdict_for(self.probability, self.threshold)

    def sentence(self) -> str:
        """One sentence for the explanation, e.g. after the detector's own facts."""
        action = "sent to a human" if self.verdict == DEFECT else "auto-accepted as good"
        label = self.scorer_label or f"v{self.scorer_version}"
        return (
            f"The triage model (feedback scorer {label}, trained on the "
            f"inspectors' labels of flagged parts) gives p(defect) {self.probability:.2f} "
            f"against its auto-accept threshold {self.threshold:.2f}: {action}."
        )


def deciding_scorer(
    session: Session, project_id: int, version: ModelVersion
) -> ActiveScorer | None:
    """The active scorer that decides for parts scored by the detector ``version``, if any.

    Only the active detector's predictions are decided by a scorer (a part scored by an older
    version keeps the detector's verdict). A scorer whose files cannot be loaded is logged and
    ignored: the detector decides, the line keeps running.
    """
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    if detector is None or detector.id != version.id or not stage2_enabled(detector.project):
        return None
    try:
        return active_scorer(session, project_id, detector)
    except (LoupeError, OSError, ValueError) as err:
        logger.error("The active feedback scorer of project %s is unusable: %s", project_id, err)
        return None


def scorer_decisions(
    scorer: ActiveScorer | None,
    scores: Sequence[float],
    vectors: Sequence[np.ndarray | None],
    flagged: Sequence[bool] | None = None,
) -> list[ScorerDecision | None]:
    """The triage model's decision for each part the screen flagged (None elsewhere).

    Args:
        scorer: The deciding scorer (:func:`deciding_scorer`), or None.
        scores: (N,) detector scores.
        vectors: N detector vectors of shape (D,), or None where a part has none.
        flagged: (N,) whether the screen (the detector at its threshold) flagged each part;
            only those are triaged. Default: every part.

    Returns:
        N decisions; None for parts the screen passed, parts without a vector, or all None
        without a scorer.
    """
    decisions: list[ScorerDecision | None] = [None] * len(scores)
    screened = [True] * len(scores) if flagged is None else list(flagged)
    usable = [i for i, vector in enumerate(vectors) if vector is not None and screened[i]]
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
            scorer.version_id, scorer.version, float(probability), threshold, scorer.label
        )
    return decisions
