"""The feedback scorer in the app: when it trains by itself, its option, the active scorer.

* **Automatic training** (:func:`maybe_queue_scorer_training`, called after every saved
  review): a ``train_feedback_scorer`` job is queued when at least ``every_n_reviews`` label
  reviews (default 25) were saved in the project since the last such job was queued, or at
  the **end of a review batch**: the project's review queue is empty after a review and the
  new reviews are at least :data:`BATCH_GROWTH` of the labelled parts the last training had
  (and at least :data:`MIN_BATCH_REVIEWS`). Early on, when every label counts, a short batch
  is enough; later the every-N rule takes over, so inspectors who keep the queue empty do not
  set off a training every few parts. Never while one is queued or running, never for a
  detector without per-image vectors, and never before the job itself could train: at least
  :data:`MIN_PER_CLASS` labelled defects and good parts, with the detector's vector, outside
  the scorer's held-out share (:data:`SCORER_HOLDOUT`; the count the job makes). The job is
  queued by the system (no user): it only makes a candidate, which a manager promotes.
* **The option** ``settings["scorer"] = {"every_n_reviews": int}`` per project
  (:func:`scorer_setting`, :func:`set_scorer_setting`; managers only).
* **The active scorer** (:func:`active_scorer`): the project's active ``scorer`` version,
  loaded once per artifact (cached by path and file time), only when it was trained on the
  active detector's lineage; callers apply ``scorer.predict_proba(scores, vectors)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from adcore.feedback_scorer import DETECTORS_WITHOUT_VECTORS, MIN_PER_CLASS, FeedbackScorer
from adcore.holdout import in_evaluation_share
from db.base import Label
from db.jobs import enqueue_automatic_job, has_pending_job, latest_job
from db.labels import reviews_after
from db.model_families import ModelFamily, active_version, detector_lineage
from db.model_metrics import SCORER_DETECTOR_KEY
from db.models import Job, ModelVersion, Project, User
from db.permissions import CAN_MANAGE_MODELS, CAN_REVIEW, require_session_role
from db.predictions import labelled_with_vectors
from db.review_queue import queue_size

logger = logging.getLogger(__name__)

TRAIN_FEEDBACK_SCORER = "train_feedback_scorer"
"""The job kind (run by :func:`workers.scorer_jobs.train_feedback_scorer_job`)."""

SCORER_KEY = "scorer"
DEFAULT_EVERY_N_REVIEWS = 25
MAX_EVERY_N_REVIEWS = 100_000
MIN_BATCH_REVIEWS = 5
"""Fewest new reviews for which the end of a review batch queues a training."""
BATCH_GROWTH = 0.2
"""At the end of a batch, new reviews must be this share of the last training's labelled parts."""
SCORER_HOLDOUT = 0.25
"""Share of labelled parts (by content hash) the scorer job keeps to judge its candidate."""
THROUGH_REVIEW_KEY = "through_review_id"
"""Job parameter: the project's newest review id when the job was queued (the watermark)."""
LABELLED_KEY = "labelled_parts"
"""Job parameter: the labelled parts with a vector when the job was queued."""


@dataclass(frozen=True)
class ScorerSetting:
    """A project's feedback-scorer option.

    Attributes:
        every_n_reviews: Queue a training after this many new reviews (0: only at the end of
            a review batch).
    """

    every_n_reviews: int = DEFAULT_EVERY_N_REVIEWS

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["scorer"]``."""
        return {"every_n_reviews": self.every_n_reviews}


def scorer_setting(project: Project) -> ScorerSetting:
    """Return a project's scorer option (every 25 reviews by default)."""
    stored = (project.settings or {}).get(SCORER_KEY) or {}
    value = stored.get("every_n_reviews", DEFAULT_EVERY_N_REVIEWS)
    try:
        return ScorerSetting(every_n_reviews=max(0, int(value)))
    except (TypeError, ValueError):
        return ScorerSetting()


def set_scorer_setting(
    session: Session, project_id: int, setting: ScorerSetting, *, user: User
) -> ScorerSetting:
    """Change a project's scorer option (managers and admins only; the caller commits).

    Raises:
        PermissionDenied: If the user may not manage models (nothing changes).
        LookupError: If the project does not exist.
        ValueError: If ``every_n_reviews`` is negative or absurdly large.
    """
    require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change the scorer option."
    )
    every = int(setting.every_n_reviews)
    if not 0 <= every <= MAX_EVERY_N_REVIEWS:
        raise ValueError(f"Reviews between trainings must be 0 to {MAX_EVERY_N_REVIEWS}.")
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    stored = ScorerSetting(every)
    project.settings = {**(project.settings or {}), SCORER_KEY: stored.to_json()}
    session.flush()
    return stored


def scorer_unavailable_reason(session: Session, project_id: int) -> str | None:
    """Why the project cannot train a feedback scorer now, or ``None`` when it can."""
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    if detector is None:
        return "Train a detector first: the scorer learns from its scores."
    return no_vectors_reason(detector)


