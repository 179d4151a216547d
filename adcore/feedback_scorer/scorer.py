"""The feedback scorer: p(defect) from a detector's score and its per-image vector.

A fitted :class:`FeedbackScorer` is a plain linear model, written out as arrays so it can be
saved without pickle:

``z = coef . (x - mean) / scale + intercept``, ``p(defect) = sigmoid(platt_a * z + platt_b)``

with ``x = features(score, vector) = [score, ||vector||, vector]`` (:func:`features`). The
linear part is a class-balanced logistic regression; the Platt step (fitted on out-of-fold
decisions, :mod:`adcore.feedback_scorer.training`) turns its balanced odds into a calibrated
probability. A part is flagged when ``p >= threshold``.

Saved as ``model.safetensors`` + ``config.json`` like every Loupe model
(:func:`adcore.detectors.base.save_fitted`): tampered or pickled files are refused on load.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from adcore.detectors.base import load_and_build, restore_fitted_identity, save_fitted
from adcore.errors import DatasetError, ModelFileError

KIND = "feedback_scorer"
"""The model kind of saved scorers (``ModelVersion.kind``)."""

DETECTORS_WITHOUT_VECTORS = frozenset({"autoencoder"})
"""Detector kinds whose predictions carry no per-image vector (nothing to learn from)."""

EXTRA_FEATURES = 2
"""Features before the vector: the detector score and the vector's length."""


def stack_vectors(vectors: Sequence[np.ndarray | None] | np.ndarray) -> np.ndarray:
    """Stack per-part detector vectors into one array, refusing missing or ragged ones.

    Args:
        vectors: (N, D) array, or N vectors of shape (D,) (``None`` for a part without one).

    Returns:
        (N, D) float64 array.

    Raises:
        DatasetError: A vector is missing, the lengths differ, or a value is not finite.
    """
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        stacked = vectors.astype(np.float64)
    else:
        missing = sum(v is None for v in vectors)
        if missing:
            raise DatasetError(
                f"{missing} of {len(vectors)} parts have no detector vector: the feedback scorer "
                "needs a detector that gives per-image vectors (PatchCore or CLIP, not the "
                "autoencoder)."
            )
        lengths = sorted({int(np.asarray(v).size) for v in vectors})
        if len(lengths) > 1:
            raise DatasetError(
                f"The detector vectors have different lengths ({lengths}): they come from "
                "different detectors and cannot be scored together."
            )
        if not vectors:
            return np.zeros((0, 0))
        stacked = np.stack([np.asarray(v, dtype=np.float64).ravel() for v in vectors])
    if not np.isfinite(stacked).all():
        raise DatasetError("A detector vector holds a value that is not a finite number.")
    return stacked


