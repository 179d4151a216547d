"""Fit a detector on a dataset's train split, score its test split, report quality and cost."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from adcore.datasets import Dataset
from adcore.detectors.base import load_many
from adcore.detectors.registry import build_detector
from adcore.errors import DatasetError
from adcore.metrics import aupro, image_metrics, pixel_auroc


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark run (the fields of ``python -m adcore benchmark --json``).

    ``score_ms_per_image`` times the model only (images are decoded beforehand);
    ``peak_rss_mb`` is the process's peak resident memory so far.
    """

    dataset: str
    detector: str
    n_train: int
    n_test: int
    image_auroc: float
    pixel_auroc: float | None
    aupro: float | None
    f1_max: float
    fit_seconds: float
    score_ms_per_image: float
    peak_rss_mb: float
    image_size: int
    details: dict[str, Any]

    def to_json_dict(self) -> dict[str, Any]:
        """Plain dict with NaN turned into None (JSON has no NaN)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and np.isnan(value):
                out[key] = None
        return out


def _mask(path: Any, size: int) -> np.ndarray:
    if path is None:
        return np.zeros((size, size), dtype=bool)
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127


def run_benchmark(
    dataset: Dataset, detector_kind: str = "patchcore", *, onnx: bool = False, **config: Any
) -> BenchmarkResult:
    """Fit on ``dataset.train`` (all of it: no calibration hold-out) and evaluate on its test split.

    Args:
        dataset: A dataset with a labelled test split.
        detector_kind: ``"patchcore"``, ``"autoencoder"`` or ``"clip"`` (CLIP: ``shots`` good
            images of the train split become references; 0 = zero-shot).
        onnx: Also export the fitted PatchCore to ONNX and score the test split with onnxruntime:
            ``details`` gets its ms/image, image AUROC, largest relative score difference and
            the verdict changes at the torch scores' F1-max threshold (:func:`onnx_comparison`).
        **config: Detector config overrides (``image_size``, ``coreset_ratio``, ...).

    Returns:
        The :class:`BenchmarkResult`.
    """
    if not dataset.test:
        raise DatasetError(f"{dataset.name} has no test split to benchmark on")
    config.setdefault("calibration_fraction", 0.0)
    detector = build_detector(detector_kind, **config)
    start = time.perf_counter()
    report = detector.fit([s.path for s in dataset.train])
    fit_seconds = time.perf_counter() - start

    loaded, failures = load_many([s.path for s in dataset.test])
    if failures:
        raise DatasetError(f"{len(failures)} test images could not be read: {failures[0][1]}")
    detector.predict([im.pixels for im in loaded[:2]])  # warm-up (lazy tracing), not timed
    start = time.perf_counter()
    predictions = detector.predict([im.pixels for im in loaded])
    score_seconds = time.perf_counter() - start

    labels = np.array([s.label for s in dataset.test])
    quality = image_metrics(labels, np.array([p.score for p in predictions]))
    px_auroc = pro = None
    size = detector.config.image_size
    if dataset.has_masks:
        masks = np.stack([_mask(s.mask_path, size) for s in dataset.test])
        # Tiled models give maps at each image's own size: compare every map at S x S.
        maps = np.stack([p.map_resized(size, size) for p in predictions])
        px_auroc = pixel_auroc(masks, maps)
        pro = aupro(masks, maps)
    details = {k: v for k, v in report.details.items() if not isinstance(v, list)}
    if onnx:
        pixels = [im.pixels for im in loaded]
        details.update(onnx_comparison(detector, pixels, predictions, labels, quality.f1_threshold))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return BenchmarkResult(
        dataset=dataset.name,
        detector=detector_kind,
        n_train=len(dataset.train),
        n_test=len(dataset.test),
        image_auroc=quality.auroc,
        pixel_auroc=px_auroc,
        aupro=pro,
        f1_max=quality.f1_max,
        fit_seconds=fit_seconds,
        score_ms_per_image=1000.0 * score_seconds / len(loaded),
        peak_rss_mb=peak,
        image_size=size,
        details=details,
    )


def onnx_comparison(
    detector: Any,
    images: list[np.ndarray],
    torch_predictions: list[Any],
    labels: np.ndarray,
    threshold: float,
) -> dict[str, float | int]:
    """Export ``detector`` to ONNX, score ``images`` with onnxruntime and compare with torch.

    Args:
        detector: A fitted PatchCore.
        images: The decoded test images.
        torch_predictions: Torch's predictions of ``images``.
        labels: (N,) 1 = defect.
        threshold: Verdict threshold for counting verdict changes (an F1-max threshold is one
            of the scores itself; it is moved halfway down to the next lower torch score, which
            keeps every torch verdict but no longer sits on a test image's own score, where a
            difference of 1e-7 would flip it).

    Returns:
        ``onnx_ms_per_image``, ``onnx_image_auroc``, ``onnx_max_relative_difference`` and
        ``onnx_verdict_changes``.
    """
    import tempfile
    from pathlib import Path

    from adcore.detectors.onnx_runtime import OnnxPatchCore
    from adcore.export.onnx_export import export_patchcore

    with tempfile.TemporaryDirectory() as tmp:
        runtime = OnnxPatchCore(export_patchcore(detector, Path(tmp) / "model.onnx"))
        runtime.predict(images[:2])  # warm-up, not timed
        start = time.perf_counter()
        exported = runtime.predict(images)
        seconds = time.perf_counter() - start
    want = np.array([p.score for p in torch_predictions], dtype=np.float64)
    got = np.array([p.score for p in exported], dtype=np.float64)
    relative = np.abs(got - want) / np.maximum(np.abs(want), 1e-12)
    threshold = _between_scores(want, threshold)
    return {
        "onnx_ms_per_image": 1000.0 * seconds / len(images),
        "onnx_image_auroc": image_metrics(labels, got).auroc,
        "onnx_max_relative_difference": float(relative.max()),
        "onnx_verdict_changes": int(((got >= threshold) != (want >= threshold)).sum()),
    }


def _between_scores(scores: np.ndarray, threshold: float) -> float:
    """``threshold`` moved halfway down to the next lower score (same verdicts on ``scores``)."""
    below = scores[scores < threshold]
    return float(threshold) if below.size == 0 else float((threshold + below.max()) / 2.0)
