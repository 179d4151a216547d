"""Instant learning: what happens after an inspector confirms a flagged part is Good.

The rule (:func:`learns_instantly`): a Good label on a part the model flagged is a false alarm,
and the model learns from it at once, unless ``LOUPE_INSTANT_LEARNING=0`` or the part belongs
to the stable share of good parts kept aside to measure false alarms
(:func:`adcore.holdout.in_evaluation_share`, one good part in five): a model that had learned
every flagged good part would score none of the held-out ones as false alarms, and every
later candidate would be judged against that flattering, biased figure. The Review and
Inspect pages start :func:`learn_from_good_review` in a background thread after such a click;
it never raises for an expected refusal but returns a result with a message:

1. :func:`services.instant_update.learn_from_confirmed_good` adds the part to the active model
   without retraining, as a new active version (the parent stays, for a rollback).
2. The project's unreviewed parts that the previous version scored are re-scored by the new
   one, so that similar parts leave the review queue at once.

Updates run one at a time per process. Goods confirmed while an update runs wait, and the next
update takes all of an inspector's waiting parts at once (:func:`learn_from_good_review`): an
inspector pressing G four times a second gets a few updates, not one new model version and one
re-scoring of the queue per press, which would keep the CPU busy long after the burst.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.detectors.base import Progress, report, scaled_progress
from adcore.detectors.registry import load_detector
from adcore.errors import LoupeError
from db import Label, ModelVersion, User, Verdict, current_label
from db.instant_updates import InstantUpdateConflict
from db.permissions import PermissionDenied
from db.predictions import pending_images
from services.inspection import rescore_images
from services.instant_update import InstantUpdateResult, learn_from_confirmed_good

INSTANT_LEARNING_ENV = "LOUPE_INSTANT_LEARNING"
"""Set to ``0`` to turn instant learning off."""


def learns_instantly(label: str, flagged: bool) -> bool:
    """Whether a review teaches the active model at once: a Good on a part it flagged.

    Args:
        label: The label just recorded (``good`` / ``defect``).
        flagged: Whether the model had flagged the part (verdict ``defect``).

    Returns:
        False when ``$LOUPE_INSTANT_LEARNING`` is ``0``.
    """
    if os.environ.get(INSTANT_LEARNING_ENV, "1") == "0":
        return False
    return flagged and label == Label.GOOD


#: At most this many pending parts are re-scored after an update (newest first).
DEFAULT_RESCORE_LIMIT = 500

#: One update at a time per process: quick Good clicks queue up instead of racing each other
#: for the active version (and for the CPU).
_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True)
class FeedbackResult:
    """The instant update and the re-scoring that followed it.

    Attributes:
        update: What the instant update did.
        n_rescored: Pending parts scored again by the new version.
        n_cleared: Of those, parts flagged before and passed now.
        n_failed: Parts that could not be re-scored (file gone, unreadable).
    """

    update: InstantUpdateResult
    n_rescored: int = 0
    n_cleared: int = 0
    n_failed: int = 0

    @property
    def message(self) -> str:
        """One or two sentences for the inspector."""
        text = self.update.message
        if self.n_rescored:
            text += (
                f" Re-scored {self.n_rescored} waiting part(s) with the new version: "
                f"{self.n_cleared} no longer flagged."
            )
        return text


#: Guards the two dicts below (held briefly, never during an update).
_WAITING_LOCK = threading.Lock()
#: (project id, user id) -> Good-labelled parts waiting for the next update, oldest first.
_WAITING: dict[tuple[int, int], list[int]] = {}
#: image id -> the result of the update that learned it together with other parts; read (and
#: removed) by the call that asked for that image, which is waiting for the update lock.
_LEARNED_IN_BATCH: dict[int, FeedbackResult] = {}


def learn_from_good_review(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
    *,
    project_id: int,
    image_id: int,
    user_id: int,
    models_dir: str | Path,
    data_dir: Path | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    rescore_limit: int = DEFAULT_RESCORE_LIMIT,
) -> FeedbackResult:
    """Learn from a part an inspector just labelled Good, then re-score the waiting parts.

    Calls for the same project and inspector that arrive while another update runs are
    merged: the first of them to get its turn learns every waiting part in one update, and
    the others return that update's result.

    Args:
        Session: The application's session factory.
        project_id: The project.
        image_id: The part (its current review must be Good).
        user_id: The inspector who labelled it.
        models_dir: Models root for the new version's files.
        data_dir: The data directory; default :func:`db.data_dir`.
        device: Torch device; default CUDA when available.
        progress: Optional ``progress(fraction, message)`` callback.
        rescore_limit: At most this many pending parts are re-scored.

    Returns:
        A :class:`FeedbackResult`; refusals (no PatchCore, no Good label, a lost race, missing
        model files, no permission) come back as an un-updated result with the reason.
    """
    tell = report(progress)
    key = (project_id, user_id)
    with _WAITING_LOCK:
        _WAITING.setdefault(key, []).append(image_id)
    tell(0.0, "Waiting for the previous update" if _ONE_AT_A_TIME.locked() else "Starting")
    with _ONE_AT_A_TIME:
        with _WAITING_LOCK:
            batch = list(dict.fromkeys(_WAITING.pop(key, [])))
            learned_earlier = _LEARNED_IN_BATCH.pop(image_id, None)
        if not batch:  # an earlier call took this part into its update
            if learned_earlier is not None:
                tell(1.0, learned_earlier.message)
                return learned_earlier
            return FeedbackResult(
                InstantUpdateResult(
                    True, False, "Already learned by an earlier update.", (image_id,)
                )
            )
        result = _learn_and_rescore(
            Session,
            project_id=project_id,
            image_ids=batch,
            user_id=user_id,
            models_dir=models_dir,
            data_dir=data_dir,
            device=device,
            tell=tell,
            rescore_limit=rescore_limit,
        )
        with _WAITING_LOCK:
            for other in batch:
                if other != image_id:
                    _LEARNED_IN_BATCH[other] = result
        return result


def waiting_parts(project_id: int, user_id: int) -> tuple[int, ...]:
    """The parts of an inspector's waiting for the next update (oldest first)."""
    with _WAITING_LOCK:
        return tuple(_WAITING.get((project_id, user_id), ()))


