"""Inspect images with a detector and store the results: the bridge between models and the DB.

A server-side folder is read only under the server folder roots (:mod:`services.server_folders`)
and by the roles :mod:`services.inspect_options` allows. Every upload (or file of a server-side
folder) is decoded with :func:`adcore.image_io.load_image`;
a bad file becomes a result with ``error`` set and the batch carries on. Good images are scored
in batches, then each is stored in its own transaction: the image (deduplicated by content), its
anomaly map and a :class:`db.Prediction` row.

Each prediction also stores a grounded explanation (:mod:`adcore.explain`: measured facts and
one to three sentences) in ``Prediction.explanation``; an explainer error stores ``None``.
Detectors that give a global feature vector per image have it stored in
``Prediction.embedding`` (float16), and a flagged part's explanation names the confirmed
defect type it resembles most (:mod:`adcore.explain.neighbours`). The confirmed defects' vectors
of the model version are read once per scoring batch, so each part costs one matrix-vector
product.

A part that passes may be drawn for audit (``Prediction.audit``) with the project's audit
share: see :mod:`services.audit_sampling` (one draw per part, at its first inspection; re-scoring
never draws). Pass a seeded ``audit_rng`` for reproducible draws.

Anomaly maps are stored by :mod:`services.map_store` (``<data dir>/maps/<uuid>.npy``). A map
file is written before its row, so a committed row always has its file; the file of a failed
transaction is removed.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.detectors.base import Progress, report
from adcore.errors import DatasetError, ImageLoadError
from adcore.explain.neighbours import DefectLibrary, embedding_to_bytes
from adcore.image_io import (
    MAX_FILE_BYTES,
    ImageLimits,
    file_too_large,
    is_image_path,
    load_image,
)
from db import (
    Image,
    ImageSource,
    ModelVersion,
    Prediction,
    StorageError,
    User,
    absolute_image_path,
)
from db.images import get_or_create_image
from db.verdict_events import announce_verdict
from services.audit_sampling import AuditSampler, audit_sampler
from services.inspect_options import require_server_folder_scoring
from services.map_store import save_anomaly_map
from services.part_explanations import defect_library_for_batch, explain_part, similar_defects
from services.scorer_decisions import ScorerDecision, deciding_scorer, scorer_decisions
from services.server_folders import (
    MAX_FOLDER_FILES,
    allowed_folder,
    read_server_file,
    server_folder_roots,
)

__all__ = [
    "InspectionResult",
    "inspect_folder",
    "inspect_uploads",
    "rescore_images",
]

DEFAULT_BATCH_SIZE = 16

logger = logging.getLogger(__name__)

ReadBytes = Callable[[], bytes]
OnStored = Callable[[OrmSession, int, int], None]
"""Writes more in an image's storing transaction: ``(session, image_id, prediction_id)``."""


