"""Build or load any detector by its kind, so callers need not know the classes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adcore.errors import ModelFileError
from adcore.persistence import CONFIG_FILE, load_model

DETECTOR_KINDS = ("patchcore", "autoencoder", "clip")
"""Detector kinds. ``"clip"`` needs local CLIP weights (see :mod:`adcore.detectors.clip`)."""


def _classes(kind: str) -> tuple[type, type]:
    if kind == "patchcore":
        from adcore.detectors.patchcore import PatchCore, PatchCoreConfig

        return PatchCore, PatchCoreConfig
    if kind == "autoencoder":
        from adcore.detectors.autoencoder import Autoencoder, AutoencoderConfig

        return Autoencoder, AutoencoderConfig
    if kind == "clip":
        from adcore.detectors.clip import ClipConfig, ClipDetector

        return ClipDetector, ClipConfig
    raise ValueError(f"Unknown detector {kind!r}; choose one of {', '.join(DETECTOR_KINDS)}")


def build_detector(kind: str = "patchcore", *, device: str | None = None, **config: Any):
    """A new, unfitted detector of ``kind`` with config overrides.

    Args:
        kind: One of :data:`DETECTOR_KINDS`.
        device: Torch device; default CUDA when available.
        **config: Fields of the detector's config dataclass.
    """
    detector_cls, config_cls = _classes(kind)
    unknown = set(config) - set(config_cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{kind} has no setting(s) {sorted(unknown)}")
    return detector_cls(config_cls.from_dict(config), device=device)


RUNTIMES = ("torch", "onnx")
"""How a saved detector scores: its torch model, or its ONNX export through onnxruntime."""


def load_detector(
    directory: str | os.PathLike, *, device: str | None = None, runtime: str = "torch"
):
    """Load a saved detector of whatever kind ``config.json`` names (verified on load).

    Args:
        directory: A model directory, or an exported ``.onnx`` file (scored by onnxruntime
            whatever ``runtime`` says).
        device: Torch device of the torch runtime.
        runtime: ``"torch"``, or ``"onnx"`` for the directory's export (``model.onnx``,
            written by ``python -m adcore export``) scored by
            :class:`adcore.detectors.onnx_runtime.OnnxPatchCore`.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "onnx" or Path(directory).suffix.lower() == ".onnx":
        return _load_onnx(Path(directory))
    path = Path(directory) / CONFIG_FILE
    try:
        kind = json.loads(path.read_text())["kind"]
    except FileNotFoundError:
        raise ModelFileError(f"No model at {directory} (missing {CONFIG_FILE})") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not a Loupe model config: {err}") from err
    try:
        detector_cls, _ = _classes(kind)
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from err
    return detector_cls.load(directory, device=device)


def _load_onnx(path: Path):
    from adcore.detectors.onnx_runtime import OnnxPatchCore
    from adcore.export.onnx_export import EXPORT_FILE

    file = path / EXPORT_FILE if path.is_dir() else path
    if not file.is_file():
        raise ModelFileError(
            f"No ONNX export at {file}: write one with `python -m adcore export {path}`"
        )
    detector = OnnxPatchCore(file)
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        saved_hash = json.loads((path / CONFIG_FILE).read_text()).get("training_hash")
        if saved_hash != detector.training_hash:
            raise ModelFileError(
                f"{file} was exported before the model in {path} last learned: export it again"
            )
    return detector


MODEL_KINDS = (*DETECTOR_KINDS, "classifier")
"""Every kind of saved model: the one-class detectors and the supervised classifier."""


def load_any_model(directory: str | os.PathLike, *, device: str | None = None):
    """Load a saved detector *or* supervised classifier, by the kind ``config.json`` names.

    Detectors come back as their detector class (scores + anomaly maps); a ``"classifier"``
    comes back as :class:`adcore.classifier.Classifier` (probabilities + defect types).
    Everything is verified on load and pickles are refused (see :mod:`adcore.persistence`).
    """
    path = Path(directory) / CONFIG_FILE
    try:
        kind = json.loads(path.read_text())["kind"]
    except FileNotFoundError:
        load_model(directory)  # raises the precise reason (e.g. a refused pickled checkpoint)
        raise ModelFileError(f"No model at {directory} (missing {CONFIG_FILE})") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not a Loupe model config: {err}") from err
    if kind == "classifier":
        from adcore.classifier import Classifier

        return Classifier.load(directory, device=device)
    return load_detector(directory, device=device)
