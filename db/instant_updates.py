"""Recording an instant model update: a reviewed Good part joins the active model's memory.

When an inspector marks a flagged part Good, :mod:`services.instant_update` adds the part to a
copy of the active one-class model and saves it; :func:`record_instant_update` then records that
copy as the project's next version and makes it active, in the caller's transaction:

* the acting user must be allowed to review (inspector, manager or admin): this is part of
  labelling, so it does not need the manager role that training and activation need;
* every cited review must be the current Good label of an image of the project, and the added
  image hashes must be exactly those images;
* the project's write lock (:func:`db.project_lock.locked_project`) is taken first and the parent
  must still be the active version: when another change won the race the update is refused
  with :class:`InstantUpdateConflict`, so the caller can redo it on the new active version;
* the parent is retired (rollback can go back to it), the new version keeps the parent's
  threshold, its training snapshot is the parent's plus the added images (label good), and its
  metrics are the parent's plus an ``instant_updates`` entry: so it is the next revision of the
  parent's model (``v2.14`` after ``v2.13``, :mod:`db.model_lineages`), not a new model.

Instant learning runs as a job (:mod:`services.training.instant_learning`); two more pieces
of storage serve it:

* :func:`queue_for_learning`: a confirmed Good joins the project's *waiting* (queued)
  instant-update job, or queues one. At most one such job waits per project, so Goods
  confirmed while an update runs are learned together by the next one, and each Good is in
  one job only.
* :func:`learning_turn`: one instant update at a time per project, across processes and
  hosts, without holding a write lock meanwhile: on PostgreSQL a session-level advisory lock
  (``pg_advisory_lock``) on a connection of its own; on SQLite (one host by construction) an
  exclusive ``flock`` on a file beside the database file, the mechanism SQLite uses for its
  own locks. Taking SQLite's database write lock (``BEGIN IMMEDIATE``) for the update's
  seconds would stop every other writer (reviews, station verdicts, the job's own progress)
  for as long. Both locks die with their process, so a killed worker never leaves a project
  locked.

None of these functions commits, and nothing here imports torch.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.base import JobStatus, Label, ModelStatus, utcnow
from db.errors import StorageError
from db.jobs import enqueue_automatic_job
from db.labels import current_label
from db.model_lineages import label_of
from db.model_metrics import (
    InstantUpdate,
    StatusChange,
    instant_update_metrics,
    record_status_change,
)
from db.model_versions import next_version_number, register_model_version
from db.models import Image, Job, ModelVersion, Review, User
from db.permissions import CAN_REVIEW, require_session_role
from db.project_lock import locked_project

REVIEW_MESSAGE = "Only inspectors, managers and admins can teach the model from a review."


class InstantUpdateConflict(StorageError):  # noqa: N818 - a refusal, named like PermissionDenied
    """The parent version is no longer the project's active version (or its number is taken).

    Attributes:
        active_version_id: The project's active version when the update was refused, or None.
    """

    def __init__(self, message: str, *, active_version_id: int | None) -> None:
        super().__init__(message)
        self.active_version_id = active_version_id


def record_instant_update(
    session: Session,
    *,
    parent_version_id: int,
    artifact_path: str,
    added_sha256: str | Sequence[str],
    review_id: int | Sequence[int],
    user: User,
    training_hash: str | None = None,
    details: Mapping[str, Any] | None = None,
    version: int | None = None,
) -> ModelVersion:
    """Register an updated copy of the active model as the project's new active version.

    Args:
        session: The caller's session (the caller owns the transaction).
        parent_version_id: The version the update started from; must still be active.
        artifact_path: The saved model directory of the updated copy.
        added_sha256: The sha256 of every image added to the memory bank.
        review_id: The Good review (one per image) that confirmed each added image.
        user: The acting user (inspector, manager or admin).
        training_hash: The updated model's training-set hash (stored in the snapshot).
        details: JSON-serialisable facts about the update (bank sizes, patches added, scores),
            stored in the ``instant_updates`` entry.
        version: The version number to use (e.g. the one in the artifact's directory name);
            default the next free number.

    Returns:
        The new version, status ``active`` (flushed).

    Raises:
        PermissionDenied: If the user may not review.
        LookupError: If the parent version or a review does not exist.
        ValueError: If a review is not the current Good label of one of the added images of
            the parent's project, or the hashes and reviews do not match one to one.
        InstantUpdateConflict: If the parent is no longer active, or ``version`` is taken.
    """
    actor = require_session_role(session, user, *CAN_REVIEW, message=REVIEW_MESSAGE)
    hashes = [added_sha256] if isinstance(added_sha256, str) else list(added_sha256)
    review_ids = [review_id] if isinstance(review_id, int) else [int(r) for r in review_id]
    if not review_ids or len(set(hashes)) != len(hashes) or len(hashes) != len(review_ids):
        raise ValueError("Give one Good review per added image (and each image once).")
    parent = session.get(ModelVersion, parent_version_id)
    if parent is None:
        raise LookupError(f"There is no model version with id {parent_version_id}.")
    project = locked_project(session, parent.project_id)
    session.refresh(parent)  # the lock is held: read the latest status, metrics and snapshot
    if project.active_model_version_id != parent.id or parent.status != ModelStatus.ACTIVE:
        raise InstantUpdateConflict(
            f"Version {label_of(parent)} is no longer the active model of the project; "
            "redo the update on the active version.",
            active_version_id=project.active_model_version_id,
        )
    cited = [_good_review(session, rid, project.id) for rid in review_ids]
    if sorted(image.sha256 for _, image in cited) != sorted(hashes):
        raise ValueError("The added images are not the images of the cited Good reviews.")
    if version is not None and _version_taken(session, project.id, int(version)):
        raise InstantUpdateConflict(
            f"Version number {version} was taken meanwhile; redo the update.",
            active_version_id=project.active_model_version_id,
        )
    number = next_version_number(session, project.id) if version is None else int(version)
    note = _note(review_ids, actor)
    update = InstantUpdate(
        at=utcnow().isoformat(),
        by=actor.name,
        by_id=actor.id,
        review_ids=tuple(review_ids),
        image_ids=tuple(image.id for _, image in cited),
        image_sha256=tuple(image.sha256 for _, image in cited),
        parent_version=parent.version,
        parent_version_id=parent.id,
        details=dict(details or {}),
    )
    metrics = instant_update_metrics(parent, update)
    snapshot = dict(parent.training_snapshot or {})
    snapshot["images"] = [
        *snapshot.get("images", []),
        *(
            {"sha256": image.sha256, "label": Label.GOOD.value, "review_id": review.id}
            for review, image in cited
        ),
    ]
    if training_hash is not None:
        snapshot["training_hash"] = training_hash
    child = register_model_version(
        session,
        project_id=project.id,
        kind=parent.kind,
        artifact_path=str(artifact_path),
        metrics=metrics,
        threshold=parent.threshold,
        training_snapshot=snapshot,
        created_by=actor,
        notes=f"Instant update of {label_of(parent)}: {note}.",
        version=number,
    )
    _set_status(parent, ModelStatus.RETIRED, actor, note)
    _set_status(child, ModelStatus.ACTIVE, actor, note)
    project.active_model_version = child
    session.flush()
    return child


def _good_review(session: Session, review_id: int, project_id: int) -> tuple[Review, Image]:
    """The review and its image, if the review is the image's current Good label."""
    review = session.get(Review, review_id)
    if review is None:
        raise LookupError(f"There is no review with id {review_id}.")
    image = session.get(Image, review.image_id)
    if image is None or image.project_id != project_id:
        raise ValueError(f"Review #{review_id} is about an image of another project.")
    if review.is_undo or review.label != Label.GOOD:
        raise ValueError(f"Review #{review_id} is not a Good label: only Good parts are learned.")
    current = current_label(session, image.id)
    if current is None or current.id != review.id:
        raise ValueError(
            f"Review #{review_id} is no longer the current label of image {image.id} "
            "(undone or relabelled)."
        )
    return review, image


def _version_taken(session: Session, project_id: int, number: int) -> bool:
    return (
        session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.project_id == project_id, ModelVersion.version == number
            )
        )
        is not None
    )


