"""Store what the scoring service decided: one transaction per inspected part, on every path.

Uploads (the Inspect page, the demo, the replay benchmark), server folders, the hot folder,
station posts and re-scores all come here with an :class:`InspectionRequest`: the version's
:class:`services.scoring.predictor.Predictor`, which decides every verdict, and how the parts
are stored. Each part is decided (:meth:`~services.scoring.predictor.Predictor.decide`: read,
decoded with :func:`adcore.image_io.load_image`, scored a batch at a time, judged and explained)
and then stored in **one transaction**: the image (deduplicated by content), its anomaly map, a
:class:`db.Prediction` row (with its grounded explanation, its detector vector as float16 in
``Prediction.embedding``, the feedback scorer's probability when it decided, and the audit
flag) and what :attr:`InspectionRequest.announce` writes beside them: the verdict's outbox
messages (webhook, MQTT; :mod:`db.verdict_events`), and, on the station API's path, the
station's post with its part id. They commit together or not at all: a process that dies
before the commit leaves nothing of the part, and a retry stores it once.

A part's first inspection announces its verdict (:func:`announce_first_verdict`, the default);
a station post announces it with the station's part id (:mod:`services.station_inspection`);
a re-score announces nothing (:func:`already_announced`): the line had that part's verdict at
its first inspection.

A server-side folder is read only under the server folder roots (:mod:`services.server_folders`)
and by the roles :mod:`services.inspect_options` allows. A bad file becomes a result with
``error`` set and the batch carries on.

A part that passes may be drawn for audit (``Prediction.audit``) with the project's audit
share: see :mod:`services.audit_sampling` (one draw per part, at its first inspection; re-scoring
never draws). Seed the predictor's ``audit_rng`` for reproducible draws.

Anomaly maps are stored by :mod:`services.map_store` (``<data dir>/maps/<uuid>.npy``). A map
file is written before its row, so a committed row always has its file; the file of a failed
transaction is removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.errors import DatasetError
from adcore.explain.neighbours import embedding_to_bytes
from adcore.image_io import MAX_FILE_BYTES, ImageLimits, file_too_large, is_image_path
from db import (
    Image,
    ImageSource,
    Prediction,
    StorageError,
    User,
    absolute_image_path,
)
from db.images import get_or_create_image
from db.verdict_events import announce_verdict
from services.inspect_options import require_server_folder_scoring
from services.map_store import save_anomaly_map
from services.scoring.predictor import Decision, Incoming, Predictor, ReadBytes, Refusal
from services.server_folders import (
    MAX_FOLDER_FILES,
    allowed_folder,
    read_server_file,
    server_folder_roots,
)

if TYPE_CHECKING:
    from adcore.detectors.base import Progress

__all__ = [
    "Announcer",
    "InspectionRequest",
    "InspectionResult",
    "StoredPart",
    "already_announced",
    "announce_first_verdict",
    "inspect_folder",
    "inspect_uploads",
    "rescore_images",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredPart:
    """The rows of a part just stored (flushed, not yet committed)."""

    image_id: int
    prediction_id: int


Announcer = Callable[[OrmSession, StoredPart], None]
"""Writes a stored part's announcement in its storing transaction: ``(session, stored)``."""


def announce_first_verdict(session: OrmSession, stored: StoredPart) -> None:
    """A part's first inspection: its verdict message to the project's channels, if any."""
    announce_verdict(session, stored.prediction_id)


def already_announced(session: OrmSession, stored: StoredPart) -> None:
    """A re-score: the line had this part's verdict at its first inspection; nothing is sent."""


