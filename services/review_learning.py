"""What happens after an inspector confirms a flagged part is good.

:func:`learn_from_good_review` runs the instant update (:mod:`services.instant_learning`: the
part's patches join the active PatchCore's memory bank as a new active version) and then
re-scores the project's unreviewed parts that the previous version had scored, so that similar
parts leave the review queue at once. It is meant for a background thread of the workbench
(the Review and Inspect pages start it after a Good click on a flagged part); it never raises
for an expected refusal but returns a result with a message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.detectors.base import Progress, report, scaled_progress
from adcore.detectors.registry import load_detector
from adcore.errors import LoupeError
from db import Image, ModelVersion, Prediction, User, Verdict
from db.instant_updates import InstantUpdateConflict
from db.permissions import PermissionDenied
from services.inspection import rescore_images
from services.instant_learning import InstantUpdateResult, learn_from_confirmed_good

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


def pending_images(
    session: OrmSession, project_id: int, model_version_id: int, limit: int
) -> list[tuple[int, bool]]:
    """Unreviewed images of the project that a version scored, newest first.

    Returns:
        ``(image id, flagged by that version)`` pairs, at most ``limit``.
    """
    rows = session.execute(
        select(Image.id, Prediction.verdict)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(
            Image.project_id == project_id,
            Prediction.model_version_id == model_version_id,
            Image.current_review_id.is_(None),
        )
        .order_by(Image.id.desc(), Prediction.id.desc())
    ).all()
    flagged: dict[int, bool] = {}
    for image_id, verdict in rows:  # the latest prediction of each image comes first
        flagged.setdefault(image_id, verdict == Verdict.DEFECT)
    return list(flagged.items())[:limit]


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
    tell(0.0, "Waiting for the previous update" if _ONE_AT_A_TIME.locked() else "Starting")
    with _ONE_AT_A_TIME:
        return _learn_and_rescore(
            Session,
            project_id=project_id,
            image_id=image_id,
            user_id=user_id,
            models_dir=models_dir,
            data_dir=data_dir,
            device=device,
            tell=tell,
            rescore_limit=rescore_limit,
        )


def _learn_and_rescore(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    image_id: int,
    user_id: int,
    models_dir: str | Path,
    data_dir: Path | None,
    device: str | None,
    tell: Progress,
    rescore_limit: int,
) -> FeedbackResult:
    tell(0.0, "Adding the part to the model's memory")
    with Session() as session:
        user = session.get(User, user_id)
        if user is not None:
            session.expunge(user)
    try:
        update = learn_from_confirmed_good(
            Session,
            project_id=project_id,
            image_ids=image_id,
            user=user,
            models_dir=models_dir,
            data_dir=data_dir,
            device=device,
        )
    except (PermissionDenied, LookupError, ValueError, InstantUpdateConflict, LoupeError) as err:
        return FeedbackResult(InstantUpdateResult(True, False, f"Not learned: {err}", (image_id,)))
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
