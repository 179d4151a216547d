"""Training a project's model and choosing its threshold: the service behind the model pages.

Everything here may run off the UI thread (it never touches Streamlit); long steps report
through ``progress(fraction, message)``. Role checks happen before any heavy work and again
when the result is recorded.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.detectors.base import FitReport, Progress, report
from adcore.detectors.registry import build_detector
from adcore.errors import DatasetError
from adcore.image_io import is_image_path
from adcore.metrics import rates_at_threshold
from adcore.persistence import file_sha256
from adcore.thresholds import ThresholdChoice, select_threshold
from db import CAN_MANAGE_MODELS, Label, ModelVersion, Project, User
from db.dashboard import labelled_scores
from db.model_lineages import label_of
from db.model_metrics import new_version_metrics
from db.permissions import require_session_role
from db.projects import activate_model_version, next_version_number, register_model_version

TRAIN_MESSAGE = "Only managers can train models."
_FIT_SHARE = 0.95  # of the progress bar; saving and registering take the rest


def train_first_model(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
    *,
    project_id: int,
    folder_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    user: User,
    detector_kind: str = "patchcore",
    models_root: Path = Path("models"),
    progress: Progress | None = None,
    device: str | None = None,
    **config: Any,
) -> ModelVersion:
    """Fit a detector on good images, save it, and register it as the project's next version.

    The version is a candidate; it is activated when the project has no active model yet.
    Unreadable files are skipped and listed in ``metrics["skipped"]``.

    Args:
        Session: The application's session factory.
        project_id: The project.
        folder_or_paths: A folder of good images (its image files, not sub-folders) or a list
            of image paths.
        user: The acting manager or admin (checked before fitting).
        detector_kind: ``"patchcore"`` or ``"autoencoder"``.
        models_root: Models are saved under ``<models_root>/<project slug>/v<version>/``.
        progress: Optional ``progress(fraction, message)`` callback.
        device: Torch device; default CUDA when available.
        **config: Detector settings (e.g. ``image_size=256``).

    Returns:
        The registered version (detached from any session).

    Raises:
        PermissionDenied: If the user may not manage models (nothing is fitted).
        LookupError: If the project does not exist.
        DatasetError: If there is no usable image.
    """
    tell = report(progress)
    with Session() as session:
        require_session_role(session, user, *CAN_MANAGE_MODELS, message=TRAIN_MESSAGE)
        project = session.get(Project, project_id)
        if project is None:
            raise LookupError(f"There is no project with id {project_id}.")
    sources = _image_sources(folder_or_paths)
    detector = build_detector(detector_kind, device=device, **config)
    fit = detector.fit(sources, progress=lambda f, message: tell(_FIT_SHARE * f, message))
    tell(_FIT_SHARE, "Saving the model")
    version = save_and_register(
        Session,
        project_id=project_id,
        detector=detector,
        fit=fit,
        models_root=models_root,
        user=user,
        training_paths=sources,
    )
    tell(1.0, f"Version {label_of(version)} registered")
    return version


def save_and_register(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    detector: Any,
    fit: FitReport,
    models_root: Path,
    user: User | None,
    system: bool = False,
    notes: str = "",
    training_paths: Sequence[str | os.PathLike[str]] = (),
) -> ModelVersion:
    """Save a fitted detector as the project's next version; activate it if none is active.

    The training snapshot lists the digest of every training image and, for the ones among
    ``training_paths``, where the file was, so a later refit finds the originals
    (:func:`services.training.training_data.locate_snapshot_images` checks them by hash).

    Args:
        Session: The application's session factory.
        project_id: The project.
        detector: The fitted detector.
        fit: Its fit report (for the metrics).
        models_root: Saved under ``<models_root>/<project slug>/v<version>/``.
        user: The acting manager or admin (role checked), or ``None`` with ``system``.
        system: Loupe's own set-up code (the demo): no user, no role check. Never for a UI
            action.
        notes: Free text stored with the version.
        training_paths: The files the detector was fitted on, when known.

    Returns:
        The registered version.
    """
    with Session() as session:
        if not system:
            require_session_role(session, user, *CAN_MANAGE_MODELS, message=TRAIN_MESSAGE)
        project = session.get(Project, project_id)
        if project is None:
            raise LookupError(f"There is no project with id {project_id}.")
        number = next_version_number(session, project_id)
        directory = free_version_directory(Path(models_root) / project_slug(project.name), number)
    detector.save(directory)
    metrics = new_version_metrics(
        {
            "n_train": fit.n_images,
            "fit_seconds": round(fit.seconds, 3),
            "skipped": [{"name": name, "reason": reason} for name, reason in fit.skipped],
            "calibrated_threshold": detector.threshold,
            **{k: fit.details[k] for k in ("memory_bank_size",) if k in fit.details},
        }
    )
    snapshot = {
        "training_hash": detector.training_hash,
        "images": _snapshot_images(detector.training_digests, training_paths),
    }
    with Session() as session, session.begin():
        actor = None
        if not system:
            actor = require_session_role(session, user, *CAN_MANAGE_MODELS, message=TRAIN_MESSAGE)
        version = register_model_version(
            session,
            project_id=project_id,
            kind=detector.kind,
            artifact_path=directory.as_posix(),
            metrics=metrics,
            threshold=detector.threshold,
            training_snapshot=snapshot,
            created_by=actor,
            notes=notes,
            version=number,
        )
        project = session.get(Project, project_id)
        if project is not None and project.active_model_version_id is None:
            activate_model_version(session, version_id=version.id, user=actor, system=system)
    return version


def threshold_preview(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    model_version_id: int,
    threshold: float,
) -> dict[str, Any]:
    """Rates a threshold would give on the labelled parts the version has scored.

    Args:
        Session: The application's session factory.
        project_id: The project.
        model_version_id: The version whose latest scores are used.
        threshold: The candidate threshold (flag when ``score >= threshold``).

    Returns:
        ``{"fnr", "fpr", "n_defect", "n_good", "tp", "fp", "tn", "fn"}``; a rate is ``None``
        when its class has no labelled part.
    """
    scores, labels = _labelled_arrays(Session, project_id, model_version_id)
    if scores.size == 0:
        return {"fnr": None, "fpr": None, "n_defect": 0, "n_good": 0} | dict.fromkeys(
            ("tp", "fp", "tn", "fn"), 0
        )
    rates = rates_at_threshold(labels, scores, float(threshold))
    return {
        "fnr": _none_if_nan(rates.fnr),
        "fpr": _none_if_nan(rates.fpr),
        "n_defect": rates.tp + rates.fn,
        "n_good": rates.fp + rates.tn,
        "tp": rates.tp,
        "fp": rates.fp,
        "tn": rates.tn,
        "fn": rates.fn,
    }


def recommended_threshold(
    Session: sessionmaker[OrmSession],  # noqa: N803
    *,
    project_id: int,
    model_version_id: int,
    target_fnr: float | None = None,
) -> ThresholdChoice | None:
    """The threshold :func:`adcore.thresholds.select_threshold` picks on the labelled parts.

    Args:
        Session: The application's session factory.
        project_id: The project.
        model_version_id: The version whose latest scores are used.
        target_fnr: Largest acceptable miss rate; default the project's ``target_fnr``.

    Returns:
        The choice (rule ``"fnr_target"`` once a defect is labelled, else ``"good_quantile"``),
        or ``None`` when no scored part is labelled yet.
    """
    if target_fnr is None:
        with Session() as session:
            project = session.get(Project, project_id)
            if project is None:
                raise LookupError(f"There is no project with id {project_id}.")
            target_fnr = project.target_fnr
    scores, labels = _labelled_arrays(Session, project_id, model_version_id)
    if scores.size == 0:
        return None
    return select_threshold(scores, labels, target_fnr=target_fnr)


def project_slug(name: str) -> str:
    """A file-system-safe folder name for a project (lowercase letters, digits, dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:64] or "project"


