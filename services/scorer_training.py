"""The feedback scorer in the app: when it trains by itself, and its option.

* **Automatic training** (:func:`maybe_queue_scorer_training`, called after every saved
  review): a ``train_feedback_scorer`` job is queued when at least ``every_n_reviews`` label
  reviews (default 25) were saved in the project since the last such job was queued, or at
  the **end of a review batch**: the project's review queue is empty after a review and the
  new reviews are at least :data:`BATCH_GROWTH` of the labelled parts the last training had
  (and at least :data:`MIN_BATCH_REVIEWS`). Early on, when every label counts, a short batch
  is enough; later the every-N rule takes over, so inspectors who keep the queue empty do not
  set off a training every few parts. Never while one is queued or running, never for a
  detector without per-image vectors, and never before the job itself could switch stage 2
  on: at least :data:`MIN_PER_CLASS` labelled flagged good parts and as many labelled flagged
  defects as the auto-accept budget needs (:func:`adcore.feedback_scorer.triage.min_defects`;
  :func:`triage_status` says how many more). The job is queued by the system (no user): it
  only makes a candidate, which a manager promotes.
* **The option** ``settings["scorer"] = {"every_n_reviews": int, "budget": float | None,
  "enabled": bool}`` per project (:func:`scorer_setting`, :func:`set_scorer_setting`; managers
  only). ``budget`` is the most of the flagged defects stage 2 may auto-accept (its 95% upper
  bound when the threshold is chosen, its out-of-fold share at the gate); ``None`` means
  the project's target FNR (:func:`triage_budget`). ``enabled`` false switches stage 2 off
  (no training is queued and no triage model decides, even an active one); default on.

The active scorer, which decides verdicts at inspection, is looked up by the scoring service
(:func:`services.scoring.feedback.active_scorer`), not here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from adcore.feedback_scorer import DETECTORS_WITHOUT_VECTORS, MIN_PER_CLASS
from adcore.feedback_scorer.triage import min_defects
from adcore.verdicts import is_flagged
from db.base import Label
from db.jobs import enqueue_automatic_job, has_pending_job, latest_job
from db.labels import reviews_after
from db.model_families import ModelFamily, active_version, detector_lineage
from db.model_lineages import label_of
from db.models import Job, ModelVersion, Project, User
from db.permissions import CAN_MANAGE_MODELS, CAN_REVIEW, require_session_role
from db.predictions import labelled_embeddings as labelled_flagged
from db.review_queue import queue_size
from services.project_settings import STAGE2_KEY, stage2_enabled
from services.training.job_kinds import JobKind

logger = logging.getLogger(__name__)

SCORER_KEY = STAGE2_KEY
DEFAULT_EVERY_N_REVIEWS = 25
MAX_EVERY_N_REVIEWS = 100_000
MIN_BATCH_REVIEWS = 5
"""Fewest new reviews for which the end of a review batch queues a training."""
BATCH_GROWTH = 0.2
"""At the end of a batch, new reviews must be this share of the last training's labelled parts."""
MIN_BUDGET = 0.001
MAX_BUDGET = 0.5
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
        budget: Most of the flagged defects stage 2 may auto-accept (95% upper bound);
            ``None``: the project's target FNR.
        enabled: Whether stage 2 may decide (and train by itself).
    """

    every_n_reviews: int = DEFAULT_EVERY_N_REVIEWS
    budget: float | None = None
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["scorer"]``."""
        return {
            "every_n_reviews": self.every_n_reviews,
            "budget": self.budget,
            "enabled": self.enabled,
        }


def scorer_setting(project: Project) -> ScorerSetting:
    """Return a project's scorer option (every 25 reviews, the target FNR as budget)."""
    stored = (project.settings or {}).get(SCORER_KEY) or {}
    value = stored.get("every_n_reviews", DEFAULT_EVERY_N_REVIEWS)
    try:
        every = max(0, int(value))
    except (TypeError, ValueError):
        every = DEFAULT_EVERY_N_REVIEWS
    budget = stored.get("budget")
    try:
        budget = None if budget is None else _checked_budget(budget)
    except (TypeError, ValueError):
        budget = None
    return ScorerSetting(every_n_reviews=every, budget=budget, enabled=stage2_enabled(project))