def still_good(Session: sessionmaker[OrmSession], image_ids: list[int]) -> list[int]:  # noqa: N803
    """The parts of ``image_ids`` whose current label is still Good (an Undo may have come)."""
    with Session() as session:
        labels = {image_id: current_label(session, image_id) for image_id in image_ids}
    return [i for i, review in labels.items() if review is not None and review.label == Label.GOOD]


def _learn_and_rescore(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    image_ids: list[int],
    user_id: int,
    models_dir: str | Path,
    data_dir: Path | None,
    device: str | None,
    tell: Progress,
    rescore_limit: int,
) -> FeedbackResult:
    confirmed = still_good(Session, image_ids)
    if not confirmed:
        return FeedbackResult(
            InstantUpdateResult(
                True, False, "Not learned: the part has no current Good label.", tuple(image_ids)
            )
        )
    tell(0.0, f"Adding {len(confirmed)} part(s) to the model's memory")
    with Session() as session:
        user = session.get(User, user_id)
        if user is not None:
            session.expunge(user)
    try:
        update = learn_from_confirmed_good(
            Session,
            project_id=project_id,
            image_ids=confirmed,
            user=user,
            models_dir=models_dir,
            data_dir=data_dir,
            device=device,
        )
    except (PermissionDenied, LookupError, ValueError, InstantUpdateConflict, LoupeError) as err:
        return FeedbackResult(
            InstantUpdateResult(True, False, f"Not learned: {err}", tuple(confirmed))
        )
    if not update.updated or update.version_id is None:
        tell(1.0, update.message)
        return FeedbackResult(update)
    with Session() as session:
        pending = pending_images(session, project_id, update.parent_version_id, rescore_limit)
        artifact = session.get(ModelVersion, update.version_id).artifact_path
    if not pending:
        tell(1.0, update.message)
        return FeedbackResult(update)
    tell(0.5, f"Re-scoring {len(pending)} waiting part(s)")
    detector = load_detector(artifact, device=device)
    results = rescore_images(
        Session,
        project_id=project_id,
        detector=detector,
        model_version_id=update.version_id,
        image_ids=[image for image, _ in pending],
        progress=scaled_progress(tell, 0.5, 1.0),
        data_dir=data_dir,
    )
    was_flagged = dict(pending)
    cleared = sum(
        1 for r in results if r.ok and was_flagged.get(r.image_id) and r.verdict == Verdict.GOOD
    )
    return FeedbackResult(
        update,
        n_rescored=sum(r.ok for r in results),
        n_cleared=cleared,
        n_failed=sum(not r.ok for r in results),
    )
