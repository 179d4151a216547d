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
  metrics are the parent's plus an ``instant_updates`` entry.

None of these functions commits, and nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.base import Label, ModelStatus, utcnow
from db.errors import StorageError
from db.labels import current_label
from db.model_metrics import INSTANT_UPDATE_COUNT_KEY, INSTANT_UPDATES_KEY, STATUS_HISTORY_KEY
from db.model_versions import next_version_number, register_model_version
from db.models import Image, ModelVersion, Review, User
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
            f"Version {parent.version} is no longer the active model of the project; "
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
    entry = {
        "at": utcnow().isoformat(),
        "by": actor.name,
        "by_id": actor.id,
        "review_ids": review_ids,
        "image_ids": [image.id for _, image in cited],
        "image_sha256": [image.sha256 for _, image in cited],
        "parent_version": parent.version,
        "parent_version_id": parent.id,
        **dict(details or {}),
    }
    metrics = {k: v for k, v in (parent.metrics or {}).items() if k != STATUS_HISTORY_KEY}
    updates = [*metrics.get(INSTANT_UPDATES_KEY, []), entry]
    metrics[INSTANT_UPDATES_KEY] = updates
    metrics[INSTANT_UPDATE_COUNT_KEY] = len(updates)
    metrics["parent_version"] = parent.version
    if details and "bank_size_after" in details:
        metrics["memory_bank_size"] = details["bank_size_after"]
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
        notes=f"Instant update of version {parent.version}: {note}.",
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
    entry = {"at": utcnow().isoformat(), "status": status.value, "by": actor.name, "note": note}
    metrics = dict(model_version.metrics or {})
    metrics[STATUS_HISTORY_KEY] = [*metrics.get(STATUS_HISTORY_KEY, []), entry]
    model_version.metrics = metrics  # a new dict: JSON columns do not track in-place edits
    model_version.status = status.value
