"""Scoring held-out parts and turning the scores into the gate's numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from adcore.gate import Rates
from adcore.metrics import rates_at_threshold
from services.training.training_data import LabelledPart


class ScoredParts(NamedTuple):
    """Labelled parts scored by one model (unpacks as ``scores, labels, unreadable``).

    Attributes:
        scores: (N,) float64 scores of the readable parts, in input order.
        labels: (N,) int64 labels of the same parts, 1 = defect.
        unreadable: (name, reason) of the parts that could not be read.
    """

    scores: np.ndarray
    labels: np.ndarray
    unreadable: list[tuple[str, str]]


def score_parts(
    detector: Any,
    parts: Sequence[LabelledPart],
    progress: Callable[[float, str], None] | None = None,
) -> ScoredParts:
    """Score labelled parts with a detector.

    Args:
        detector: A fitted detector (``predict_files``-style batch scoring).
        parts: The parts to score.
        progress: Optional ``progress(fraction, message)``.

    Returns:
        The scores and labels of the readable parts, and the unreadable ones.
    """
    from adcore.detectors.base import load_many

    loaded, failures = load_many([part.path for part in parts])
    by_digest = {part.sha256: part for part in parts}
    kept = [image for image in loaded if image.sha256 in by_digest]
    predictions = detector.predict([image.pixels for image in kept], progress=progress)
    scores = np.array([p.score for p in predictions], dtype=np.float64)
    labels = np.array([int(by_digest[image.sha256].is_defect) for image in kept], dtype=np.int64)
    return ScoredParts(scores, labels, failures)


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> Rates:
    """The gate's numbers for one threshold (rates are ``None`` when undefined)."""
    if threshold is None or scores.size == 0:
        return Rates(threshold=threshold, fnr=None, fpr=None)
    measured = rates_at_threshold(labels, scores, float(threshold))
    return Rates(
        threshold=float(threshold),
        fnr=_rate(measured.fnr),
        fpr=_rate(measured.fpr),
        tp=measured.tp,
        fp=measured.fp,
        tn=measured.tn,
        fn=measured.fn,
    )


def _rate(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