def _note(review_ids: Sequence[int], actor: User) -> str:
    reviews = ", ".join(f"#{rid}" for rid in review_ids)
    return f"instant update from review {reviews} by {actor.name}"


def _set_status(model_version: ModelVersion, status: ModelStatus, actor: User, note: str) -> None:
    """Change the status and append to the status history (same shape as db.model_versions)."""
    entry = StatusChange(at=utcnow().isoformat(), status=status.value, by=actor.name, note=note)
    record_status_change(model_version, entry)
    model_version.status = status.value


# --------------------------------------------------------------------------- the learning queue


def queue_for_learning(
    session: Session, *, kind: str, project_id: int, image_id: int, user: User
) -> Job:
    """Put a confirmed-good part into the project's waiting instant-update job, or queue one.

    The project's write lock (:func:`db.project_lock.locked_project`) is taken first, so two
    reviews never both queue a job; the waiting job's row is then locked and changed only
    while it is still queued. A worker that claims it at the same moment either wins (the
    row is no longer queued: a new job is queued for this part) or takes it after this
    transaction, with this part in it (PostgreSQL's claim skips a locked row; on SQLite the
    database lock orders the two).

    Args:
        session: The caller's session (the caller commits).
        kind: The instant-update job kind (``services.training.job_kinds.JobKind``).
        project_id: The project.
        image_id: The part just labelled Good.
        user: The reviewer (inspector, manager or admin); the update is made in their name.

    Returns:
        The waiting job (flushed), with ``parameters["image_ids"]`` holding the part once.

    Raises:
        PermissionDenied: If the user may not review.
        LookupError: If the project does not exist.
    """
    reviewer = require_session_role(session, user, *CAN_REVIEW, message=REVIEW_MESSAGE)
    locked_project(session, project_id)
    waiting = session.scalar(
        select(Job)
        .where(
            Job.project_id == project_id,
            Job.kind == kind,
            Job.status == JobStatus.QUEUED.value,
        )
        .order_by(Job.id)
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if waiting is None:
        return enqueue_automatic_job(
            session,
            kind=kind,
            parameters={"image_ids": [int(image_id)], "user_id": reviewer.id},
            project_id=project_id,
        )
    parameters = dict(waiting.parameters or {})
    image_ids = [int(i) for i in parameters.get("image_ids") or []]
    if int(image_id) not in image_ids:
        image_ids.append(int(image_id))
    # A new dict: JSON columns do not track in-place edits. The last reviewer acts.
    waiting.parameters = {**parameters, "image_ids": image_ids, "user_id": reviewer.id}
    session.flush()
    return waiting


#: The first key of PostgreSQL's two-key advisory locks taken by :func:`learning_turn` (the
#: project id is the second): "LOUP" in ASCII, so other users of advisory locks can avoid it.
ADVISORY_LOCK_SPACE = 0x4C4F5550


def _no_check() -> None:
    return None


@contextmanager
def learning_turn(
    factory: sessionmaker[Session],
    project_id: int,
    *,
    between_tries: Callable[[], None] = _no_check,
    poll_seconds: float = 0.2,
) -> Iterator[None]:
    """Hold the project's instant-learning turn: one instant update at a time per project.

    Waits until no other process (or thread) holds the project's turn; see the module's
    docstring for the locks used on each backend. Nothing else is blocked meanwhile.

    Args:
        factory: The application's session factory (its engine is used).
        project_id: The project.
        between_tries: Called between two tries while another holds the turn, e.g. a job's
            ``raise_if_cancelled``: what it raises leaves without the turn.
        poll_seconds: Seconds between two tries.

    Yields:
        Nothing; the turn is held inside the ``with`` block and released on leaving it.

    Raises:
        ValueError: On an in-memory SQLite database (no file to lock, no worker to share it).
    """
    with factory() as session:
        engine = session.get_bind()
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, project_id, between_tries, poll_seconds):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ValueError("Instant learning needs a database that worker processes share.")
    path = Path(database).expanduser()
    lock_file = path.with_name(f"{path.name}.instant-update-{int(project_id)}.lock")
    with lock_file.open("a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                between_tries()
                time.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(
    engine: Engine, project_id: int, between_tries: Callable[[], None], poll_seconds: float
) -> Iterator[None]:
    """A session-level advisory lock on a connection of its own (autocommit: no transaction)."""
    keys = {"space": ADVISORY_LOCK_SPACE, "project": int(project_id)}
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        while not connection.scalar(text("SELECT pg_try_advisory_lock(:space, :project)"), keys):
            between_tries()
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:space, :project)"), keys)
            except Exception:  # noqa: BLE001 - a broken connection: the lock went with it
                connection.invalidate()