def maybe_queue_scorer_training(session: Session, project_id: int, user: User) -> Job | None:
    """Queue a ``train_feedback_scorer`` job if the project's rule says so (see module doc).

    Call it after a review is saved (in its own transaction: a refusal here must not undo the
    review). The caller commits.

    Args:
        session: The caller's session.
        project_id: The project whose part was just reviewed.
        user: The reviewer (any role that may review).

    Returns:
        The queued job, or ``None`` when nothing was queued.

    Raises:
        PermissionDenied: If the user may not review.
    """
    require_session_role(session, user, *CAN_REVIEW)
    project = session.get(Project, project_id)
    if project is None or scorer_unavailable_reason(session, project_id) is not None:
        return None
    if has_pending_job(session, project_id, TRAIN_FEEDBACK_SCORER):
        return None
    last = latest_job(session, project_id, TRAIN_FEEDBACK_SCORER)
    last_params = {} if last is None else dict(last.parameters or {})
    tally = reviews_after(session, project_id, last_params.get(THROUGH_REVIEW_KEY))
    every = scorer_setting(project).every_n_reviews
    batch = max(MIN_BATCH_REVIEWS, round(BATCH_GROWTH * int(last_params.get(LABELLED_KEY, 0))))
    if every and tally.count >= every:
        trigger = f"{tally.count} new reviews (every {every})"
    elif tally.count >= batch and queue_size(session, project_id) == 0:
        trigger = f"the end of a review batch ({tally.count} new reviews, queue empty)"
    else:
        return None
    # After the cheap counts: this reads every labelled part, and runs after every review.
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    labelled = labelled_with_vectors(session, project_id, detector_lineage(detector))
    if min(trainable_counts(labelled)) < MIN_PER_CLASS:
        return None
    job = enqueue_automatic_job(
        session,
        kind=TRAIN_FEEDBACK_SCORER,
        parameters={
            THROUGH_REVIEW_KEY: tally.newest_review_id,
            LABELLED_KEY: len(labelled),
            "trigger": trigger,
        },
        project_id=project_id,
    )
    logger.info("Queued job %s (%s) for project %s: %s", job.id, job.kind, project_id, trigger)
    return job


def trainable_counts(labelled: list[tuple[str, str]]) -> tuple[int, int]:
    """(defects, good parts) among labelled parts outside the scorer's held-out share.

    Args:
        labelled: (sha256, label) of the labelled parts with a detector vector.
    """
    training = [
        label for digest, label in labelled if not in_evaluation_share(digest, SCORER_HOLDOUT)
    ]
    n_defect = sum(label == Label.DEFECT for label in training)
    return n_defect, len(training) - n_defect


@dataclass(frozen=True)
class ActiveScorer:
    """The project's active feedback scorer, ready to use.

    Attributes:
        version_id: Its model version id.
        version: Its version number.
        threshold: Its current probability threshold (a manager may have moved it).
        detector_version_id: The detector version it was trained on.
        scorer: The loaded model (``scorer.predict_proba(scores, vectors)``).
    """

    version_id: int
    version: int
    threshold: float | None
    detector_version_id: int | None
    scorer: FeedbackScorer


def active_scorer(session: Session, project_id: int) -> ActiveScorer | None:
    """The project's active scorer, if there is one that fits the active detector.

    A scorer fits when it was trained on the active detector or an instant-update ancestor
    of it (same scores and vectors); after a refit or a detector rollback it does not, and
    ``None`` is returned (logged) until a scorer is trained on the new detector.

    Raises:
        ModelFileError: The active scorer's files are missing or tampered with.
    """
    version = active_version(session, project_id, ModelFamily.SCORER)
    if version is None:
        return None
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    trained_on = scorer_detector_id(version)
    if detector is None or trained_on not in detector_lineage(detector):
        logger.info(
            "Scorer v%s of project %s was trained on detector id %s, not the active one: unused",
            version.version,
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
    )


def scorer_detector_id(version: ModelVersion) -> int | None:
    """The detector version id a scorer version was trained on (from its metrics)."""
    return ((version.metrics or {}).get(SCORER_DETECTOR_KEY) or {}).get("version_id")


def load_scorer(artifact_path: str) -> FeedbackScorer:
    """Load a saved scorer, once per folder and file time (verified on first load)."""
    config = Path(artifact_path) / "config.json"
    stamp = config.stat().st_mtime_ns if config.is_file() else 0
    return _cached_scorer(str(artifact_path), stamp)


@lru_cache(maxsize=16)
def _cached_scorer(artifact_path: str, _stamp: int) -> FeedbackScorer:
    return FeedbackScorer.load(artifact_path)


def no_vectors_reason(detector: ModelVersion) -> str | None:
    """Why a detector version cannot feed a scorer (its kind stores no vectors), or ``None``."""
    if detector.kind in DETECTORS_WITHOUT_VECTORS:
        return (
            f"The active detector (v{detector.version}, {detector.kind}) gives no per-image "
            "vectors, which the feedback scorer learns from: use PatchCore or CLIP."
        )
    return None
