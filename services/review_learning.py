"""Instant learning: what happens after an inspector confirms a flagged part is Good.

The rule (:func:`learns_instantly`): a Good label on a part the model flagged is a false alarm,
and the model learns from it at once, unless ``LOUPE_INSTANT_LEARNING=0`` or the part belongs
to the stable share of good parts kept aside to measure false alarms
(:func:`adcore.holdout.in_evaluation_share`, one good part in five): a model that had learned
every flagged good part would score none of the held-out ones as false alarms, and every
later candidate would be judged against that flattering, biased figure. The Review and
Inspect pages start :func:`learn_from_good_review` in a background thread after such a click;
it never raises for an expected refusal but returns a result with a message:

1. :func:`learn_from_confirmed_good` adds the part to the active model without retraining:
   the active PatchCore version is loaded, its memory bank grows with the part's patches
   (:meth:`PatchCore.update` adds only the patches the bank does not already cover), and the
   copy is saved atomically and registered, in one transaction, as the project's new *active*
   version with the parent's threshold (:func:`db.instant_updates.record_instant_update`). The
   parent is retired, so a rollback can go back to it. If the save or the write fails, the new
   directory is removed and the parent stays active; if another change made a different
   version active meanwhile, the update is redone on that one (up to ``max_retries`` times).
   Detector kinds without an instant update (the autoencoder) get ``supported=False``.
2. The project's unreviewed parts that the previous version scored are re-scored by the new
   one, so that similar parts leave the review queue at once.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.detectors.base import Progress, load_many, report, scaled_progress
from adcore.detectors.patchcore import PatchCore
from adcore.detectors.registry import load_detector
from adcore.errors import DatasetError, LoupeError
from adcore.holdout import in_evaluation_share
from db import Image, Label, ModelVersion, Project, User, Verdict, absolute_image_path
from db.instant_updates import REVIEW_MESSAGE, InstantUpdateConflict, record_instant_update
from db.labels import current_label
from db.model_versions import next_version_number
from db.permissions import CAN_REVIEW, PermissionDenied, require_session_role
from db.predictions import pending_images
from services.inspection import rescore_images
from services.model_management import free_version_directory, project_slug

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


SUPPORTED_KINDS = ("patchcore",)
KEPT_FOR_EVALUATION = (
    "Not learned: this part is one of the good parts kept aside (one in five, chosen by its "
    "content) to measure false alarms honestly; retraining and the threshold checks use it."
)
SessionSource = sessionmaker[OrmSession] | OrmSession | Callable[[], OrmSession]


@dataclass(frozen=True)
class InstantUpdateResult:
    """What an instant update did.

    Attributes:
        supported: False when the active model cannot learn instantly (not PatchCore, or no
            active model); nothing was changed then.
        updated: True when a new version was registered and activated.
        message: One sentence for the inspector.
        image_ids: The confirmed-good images, in input order.
        parent_version_id: The version the update started from (None without an active model).
        parent_version: Its number.
        version_id: The new active version's id (the parent's when nothing was added).
        version: Its number.
        artifact_path: The new model directory (None when nothing was saved).
        bank_size_before: Memory-bank rows before the update.
        bank_size_after: Memory-bank rows after it.
        patches_added: Rows added (``bank_size_after - bank_size_before``).
        threshold: The decision threshold (the parent's, kept by the new version).
        scores_before: (N,) scores of the images under the parent model.
        scores: (N,) scores of the images under the new model.
        seconds: Wall time of the whole update.
    """

    supported: bool
    updated: bool
    message: str
    image_ids: tuple[int, ...] = ()
    parent_version_id: int | None = None
    parent_version: int | None = None
    version_id: int | None = None
    version: int | None = None
    artifact_path: str | None = None
    bank_size_before: int | None = None
    bank_size_after: int | None = None
    patches_added: int = 0
    threshold: float | None = None
    scores_before: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()
    seconds: float = 0.0

    @property
    def below_threshold(self) -> tuple[bool, ...]:
        """Per image: would the new model pass it (``score < threshold``)?"""
        if self.threshold is None:
            return ()
        return tuple(score < self.threshold for score in self.scores)

    @property
    def now_below_threshold(self) -> bool | None:
        """Whether every confirmed image now passes; None without scores or threshold."""
        flags = self.below_threshold
        return all(flags) if flags else None

    @property
    def new_score(self) -> float | None:
        """The first image's new score (the usual single-image case)."""
        return self.scores[0] if self.scores else None


@dataclass(frozen=True)
class _Confirmed:
    image_id: int
    review_id: int
    sha256: str
    path: Path


@dataclass(frozen=True)
class _Parent:
    id: int
    version: int
    kind: str
    artifact_path: str
    threshold: float | None
    training_hash: str | None
    project_dir: Path
    next_number: int


def learn_from_confirmed_good(
    sessions: SessionSource,
    *,
    project_id: int,
    image_ids: int | Sequence[int],
    user: User,
    models_dir: str | Path = Path("models"),
    data_dir: Path | None = None,
    device: str | None = None,
    max_retries: int = 2,
) -> InstantUpdateResult:
    """Add inspector-confirmed good parts to the active model's memory bank, as a new version.

    Each image must already carry a current Good review (record the review first; this
    function cites it). Roles are checked before any heavy work and again in the write.

    Args:
        sessions: The application's session factory (preferred), or one session. A session
            with no open transaction gets one short transaction per step; inside an open one
            the write uses a SAVEPOINT and the caller commits.
        project_id: The project.
        image_ids: The confirmed-good image(s) of the project.
        user: The acting inspector, manager or admin.
        models_dir: Models root: the copy goes to ``<models_dir>/<project slug>/v<n>/``.
        data_dir: The data directory holding the stored images; default :func:`db.data_dir`.
        device: Torch device; default CUDA when available.
        max_retries: How often to redo the update when another version became active meanwhile.

    Returns:
        An :class:`InstantUpdateResult`. About 1 to 3 s on a CPU for one 256 px image, most of
        it loading the backbone and scoring.

    Raises:
        PermissionDenied: If the user may not review.
        LookupError: If the project or an image does not exist.
        ValueError: If an image is in another project or has no current Good label.
        InstantUpdateConflict: If other changes kept winning the race after ``max_retries``.
        ModelFileError: If the active model's files are missing or fail verification.
    """
    start = time.perf_counter()
    ids = (image_ids,) if isinstance(image_ids, int) else tuple(int(i) for i in image_ids)
    if not ids or len(set(ids)) != len(ids):
        raise ValueError("Give at least one image id, each once.")
    for attempt in range(max_retries + 1):
        with _transaction(sessions) as session:
            read = _read(session, project_id, ids, user, Path(models_dir), data_dir)
        if isinstance(read, str):
            return InstantUpdateResult(False, False, read, ids, seconds=_since(start))
        parent, confirmed = read
        if all(in_evaluation_share(item.sha256) for item in confirmed):
            return InstantUpdateResult(
                True,
                False,
                KEPT_FOR_EVALUATION,
                ids,
                parent_version_id=parent.id,
                parent_version=parent.version,
                version_id=parent.id,
                version=parent.version,
                threshold=parent.threshold,
                seconds=_since(start),
            )
        try:
            return _update(sessions, parent, confirmed, user, device, start)
        except InstantUpdateConflict:
            if attempt == max_retries:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _read(
    session: OrmSession,
    project_id: int,
    ids: tuple[int, ...],
    user: User,
    models_dir: Path,
    data_dir: Path | None,
) -> tuple[_Parent, list[_Confirmed]] | str:
    """The active version and the confirmed images, or why there is nothing to do."""
    require_session_role(session, user, *CAN_REVIEW, message=REVIEW_MESSAGE)
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"There is no project with id {project_id}.")
    confirmed = []
    for image_id in ids:
        image = session.get(Image, image_id)
        if image is None or image.project_id != project_id:
            raise LookupError(f"Project {project_id} has no image with id {image_id}.")
        review = current_label(session, image_id)
        if review is None or review.label != Label.GOOD:
            raise ValueError(f"Image {image_id} has no current Good label: record it first.")
        path = absolute_image_path(image.stored_path, data_dir)
        confirmed.append(_Confirmed(image_id, review.id, image.sha256, path))
    active = project.active_model_version
    if active is None:
        return "The project has no active model yet: nothing to teach."
    if active.kind not in SUPPORTED_KINDS:
        return (
            f"The active model ({active.kind}) cannot learn instantly; the part will be used "
            "at the next retraining."
        )
    parent = _Parent(
        id=active.id,
        version=active.version,
        kind=active.kind,
        artifact_path=active.artifact_path,
        threshold=active.threshold,
        training_hash=(active.training_snapshot or {}).get("training_hash"),
        project_dir=models_dir / project_slug(project.name),
        next_number=next_version_number(session, project_id),
    )
    return parent, confirmed


