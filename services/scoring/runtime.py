"""Which runtime scores parts: torch, or the model's ONNX export through onnxruntime.

The workbench (and any other caller) asks :func:`scoring_detector` for the detector of a model
version, and hands it to the version's :class:`services.scoring.predictor.Predictor`. With the
``onnx`` runtime (``LOUPE_RUNTIME=onnx``) a PatchCore model scores through
:class:`adcore.detectors.onnx_runtime.OnnxPatchCore`; its export (``model.onnx`` in the model's
folder) is written on first use and again when the model has learned since, so an instant update
never leaves the line scoring with an old bank. Models that do not export (autoencoder, CLIP)
score with torch, and the choice says why. Learning (fit, instant updates) always runs in torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adcore.errors import LoupeError, ModelFileError

logger = logging.getLogger(__name__)

RUNTIME_ENV = "LOUPE_RUNTIME"
TORCH, ONNX = "torch", "onnx"
RUNTIMES = (TORCH, ONNX)


class RuntimeChoiceError(LoupeError):
    """The configured runtime is not one Loupe knows."""


@dataclass(frozen=True)
class ScoringDetector:
    """The detector that scores, and how it was chosen.

    Attributes:
        detector: A torch detector or an :class:`~adcore.detectors.onnx_runtime.OnnxPatchCore`.
        runtime: ``"torch"`` or ``"onnx"``: the runtime actually used.
        note: Why the runtime differs from the one asked for, or that an export was written;
            empty otherwise.
    """

    detector: Any
    runtime: str
    note: str = ""


def configured_runtime(environ: Mapping[str, str] | None = None) -> str:
    """The runtime ``LOUPE_RUNTIME`` names (``torch`` when unset).

    Raises:
        RuntimeChoiceError: The variable names an unknown runtime.
    """
    value = (os.environ if environ is None else environ).get(RUNTIME_ENV, "").strip().lower()
    if not value:
        return TORCH
    if value not in RUNTIMES:
        raise RuntimeChoiceError(
            f"{RUNTIME_ENV}={value!r} is not a scoring runtime; choose one of {', '.join(RUNTIMES)}"
        )
    return value


def scoring_detector(model_dir: str | os.PathLike, runtime: str, *, device: str = "cpu"):
    """Load a model version's detector for scoring with ``runtime``.

    Args:
        model_dir: The model version's folder.
        runtime: ``"torch"`` or ``"onnx"``.
        device: Torch device, for the torch runtime.

    Returns:
        A :class:`ScoringDetector`.

    Raises:
        RuntimeChoiceError: Unknown runtime.
        ModelFileError: The model (or its export) cannot be loaded.
    """
    from adcore.detectors.registry import load_detector

    if runtime not in RUNTIMES:
        raise RuntimeChoiceError(f"Unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    model_dir = Path(model_dir)
    if runtime == TORCH:
        return ScoringDetector(load_detector(model_dir, device=device), TORCH)
    try:
        return ScoringDetector(load_detector(model_dir, runtime=ONNX), ONNX)
    except ModelFileError as err:
        reason = str(err)  # missing or stale export: write it from the torch model
    detector = load_detector(model_dir, device="cpu")
    if getattr(detector, "kind", None) != "patchcore":
        note = f"{detector.kind} models do not export to ONNX: scoring with torch"
        return ScoringDetector(detector, TORCH, note)
    from adcore.export.onnx_export import EXPORT_FILE, export_patchcore

    logger.info("Exporting %s for onnxruntime (%s)", model_dir, reason)
    export_patchcore(detector, model_dir / EXPORT_FILE, source=str(model_dir))
    exported = load_detector(model_dir, runtime=ONNX)
    return ScoringDetector(exported, ONNX, f"Exported {model_dir.name} to ONNX for onnxruntime")


def resolve_artifact(artifact_path: str) -> Path:
    """A model version's directory: absolute as stored, else relative to the working directory."""
    path = Path(artifact_path)
    return path if path.is_absolute() else Path.cwd() / path


def detector_loader(runtime: str, *, cache_size: int = 4):
    """A cached ``artifact path -> detector`` loader, for long-running servers and watchers.

    Relative artifact paths (as stored for a model version) are taken from the working
    directory. Each model version is loaded once (:func:`scoring_detector`).

    Returns:
        A function from a model version's ``artifact_path`` to its scoring detector.
    """
    from functools import lru_cache

    @lru_cache(maxsize=cache_size)
    def load(artifact_path: str) -> Any:
        return scoring_detector(resolve_artifact(artifact_path), runtime).detector

    return load


def warm_up_active_models(
    Session: Any,  # noqa: N803 - the app's session factory
    detector_for: Any,
    *,
    limit: int = 4,
) -> list[str]:
    """Load the active model of each project (up to ``limit``) and score one blank part.

    A server calls this before it takes its first request, so the first part a station posts
    is not the one that pays for loading the model. A model that cannot load is logged and
    skipped: that project's first post gets the error instead.

    Returns:
        The artifact paths that were loaded.
    """
    import numpy as np
    from sqlalchemy import select

    from db.models import ModelVersion, Project

    with Session() as session:
        artifacts = session.scalars(
            select(ModelVersion.artifact_path)
            .join(Project, Project.active_model_version_id == ModelVersion.id)
            .order_by(Project.id)
            .limit(limit)
        ).all()
    loaded = []
    for artifact in artifacts:
        try:
            detector_for(artifact).predict([np.full((64, 64, 3), 128, dtype=np.uint8)])
        except Exception as err:  # noqa: BLE001 - a broken model must not stop the server
            logger.warning("Could not warm up the model at %s: %s", artifact, err)
            continue
        loaded.append(artifact)
    return loaded
