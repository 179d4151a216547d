"""Which images a retraining job learns from and which it is judged on.

* **Labelled parts**: the project's images with a current human label (their latest counting
  review, :func:`db.labels.current_labels`).
* **Held-out parts**: labelled parts no model involved has trained on: every labelled defect
  outside the training set, plus a stable share of the confirmed-good parts, chosen by their
  sha256 (:func:`adcore.holdout.in_evaluation_share`), so the same part stays held out from
  one refit to the next and candidate and active model are always judged on parts neither has
  seen. Instant learning never teaches the active model a part of that share either.
* **Training images**: the base version's training snapshot (files found by digest among the
  project's stored images, at a recorded path, or in a ``train_folder`` parameter), minus any
  image now labelled defect, plus every confirmed-good part outside the held-out share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from adcore.holdout import in_evaluation_share
from adcore.image_io import is_image_path
from adcore.persistence import file_sha256
from db.base import Label
from db.image_store import absolute_image_path
from db.labels import current_labels
from db.models import Image


@dataclass(frozen=True)
class LabelledPart:
    """An image with its current human label.

    Attributes:
        image_id: The image row.
        sha256: Digest of the file's bytes.
        path: The stored file.
        label: ``"good"`` or ``"defect"``.
        defect_type: The defect type of the current review, if any.
    """

    image_id: int
    sha256: str
    path: Path
    label: str
    defect_type: str | None = None

    @property
    def is_defect(self) -> bool:
        """Whether a human labelled it a defect."""
        return self.label == Label.DEFECT


@dataclass(frozen=True)
class TrainingImage:
    """An image a detector learns from.

    Attributes:
        sha256: Digest of the file's bytes.
        path: Where the file is.
        source: ``"snapshot"`` (the base version's training set) or ``"confirmed_good"``.
    """

    sha256: str
    path: Path
    source: str


def labelled_parts(session: Session, project_id: int, data_dir: Path) -> list[LabelledPart]:
    """Return the project's labelled images with their current labels and defect types."""
    labels = current_labels(project_id)
    rows = session.execute(
        select(Image.id, Image.sha256, Image.stored_path, labels.c.label, labels.c.defect_type)
        .join(labels, labels.c.image_id == Image.id)
        .order_by(Image.id)
    ).all()
    return [
        LabelledPart(
            row.id,
            row.sha256,
            absolute_image_path(row.stored_path, data_dir),
            row.label,
            row.defect_type,
        )
        for row in rows
    ]


def held_out_parts(
    parts: Iterable[LabelledPart], trained_digests: set[str], holdout_fraction: float
) -> list[LabelledPart]:
    """Labelled parts that are not in ``trained_digests`` and may be used for evaluation.

    Args:
        parts: The labelled parts.
        trained_digests: Digests of every image the compared models trained on.
        holdout_fraction: Share of confirmed-good parts kept for evaluation.

    Returns:
        The held-out defects and the held-out share of good parts.
    """
    return [
        part
        for part in parts
        if part.sha256 not in trained_digests
        and (part.is_defect or in_evaluation_share(part.sha256, holdout_fraction))
    ]


def snapshot_digests(snapshot: dict) -> list[str]:
    """The training image digests in a version's ``training_snapshot`` (good ones only)."""
    images = snapshot.get("images") or []
    return [
        entry["sha256"]
        for entry in images
        if isinstance(entry, dict) and entry.get("sha256") and entry.get("label", "good") == "good"
    ]


def locate_snapshot_images(
    session: Session,
    project_id: int,
    snapshot: dict,
    data_dir: Path,
    train_folder: str | None = None,
) -> tuple[list[TrainingImage], list[str]]:
    """Find the files of a training snapshot's images.

    Looked up, in order: the project's stored images with that digest, a ``path`` recorded
    in the snapshot entry (verified by hash), the image files of ``train_folder`` (hashed).

    Args:
        session: A session.
        project_id: The project.
        snapshot: The base version's ``training_snapshot``.
        data_dir: The data directory.
        train_folder: A folder holding the original training images, if known.

    Returns:
        (the images found, the digests not found).
    """
    wanted = list(dict.fromkeys(snapshot_digests(snapshot)))
    found: dict[str, Path] = {}
    if wanted:
        rows = session.execute(
            select(Image.sha256, Image.stored_path).where(
                Image.project_id == project_id, Image.sha256.in_(wanted)
            )
        ).all()
        for row in rows:
            path = absolute_image_path(row.stored_path, data_dir)
            if path.is_file():
                found[row.sha256] = path
    for entry in snapshot.get("images") or []:
        digest, recorded = entry.get("sha256"), entry.get("path")
        if digest in found or not recorded or digest not in wanted:
            continue
        path = Path(recorded)
        if path.is_file() and file_sha256(path) == digest:
            found[digest] = path
    if train_folder and len(found) < len(wanted):
        missing = set(wanted) - set(found)
        for path in _image_files(Path(train_folder).expanduser()):
            digest = file_sha256(path)
            if digest in missing:
                found[digest] = path
                missing.discard(digest)
    images = [TrainingImage(d, found[d], "snapshot") for d in wanted if d in found]
    return images, [d for d in wanted if d not in found]


def digest_set_hash(digests: Iterable[str]) -> str:
    """Order-independent hash of a set of image digests (identifies a held-out set)."""
    return hashlib.sha256("\n".join(sorted(set(digests))).encode()).hexdigest()


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and is_image_path(p) and p.name[0] != "."
    )