def _update(
    sessions: SessionSource,
    parent: _Parent,
    confirmed: list[_Confirmed],
    user: User,
    device: str | None,
    start: float,
) -> InstantUpdateResult:
    """Load, update, save and register; the saved directory is removed on any failure."""
    detector = PatchCore.load(
        parent.artifact_path, device=device, expected_training_hash=parent.training_hash
    )
    if parent.threshold is not None:
        detector.with_threshold(parent.threshold)
    loaded, skipped = load_many([item.path for item in confirmed])
    if skipped:
        raise DatasetError(f"Cannot read stored image {skipped[0][0]}: {skipped[0][1]}")
    pixels = [image.pixels for image in loaded]
    before = tuple(p.score for p in detector.predict(pixels))
    bank_before = int(detector.model.memory_bank.shape[0])
    known = set(detector.training_digests)
    new = [
        (item, px)
        for item, px in zip(confirmed, pixels, strict=True)
        if item.sha256 not in known and not in_evaluation_share(item.sha256)
    ]
    ids = tuple(item.image_id for item in confirmed)
    common: dict[str, Any] = {
        "image_ids": ids,
        "parent_version_id": parent.id,
        "parent_version": parent.version,
        "bank_size_before": bank_before,
        "threshold": detector.threshold,
        "scores_before": before,
    }
    if not new:
        return InstantUpdateResult(
            True,
            False,
            "The model has already learned these parts: no new version.",
            version_id=parent.id,
            version=parent.version,
            bank_size_after=bank_before,
            scores=before,
            seconds=_since(start),
            **common,
        )
    added = detector.update([px for _, px in new], digests=[item.sha256 for item, _ in new])
    after = tuple(p.score for p in detector.predict(pixels))
    bank_after = int(detector.model.memory_bank.shape[0])
    directory = free_version_directory(parent.project_dir, parent.next_number)
    details = {
        "bank_size_before": bank_before,
        "bank_size_after": bank_after,
        "patches_added": added,
        "scores_before": list(before),
        "scores_after": list(after),
        "threshold": detector.threshold,
    }
    try:
        detector.save(directory, extra={"parent_version": parent.version, "instant": details})
        with _transaction(sessions) as session:
            version = record_instant_update(
                session,
                parent_version_id=parent.id,
                artifact_path=directory.as_posix(),
                added_sha256=[item.sha256 for item, _ in new],
                review_id=[item.review_id for item, _ in new],
                user=user,
                training_hash=detector.training_hash,
                details=details,
                version=parent.next_number,
            )
            version_id, number = version.id, version.version
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    passing = detector.threshold is None or all(s < detector.threshold for s in after)
    message = f"Version {number} learned {len(new)} part(s) ({added} new patches); " + (
        "similar parts will now pass." if passing else "the part still scores above threshold."
    )
    return InstantUpdateResult(
        True,
        True,
        message,
        version_id=version_id,
        version=number,
        artifact_path=directory.as_posix(),
        bank_size_after=bank_after,
        patches_added=added,
        scores=after,
        seconds=_since(start),
        **common,
    )


@contextmanager
def _transaction(sessions: SessionSource) -> Iterator[OrmSession]:
    """One transaction: a new session from a factory, or the given session's (or a SAVEPOINT)."""
    if isinstance(sessions, OrmSession):
        scope = sessions.begin_nested() if sessions.in_transaction() else sessions.begin()
        with scope:
            yield sessions
        return
    with sessions() as session, session.begin():
        yield session


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


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