def features(scores: np.ndarray, vectors: Sequence[np.ndarray | None] | np.ndarray) -> np.ndarray:
    """The scorer's input: detector score, vector length, vector.

    Args:
        scores: (N,) detector anomaly scores.
        vectors: (N, D) per-image vectors (or N vectors; see :func:`stack_vectors`).

    Returns:
        (N, D + 2) float64 features.

    Raises:
        DatasetError: Missing or ragged vectors, non-finite values, or N differs.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    stacked = stack_vectors(vectors)
    if stacked.shape[0] != scores.size:
        raise DatasetError(f"{scores.size} scores but {stacked.shape[0]} detector vectors.")
    if not np.isfinite(scores).all():
        raise DatasetError("A detector score is not a finite number.")
    norms = np.linalg.norm(stacked, axis=1) if stacked.size else np.zeros(scores.size)
    return np.column_stack([scores, norms, stacked])


@dataclass(frozen=True)
class DetectorIdentity:
    """Which detector's scores and vectors a scorer was trained on.

    Attributes:
        version_id: The detector's model version id (``None`` outside the app).
        version: Its version number.
        kind: Its kind, e.g. ``"patchcore"``.
        vector_dim: D, the length of its per-image vectors.
    """

    version_id: int | None
    version: int | None
    kind: str
    vector_dim: int


@dataclass
class FeedbackScorer:
    """A fitted feedback scorer (see the module docstring for the formula).

    Attributes:
        mean: (F,) feature means (F = D + 2).
        scale: (F,) feature standard deviations (1 where a feature is constant).
        coef: (F,) logistic-regression weights on the standardised features.
        intercept: Its intercept.
        platt_a: Calibration slope on the decision value.
        platt_b: Calibration offset.
        threshold: Flag a part when ``p(defect) >= threshold``; ``None`` before one is chosen.
        detector: The detector the scorer was trained on.
        training_hash: Hash of the training parts' digests.
        training_digests: The training parts' sha256 digests.
        facts: JSON-ready facts saved with the model (training report summary).
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    platt_a: float
    platt_b: float
    threshold: float | None
    detector: DetectorIdentity
    training_hash: str | None = None
    training_digests: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    kind = KIND

    @property
    def vector_dim(self) -> int:
        """D, the detector vector length the scorer expects."""
        return int(self.coef.size - EXTRA_FEATURES)

    def decision(
        self, scores: np.ndarray, vectors: Sequence[np.ndarray | None] | np.ndarray
    ) -> np.ndarray:
        """Uncalibrated decision values (balanced log-odds).

        Args:
            scores: (N,) detector scores.
            vectors: (N, D) detector vectors.

        Returns:
            (N,) float64.

        Raises:
            DatasetError: Missing vectors, or vectors of another length than trained on.
        """
        x = features(scores, vectors)
        if x.shape[1] != self.coef.size:
            raise DatasetError(
                f"The detector vectors have length {x.shape[1] - EXTRA_FEATURES}, but this "
                f"scorer was trained on vectors of length {self.vector_dim} (detector "
                f"{self.detector.kind} v{self.detector.version}): train the scorer again."
            )
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def predict_proba(
        self, scores: np.ndarray, vectors: Sequence[np.ndarray | None] | np.ndarray
    ) -> np.ndarray:
        """Calibrated defect probabilities.

        Args:
            scores: (N,) detector scores.
            vectors: (N, D) detector vectors (or N vectors of shape (D,)).

        Returns:
            (N,) float64 p(defect) in [0, 1].

        Raises:
            DatasetError: Missing vectors, or vectors of another length than trained on.
        """
        return sigmoid(self.platt_a * self.decision(scores, vectors) + self.platt_b)

    def predict(
        self, scores: np.ndarray, vectors: Sequence[np.ndarray | None] | np.ndarray
    ) -> np.ndarray:
        """Verdicts: (N,) bool, True = defect (``p >= threshold``).

        Raises:
            ValueError: If no threshold is set.
        """
        if self.threshold is None:
            raise ValueError("The scorer has no threshold yet.")
        return self.predict_proba(scores, vectors) >= self.threshold

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write ``model.safetensors`` and ``config.json`` atomically (never pickle)."""
        tensors = {
            name: torch.from_numpy(np.ascontiguousarray(getattr(self, name), dtype=np.float64))
            for name in ("mean", "scale", "coef")
        }
        config = {
            "intercept": float(self.intercept),
            "platt_a": float(self.platt_a),
            "platt_b": float(self.platt_b),
            "detector": asdict(self.detector),
        }
        save_fitted(
            self, directory, config=config, tensors=tensors, facts=self.facts, overwrite=overwrite
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str | None = None) -> FeedbackScorer:
        """Read a saved scorer, verifying both files' hashes.

        Args:
            directory: The folder written by :meth:`save`.
            device: Ignored (the scorer runs on the CPU); accepted like detectors' ``load``.

        Raises:
            ModelFileError: Missing, tampered or inconsistent files.
        """
        del device
        saved, config = load_and_build(directory, KIND, None, _checked_config)
        arrays = {}
        for name in ("mean", "scale", "coef"):
            tensor = saved.tensors.get(name)
            if tensor is None or tensor.ndim != 1:
                raise ModelFileError(f"{directory}: the saved scorer lacks its {name!r} array")
            arrays[name] = tensor.double().numpy()
        if not arrays["mean"].size == arrays["scale"].size == arrays["coef"].size:
            raise ModelFileError(f"{directory}: the saved scorer's arrays differ in length")
        scorer = cls(
            **arrays,
            intercept=config["intercept"],
            platt_a=config["platt_a"],
            platt_b=config["platt_b"],
            threshold=None,
            detector=DetectorIdentity(**config["detector"]),
            facts={k: v for k, v in saved.document.items() if k in ("report",)},
        )
        restore_fitted_identity(scorer, saved.document, directory)
        return scorer


def _checked_config(config: dict[str, Any]) -> dict[str, Any]:
    """The saved config's numbers and detector identity (``ValueError`` if malformed)."""
    try:
        detector = dict(config["detector"])
        return _config_values(config, detector)
    except KeyError as err:
        raise ValueError(f"missing {err}") from err


def _config_values(config: dict[str, Any], detector: dict[str, Any]) -> dict[str, Any]:
    return {
        "intercept": float(config["intercept"]),
        "platt_a": float(config["platt_a"]),
        "platt_b": float(config["platt_b"]),
        "detector": {
            "version_id": detector.get("version_id"),
            "version": detector.get("version"),
            "kind": str(detector["kind"]),
            "vector_dim": int(detector["vector_dim"]),
        },
    }


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function of (N,) values."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    exp = np.exp(z[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out