@dataclass(frozen=True)
class InspectionRequest:
    """How parts are decided and stored: the same for every path.

    Attributes:
        predictor: The model version that decides (:class:`services.scoring.predictor.Predictor`).
        source: How the images arrived (one of :class:`db.ImageSource`); default the path's
            own: ``upload`` for uploads, ``folder`` for server folders.
        announce: Writes the part's announcement in its storing transaction, after its
            prediction is flushed, together with whatever the path records beside it (a
            station's post, a hot-folder file's row): it commits with the part or nothing does.
            An exception it raises rolls the whole part back (map file included) and
            propagates, except those a failed store reports (SQLAlchemy, storage, OS and value
            errors), which become the result's ``error``. Default: :func:`announce_first_verdict`.
        progress: Optional ``progress(fraction, message)`` callback.
        data_dir: The data directory; default :func:`db.data_dir`.
        limits: Image size limits for decoding.
        batch_size: Images scored per ``predict`` call; default the detector's batch size.
    """

    predictor: Predictor
    source: str | None = None
    announce: Announcer = announce_first_verdict
    progress: Progress | None = None
    data_dir: Path | None = None
    limits: ImageLimits | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class InspectionResult:
    """What happened to one inspected image.

    Attributes:
        name: The upload's or file's name (display only).
        image_id: The stored image (``None`` on error).
        prediction_id: The new prediction (``None`` on error).
        score: Anomaly score (``None`` on error).
        threshold: Threshold the verdict was made with (``None`` on error).
        verdict: The decision (:class:`services.scoring.predictor.Decision`; ``None`` on
            error).
        anomaly_map_path: The map file, relative to the data directory (``None`` on error).
        error: Why the image could not be inspected, or ``None``.
        audit: Whether the part is an audit sample (a passed part drawn for review).
        defect_probability: The triage model's p(defect) when it decided, else ``None``.
        region: Where the cascade put the part at its first inspection
            (:data:`adcore.audit.REGIONS`; ``None`` on error).
        audit_probability: The known probability that a part of that region is looked at by
            a human (``None`` on error).
    """

    name: str
    image_id: int | None
    prediction_id: int | None
    score: float | None
    threshold: float | None
    verdict: str | None
    anomaly_map_path: str | None
    error: str | None = None
    audit: bool = False
    defect_probability: float | None = None
    region: str | None = None
    audit_probability: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was scored and stored."""
        return self.error is None

    @classmethod
    def failed(cls, name: str, error: str) -> InspectionResult:
        """A result for an image that could not be inspected."""
        return cls(name, None, None, None, None, None, None, error)


def inspect_uploads(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory, named as in db
    request: InspectionRequest,
    uploads: Sequence[tuple[str, bytes]],
) -> list[InspectionResult]:
    """Decide and store uploaded images (or any images in hand: a station's post, a hot file).

    An upload over :data:`adcore.image_io.MAX_FILE_BYTES` (50 MB) is refused on its own.

    Args:
        Session: The application's session factory.
        request: The predictor and how to store (source ``upload`` unless it says).
        uploads: ``(original name, file bytes)`` pairs.

    Returns:
        One result per upload, in order; failed ones have ``error`` set.
    """
    items = [(name, _upload(name, data)) for name, data in uploads]
    return _inspect(Session, request, items, ImageSource.UPLOAD.value)


def inspect_folder(
    Session: sessionmaker[OrmSession],  # noqa: N803
    request: InspectionRequest,
    folder: str | os.PathLike[str],
    *,
    user: User | None,
    recursive: bool = False,
    max_files: int = MAX_FOLDER_FILES,
    max_bytes: int = MAX_FILE_BYTES,
) -> list[InspectionResult]:
    """Decide and store every image file of a server-side folder (read one batch at a time).

    Only folders under the server folder roots may be read (:mod:`services.server_folders`),
    and only by managers and admins, or inspectors when the project allows it
    (:mod:`services.inspect_options`). Each file is resolved and checked on its own (a link
    pointing outside the roots is refused), and a file over ``max_bytes`` is refused without
    being read whole; the rest of the batch goes on.

    Args:
        Session: The application's session factory.
        request: The predictor and how to store (source ``folder`` unless it says).
        folder: The folder (an absolute path on the server); files with a supported image
            extension are inspected, in name order, hidden files skipped.
        user: The user asking (checked before the folder is looked at).
        recursive: Also inspect sub-folders (names are then relative paths; linked folders
            are not entered).
        max_files: Most image files scored in one batch; a folder holding more is refused.
        max_bytes: Largest image file read.

    Returns:
        One result per image file, in name order.

    Raises:
        PermissionDenied: If the user may not score server folders in this project.
        services.server_folders.ServerFolderError: If the folder is missing or not under the
            roots (one message for both).
        DatasetError: If the folder holds no image file, or more than ``max_files``.
    """
    with Session() as session:
        require_server_folder_scoring(session, request.predictor.project_id, user)
    roots = server_folder_roots()
    root = allowed_folder(folder, roots=roots)
    paths = _image_files(root, recursive)
    if not paths:
        raise DatasetError(f"No image files in {folder} (supported: PNG, JPEG, BMP, TIFF).")
    if len(paths) > max_files:
        raise DatasetError(
            f"{folder} holds {len(paths):,} image files; at most {max_files:,} are scored at "
            "once. Split it into smaller folders."
        )
    items = [
        (name, _server_file_reader(path, name, roots, max_bytes))
        for name, path in ((p.relative_to(root).as_posix(), p) for p in paths)
    ]
    return _inspect(Session, request, items, ImageSource.FOLDER.value)


def _image_files(root: Path, recursive: bool) -> list[Path]:
    """The image files of a folder (links too: each is checked when read), in name order.

    Hidden files and folders are skipped; linked folders are not entered.
    """
    found = []
    for current, folders, files in os.walk(root, followlinks=False):
        folders[:] = [] if not recursive else [f for f in folders if not f.startswith(".")]
        for name in files:
            path = Path(current) / name
            if not name.startswith(".") and is_image_path(path):
                found.append(path)
    return sorted(found)


def _server_file_reader(path: Path, name: str, roots: Sequence[Path], max_bytes: int) -> ReadBytes:
    """Read one file of a server folder, checked against the roots.

    A refusal fails this file only and the batch goes on: the predictor refuses it (a file
    outside the roots is an ``OSError``, a file over the size cap an ``ImageLoadError``).
    """
    return lambda: read_server_file(path, roots=roots, max_bytes=max_bytes, name=name)


def rescore_images(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    detector: Any,
    model_version_id: int,
    image_ids: Sequence[int],
    progress: Progress | None = None,
    data_dir: Path | None = None,
) -> list[InspectionResult]:
    """Score already stored images again (e.g. with a newer model version): new predictions.

    Images that are gone or belong to another project are reported as failed, not raised.
    Nothing is announced (:func:`already_announced`) and nothing is drawn for audit: a part
    drawn at its first inspection stays an audit sample (its new prediction carries the flag),
    any other part stays out (see :mod:`services.audit_sampling`).

    Args:
        Session: The application's session factory.
        project_id: The project.
        detector: A fitted detector.
        model_version_id: The model version the detector was loaded from.
        image_ids: Stored images of the project.
        progress: Optional ``progress(fraction, message)`` callback.
        data_dir: The data directory; default :func:`db.data_dir`.

    Returns:
        One result per image id found, in order.

    Raises:
        LookupError: If the model version does not exist or belongs to another project.
        ValueError: When neither the version nor the detector has a threshold.
    """
    predictor = Predictor.load(
        Session, project_id=project_id, model_version_id=model_version_id, detector=detector
    )
    with Session() as session:
        rows = {
            image.id: (image.original_name, image.stored_path, image.source)
            for image in session.scalars(select(Image).where(Image.id.in_(list(image_ids))))
            if image.project_id == project_id
        }
    items: list[Incoming] = [
        (rows[image_id][0], absolute_image_path(rows[image_id][1], data_dir).read_bytes)
        for image_id in image_ids
        if image_id in rows
    ]
    # The rows exist already: get_or_create_image finds them by hash and keeps their source.
    source = next(iter(rows.values()))[2] if rows else ImageSource.UPLOAD.value
    request = InspectionRequest(
        predictor, announce=already_announced, progress=progress, data_dir=data_dir
    )
    return _inspect(Session, request, items, source)


def _inspect(
    Session: sessionmaker[OrmSession],  # noqa: N803
    request: InspectionRequest,
    items: Sequence[Incoming],
    default_source: str,
) -> list[InspectionResult]:
    """Decide every item with the request's predictor and store each decision on its own."""
    source = ImageSource(request.source or default_source).value
    tell = request.progress or (lambda _fraction, _message: None)
    results = []
    decisions = request.predictor.decide(
        items, limits=request.limits, batch_size=request.batch_size
    )
    for done, decided in enumerate(decisions, start=1):
        if isinstance(decided, Refusal):
            results.append(InspectionResult.failed(decided.name, decided.reason))
        else:
            results.append(_store(Session, request, decided, source))
        tell(done / len(items), f"Inspected {done}/{len(items)} images")
    return results


def _store(
    Session: sessionmaker[OrmSession],  # noqa: N803
    request: InspectionRequest,
    decision: Decision,
    source: str,
) -> InspectionResult:
    """Store one decided part, map and prediction, and its announcement, in one transaction."""
    predictor = request.predictor
    try:
        map_path = save_anomaly_map(decision.anomaly_map, request.data_dir)
    except OSError as err:
        return InspectionResult.failed(decision.name, f"Could not write the anomaly map: {err}")
    embedding = decision.embedding
    try:
        with Session() as session, session.begin():
            image, _ = get_or_create_image(
                session,
                data=decision.data,
                original_name=decision.name,
                project_id=predictor.project_id,
                source=source,
                width=decision.width,
                height=decision.height,
                data_dir=request.data_dir,
            )
            draw = predictor.audit.decide(session, image.id, decision.region)
            row = Prediction(
                image_id=image.id,
                model_version_id=predictor.version_id,
                score=decision.score,
                threshold=decision.threshold,
                verdict=decision.verdict,
                anomaly_map_path=map_path,
                explanation=decision.explanation,
                embedding=None if embedding is None else embedding_to_bytes(embedding),
                decision_region=draw.region,
                audit_probability=draw.probability,
                audit=draw.audit,
                scorer_version_id=decision.scorer.scorer_version_id if decision.scorer else None,
                defect_probability=decision.defect_probability,
            )
            session.add(row)
            session.flush()
            stored, audit = StoredPart(image.id, row.id), row.audit
            request.announce(session, stored)
    except (SQLAlchemyError, StorageError, OSError, ValueError) as err:
        absolute_image_path(map_path, request.data_dir).unlink(missing_ok=True)
        return InspectionResult.failed(decision.name, f"Could not store the result: {err}")
    except BaseException:  # the announcer refused the part (or the process is stopping)
        absolute_image_path(map_path, request.data_dir).unlink(missing_ok=True)
        raise
    return InspectionResult(
        decision.name,
        stored.image_id,
        stored.prediction_id,
        decision.score,
        decision.threshold,
        decision.verdict,
        map_path,
        audit=audit,
        defect_probability=decision.defect_probability,
        region=draw.region,
        audit_probability=draw.probability,
    )


def _upload(name: str, data: bytes) -> ReadBytes:
    """An upload's bytes, or an ``ImageTooLargeError`` past ``MAX_FILE_BYTES`` (50 MB)."""

    def read() -> bytes:
        if len(data) > MAX_FILE_BYTES:
            raise file_too_large(name, f"{len(data):,} bytes", MAX_FILE_BYTES)
        return data

    return read