def triage_budget(project: Project) -> float:
    """The most of the flagged defects stage 2 may auto-accept (its 95% upper bound).

    The project's setting, else its target FNR (at least :data:`MIN_BUDGET`): stage 2 then adds
    at most the target's share of the flagged defects to what the screen misses.
    """
    stored = scorer_setting(project).budget
    if stored is not None:
        return stored
    return min(max(float(project.target_fnr), MIN_BUDGET), MAX_BUDGET)


def _checked_budget(value: Any) -> float:
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"The auto-accept budget must be a number, got {value!r}.")
    try:
        budget = float(value)
    except TypeError:
        raise ValueError(f"The auto-accept budget must be a number, got {value!r}.") from None
    if not MIN_BUDGET <= budget <= MAX_BUDGET:
        raise ValueError(
            f"The auto-accept budget must be between {MIN_BUDGET:.1%} and {MAX_BUDGET:.0%}, "
            f"got {value!r}."
        )
    return budget


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
    budget = None if setting.budget is None else _checked_budget(setting.budget)
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    stored = ScorerSetting(every, budget, bool(setting.enabled))
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
    if not scorer_setting(project).enabled:
        return None
    if has_pending_job(session, project_id, JobKind.TRAIN_FEEDBACK_SCORER):
        return None
    last = latest_job(session, project_id, JobKind.TRAIN_FEEDBACK_SCORER)
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
    status = triage_status(session, project_id)
    if status.defects_needed > 0 or status.n_goods < MIN_PER_CLASS:
        return None
    job = enqueue_automatic_job(
        session,
        kind=JobKind.TRAIN_FEEDBACK_SCORER,
        parameters={
            THROUGH_REVIEW_KEY: tally.newest_review_id,
            LABELLED_KEY: status.n_defects + status.n_goods,
            "trigger": trigger,
        },
        project_id=project_id,
    )
    logger.info("Queued job %s (%s) for project %s: %s", job.id, job.kind, project_id, trigger)
    return job


@dataclass(frozen=True)
class TriageStatus:
    """How far a project is from a triage model that could switch on.

    Attributes:
        budget: The auto-accept budget.
        n_defects: Labelled defects the screen flags now (with the detector's vector).
        n_goods: Labelled good parts the screen flags now (with the detector's vector).
        defects_needed: More labelled flagged defects before the budget's bound can be met.
    """

    budget: float
    n_defects: int
    n_goods: int
    defects_needed: int


def triage_status(session: Session, project_id: int) -> TriageStatus:
    """Count the labelled flagged parts a triage job would train on, and what is missing.

    Raises:
        LookupError: If the project does not exist.
    """
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    budget = triage_budget(project)
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    n_defects = n_goods = 0
    if detector is not None and detector.threshold is not None:
        for row in labelled_flagged(session, project_id, detector_lineage(detector)):
            if row.embedding is None or not is_flagged(row.score, float(detector.threshold)):
                continue
            if row.label == Label.DEFECT:
                n_defects += 1
            else:
                n_goods += 1
    needed = max(0, min_defects(budget) - n_defects)
    return TriageStatus(budget, n_defects, n_goods, needed)


def no_vectors_reason(detector: ModelVersion) -> str | None:
    """Why a detector version cannot feed a scorer (its kind stores no vectors), or ``None``."""
    if detector.kind in DETECTORS_WITHOUT_VECTORS:
        return (
            f"The active detector ({label_of(detector)}, {detector.kind}) gives no per-image "
            "vectors, which the feedback scorer learns from: use PatchCore or CLIP."
        )
    return None
