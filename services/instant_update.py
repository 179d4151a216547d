"""The instant update: confirmed-good parts join the active model's memory bank, as a new version.

:func:`learn_from_confirmed_good` adds inspector-confirmed good parts to the active model
without retraining: the active PatchCore version is loaded, its memory bank grows with the
parts' patches (:meth:`PatchCore.update` adds only the patches the bank does not already
cover), and the copy is saved atomically and registered, in one transaction, as the project's
new *active* version with the parent's threshold (:func:`db.instant_updates.record_instant_update`).
The parent is retired, so a rollback can go back to it. If the save or the write fails, the new
directory is removed and the parent stays active; if another change made a different version
active meanwhile, the update is redone on that one (up to ``max_retries`` times). Detector
kinds without an instant update (the autoencoder) get ``supported=False``.

Parts of the stable share of good parts kept aside to measure false alarms
(:func:`adcore.holdout.in_evaluation_share`) are never learned: see
:mod:`services.review_learning` for why. When to call this is :mod:`services.review_learning`'s
rule; the ``instant_update`` job (:mod:`services.training.instant_learning`) calls it, one
update at a time per project, and re-scores the waiting parts after it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.detectors.base import load_many
from adcore.detectors.patchcore import PatchCore
from adcore.errors import DatasetError
from adcore.holdout import in_evaluation_share
from db import Image, Label, Project, User, absolute_image_path
from db.instant_updates import REVIEW_MESSAGE, InstantUpdateConflict, record_instant_update
from db.labels import current_label
from db.model_lineages import label_of
from db.model_versions import next_version_number
from db.permissions import CAN_REVIEW, require_session_role
from services.model_management import free_version_directory, project_slug

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
            version_id, number, label = version.id, version.version, label_of(version)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    passing = detector.threshold is None or all(s < detector.threshold for s in after)
    message = f"{label} learned {len(new)} part(s) ({added} new patches); " + (
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