def _snapshot_images(
    digests: Sequence[str], paths: Sequence[str | os.PathLike[str]]
) -> list[dict[str, str]]:
    """One snapshot entry per training digest, with its file's absolute path when known."""
    where = {}
    for path in map(Path, paths):
        if path.is_file():
            where.setdefault(file_sha256(path), path.resolve().as_posix())
    return [
        {"sha256": d, "label": Label.GOOD.value, **({"path": where[d]} if d in where else {})}
        for d in digests
    ]


def _image_sources(
    folder_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[Path]:
    if isinstance(folder_or_paths, str | os.PathLike):
        folder = Path(folder_or_paths).expanduser()
        if not folder.is_dir():
            raise DatasetError(f"Folder not found: {folder}")
        paths = sorted(
            p for p in folder.iterdir() if p.is_file() and is_image_path(p) and p.name[0] != "."
        )
    else:
        paths = [Path(p) for p in folder_or_paths]
    if not paths:
        raise DatasetError("No good images to train on (supported: PNG, JPEG, BMP, TIFF).")
    return paths


def free_version_directory(project_dir: Path, number: int) -> Path:
    """A new version's folder: ``v<number>``, or ``v<number>-<random>`` if a stale one exists."""
    directory = project_dir / f"v{number}"
    return (
        directory if not directory.exists() else project_dir / f"v{number}-{uuid.uuid4().hex[:8]}"
    )


def _labelled_arrays(
    Session: sessionmaker[OrmSession],  # noqa: N803
    project_id: int,
    model_version_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    with Session() as session:
        pairs = labelled_scores(session, project_id, model_version_id)
    scores = np.array([score for score, _ in pairs], dtype=np.float64)
    labels = np.array([label == Label.DEFECT for _, label in pairs], dtype=np.int64)
    return scores, labels


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