@dataclass(frozen=True)
class InspectionResult:
    """What happened to one inspected image.

    Attributes:
        name: The upload's or file's name (display only).
        image_id: The stored image (``None`` on error).
        prediction_id: The new prediction (``None`` on error).
        score: Anomaly score (``None`` on error).
        threshold: Threshold the verdict was made with (``None`` on error).
        verdict: The decision: the active feedback scorer's when one decided
            (``defect_probability``), else ``"defect"`` if ``score >= threshold`` else
            ``"good"`` (``None`` on error).
        anomaly_map_path: The map file, relative to the data directory (``None`` on error).
        error: Why the image could not be inspected, or ``None``.
        audit: Whether the part is an audit sample (a passed part drawn for review).
        defect_probability: The feedback scorer's p(defect) when it decided, else ``None``.
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
    *,
    project_id: int,
    detector: Any,
    model_version_id: int,
    uploads: Sequence[tuple[str, bytes]],
    source: str = ImageSource.UPLOAD.value,
    progress: Progress | None = None,
    data_dir: Path | None = None,
    limits: ImageLimits | None = None,
    batch_size: int | None = None,
    audit_rng: random.Random | None = None,
    announce: bool = True,
    on_stored: OnStored | None = None,
) -> list[InspectionResult]:
    """Score uploaded images and store images, maps and predictions.

    Args:
        Session: The application's session factory.
        project_id: The project the images belong to.
        detector: A fitted detector (``predict(list of arrays) -> list of Prediction``).
        model_version_id: The model version the detector was loaded from.
        uploads: ``(original name, file bytes)`` pairs.
        source: How the images arrived (one of :class:`db.ImageSource`).
        progress: Optional ``progress(fraction, message)`` callback.
        data_dir: The data directory; default :func:`db.data_dir`.
        limits: Image size limits for decoding.
        batch_size: Images scored per ``predict`` call; default the detector's batch size.
        audit_rng: Random generator for the audit draws (seeded in tests); default the system's.
        announce: Write each verdict to the project's outbox (webhook, MQTT; see
            :mod:`db.verdict_events`) in the transaction that stores it. The station API turns
            this off and announces with the station's part id instead.
        on_stored: Called with ``(session, image_id, prediction_id)`` inside each image's
            storing transaction, after its prediction is flushed: what it writes commits with
            the prediction or not at all. An exception it raises rolls the whole image back
            (map file included) and propagates, except those a failed store reports
            (SQLAlchemy, storage, OS and value errors), which become the result's ``error``.

    Returns:
        One result per upload, in order; failed ones have ``error`` set.

    Raises:
        LookupError: If the model version does not exist or belongs to another project.
        ValueError: On an unknown source, or when neither the version nor the detector has a
            threshold.
    """
    items = [(name, _upload(name, data)) for name, data in uploads]
    return _inspect(
        Session,
        project_id=project_id,
        detector=detector,
        model_version_id=model_version_id,
        items=items,
        source=source,
        progress=progress,
        data_dir=data_dir,
        limits=limits,
        batch_size=batch_size,
        audit_rng=audit_rng,
        announce=announce,
        on_stored=on_stored,
    )


def inspect_folder(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    detector: Any,
    model_version_id: int,
    folder: str | os.PathLike[str],
    user: User | None,
    source: str = ImageSource.FOLDER.value,
    recursive: bool = False,
    progress: Progress | None = None,
    data_dir: Path | None = None,
    limits: ImageLimits | None = None,
    batch_size: int | None = None,
    audit_rng: random.Random | None = None,
    max_files: int = MAX_FOLDER_FILES,
    max_bytes: int = MAX_FILE_BYTES,
) -> list[InspectionResult]:
    """Score every image file of a server-side folder (files are read one batch at a time).

    Only folders under the server folder roots may be read (:mod:`services.server_folders`),
    and only by managers and admins, or inspectors when the project allows it
    (:mod:`services.inspect_options`). Each file is resolved and checked on its own (a link
    pointing outside the roots is refused), and a file over ``max_bytes`` is refused without
    being read whole; the rest of the batch goes on.

    Args:
        Session: The application's session factory.
        project_id: The project.
        detector: A fitted detector.
        model_version_id: The model version the detector was loaded from.
        folder: The folder (an absolute path on the server); files with a supported image
            extension are inspected, in name order, hidden files skipped.
        user: The user asking (checked before the folder is looked at).
        source: How the images arrived (default ``"folder"``).
        recursive: Also inspect sub-folders (names are then relative paths; linked folders
            are not entered).
        progress: Optional ``progress(fraction, message)`` callback.
        data_dir: The data directory; default :func:`db.data_dir`.
        limits: Image size limits for decoding.
        batch_size: Images scored per ``predict`` call.
        audit_rng: Random generator for the audit draws; default the system's.
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
        require_server_folder_scoring(session, project_id, user)
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
    return _inspect(
        Session,
        project_id=project_id,
        detector=detector,
        model_version_id=model_version_id,
        items=items,
        source=source,
        progress=progress,
        data_dir=data_dir,
        limits=limits,
        batch_size=batch_size,
        audit_rng=audit_rng,
        announce=True,
    )


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

    A refusal fails this file only and the batch goes on: ``_inspect`` catches it (a file
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
    Nothing is drawn for audit: a part drawn at its first inspection stays an audit sample (its
    new prediction carries the flag), any other part stays out (see
    :mod:`services.audit_sampling`).

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
    """
    with Session() as session:
        rows = {
            image.id: (image.original_name, image.stored_path, image.source)
            for image in session.scalars(select(Image).where(Image.id.in_(list(image_ids))))
            if image.project_id == project_id
        }
    items = []
    for image_id in image_ids:
        if image_id not in rows:
            continue
        name, stored_path, _ = rows[image_id]
        items.append((name, absolute_image_path(stored_path, data_dir).read_bytes))
    # The rows exist already: get_or_create_image finds them by hash and keeps their source.
    source = next(iter(rows.values()))[2] if rows else ImageSource.UPLOAD.value
    return _inspect(
        Session,
        project_id=project_id,
        detector=detector,
        model_version_id=model_version_id,
        items=items,
        source=source,
        progress=progress,
        data_dir=data_dir,
        limits=None,
        batch_size=None,
        audit_rng=None,
        announce=False,  # the line had this part's verdict at its first inspection
    )


def _inspect(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    detector: Any,
    model_version_id: int,
    items: Sequence[tuple[str, ReadBytes]],
    source: str,
    progress: Progress | None,
    data_dir: Path | None,
    limits: ImageLimits | None,
    batch_size: int | None,
    audit_rng: random.Random | None,
    announce: bool,
    on_stored: OnStored | None = None,
) -> list[InspectionResult]:
    source = ImageSource(source).value
    threshold = _decision_threshold(Session, project_id, model_version_id, detector)
    with Session() as session:
        sampler = audit_sampler(session, project_id, audit_rng)
        scorer = deciding_scorer(session, project_id, model_version_id)
    tell = report(progress)
    step = batch_size or getattr(getattr(detector, "config", None), "batch_size", None)
    step = max(1, int(step or DEFAULT_BATCH_SIZE))
    results: list[InspectionResult | None] = [None] * len(items)
    for start in range(0, len(items), step):
        decoded: list[tuple[int, str, bytes, np.ndarray]] = []
        for index in range(start, min(start + step, len(items))):
            name, read = items[index]
            try:
                data = read()
                decoded.append((index, name, data, load_image(data, limits=limits, name=name)))
            except (ImageLoadError, OSError) as err:
                results[index] = InspectionResult.failed(name, _message(err))
        if decoded:
            try:
                predictions = detector.predict([pixels for _, _, _, pixels in decoded])
            except (RuntimeError, ValueError) as err:  # e.g. out of memory: this batch only
                for index, name, _, _ in decoded:
                    results[index] = InspectionResult.failed(name, f"Scoring failed: {err}")
                predictions = []
            library = defect_library_for_batch(
                Session, project_id, model_version_id, predictions, threshold
            )
            decisions = scorer_decisions(
                scorer,
                [float(p.score) for p in predictions],
                [getattr(p, "embedding", None) for p in predictions],
            )
            for (index, name, data, pixels), prediction, decision in zip(
                decoded, predictions, decisions, strict=False
            ):
                results[index] = _store(
                    Session,
                    name=name,
                    data=data,
                    pixels=pixels,
                    score=float(prediction.score),
                    anomaly_map=prediction.anomaly_map,
                    embedding=getattr(prediction, "embedding", None),
                    library=library,
                    threshold=threshold,
                    project_id=project_id,
                    model_version_id=model_version_id,
                    source=source,
                    data_dir=data_dir,
                    sampler=sampler,
                    decision=decision,
                    announce=announce,
                    on_stored=on_stored,
                )
        done = min(start + step, len(items))
        tell(done / len(items), f"Inspected {done}/{len(items)} images")
    return [result for result in results if result is not None]


def _store(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    name: str,
    data: bytes,
    pixels: np.ndarray,
    score: float,
    anomaly_map: np.ndarray,
    embedding: np.ndarray | None,
    library: DefectLibrary,
    threshold: float,
    project_id: int,
    model_version_id: int,
    source: str,
    data_dir: Path | None,
    sampler: AuditSampler,
    decision: ScorerDecision | None = None,
    announce: bool = False,
    on_stored: OnStored | None = None,
) -> InspectionResult:
    """Store one scored image, map and prediction (with its explanation) in one transaction.

    The verdict is the feedback scorer's ``decision`` when there is one, else the detector's.
    With ``announce``, its outbox messages are written in the same transaction.
    """
    verdict = decision.verdict if decision else ("defect" if score >= threshold else "good")
    similar = None
    if verdict == "defect" and embedding is not None and len(library):
        similar = similar_defects(name, data, embedding, library)
    explanation = explain_part(name, pixels, anomaly_map, score, threshold, similar)
    if decision is not None and explanation is not None:
        explanation = {
            **explanation,
            "text": f"{explanation['text']} {decision.sentence()}",
            "scorer": {
                "version": decision.scorer_version,
                "probability": decision.probability,
                "threshold": decision.threshold,
                "verdict": decision.verdict,
            },
        }
    stored_embedding = None if embedding is None else embedding_to_bytes(embedding)
    try:
        map_path = save_anomaly_map(anomaly_map, data_dir)
    except OSError as err:
        return InspectionResult.failed(name, f"Could not write the anomaly map: {err}")
    try:
        with Session() as session, session.begin():
            image, _ = get_or_create_image(
                session,
                data=data,
                original_name=name,
                project_id=project_id,
                source=source,
                width=int(pixels.shape[1]),
                height=int(pixels.shape[0]),
                data_dir=data_dir,
            )
            row = Prediction(
                image_id=image.id,
                model_version_id=model_version_id,
                score=score,
                threshold=threshold,
                verdict=verdict,
                anomaly_map_path=map_path,
                explanation=explanation,
                embedding=stored_embedding,
                audit=sampler.decide(session, image.id, verdict),
                scorer_version_id=decision.scorer_version_id if decision else None,
                defect_probability=decision.probability if decision else None,
            )
            session.add(row)
            session.flush()
            image_id, prediction_id, audit = image.id, row.id, row.audit
            if announce:
                announce_verdict(session, prediction_id)
            if on_stored is not None:
                on_stored(session, image_id, prediction_id)
    except (SQLAlchemyError, StorageError, OSError, ValueError) as err:
        absolute_image_path(map_path, data_dir).unlink(missing_ok=True)
        return InspectionResult.failed(name, f"Could not store the result: {err}")
    except BaseException:  # on_stored refused the part: nothing of it is kept
        absolute_image_path(map_path, data_dir).unlink(missing_ok=True)
        raise
    return InspectionResult(
        name,
        image_id,
        prediction_id,
        score,
        threshold,
        verdict,
        map_path,
        audit=audit,
        defect_probability=decision.probability if decision else None,
    )


def _decision_threshold(
    Session: sessionmaker[OrmSession],  # noqa: N803
    project_id: int,
    model_version_id: int,
    detector: Any,
) -> float:
    with Session() as session:
        version = session.get(ModelVersion, model_version_id)
        if version is None or version.project_id != project_id:
            raise LookupError(
                f"Model version {model_version_id} does not belong to project {project_id}."
            )
        threshold = version.threshold
    if threshold is None:
        threshold = getattr(detector, "threshold", None)
    if threshold is None:
        raise ValueError(
            f"Model version {model_version_id} has no decision threshold yet: a manager must "
            "set one before parts can be judged."
        )
    return float(threshold)


def _upload(name: str, data: bytes) -> ReadBytes:
    """An upload's bytes, or an ``ImageTooLargeError`` past ``MAX_FILE_BYTES`` (50 MB)."""

    def read() -> bytes:
        if len(data) > MAX_FILE_BYTES:
            raise file_too_large(name, f"{len(data):,} bytes", MAX_FILE_BYTES)
        return data

    return read


def _message(err: Exception) -> str:
    return str(err) or type(err).__name__
