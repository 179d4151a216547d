"""Typed outputs of the supervised classifier: per-image predictions and the training report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from adcore.classifier.training import EpochRecord


@dataclass(frozen=True)
class ClassifierPrediction:
    """One classified image.

    Attributes:
        probability: p(defect) in [0, 1]; the image score.
        threshold: The decision threshold in force (a probability), or None.
        defect_type: Most likely defect type (meaningful when the part is judged defective).
        defect_type_probability: Its probability among the known types, given a defect
            (1.0 when the classifier knows a single type).
    """

    probability: float
    threshold: float | None
    defect_type: str
    defect_type_probability: float

    @property
    def score(self) -> float:
        """Same as ``probability`` (the name detectors use)."""
        return self.probability

    @property
    def is_defect(self) -> bool | None:
        """True when ``probability >= threshold``; None without a threshold."""
        return None if self.threshold is None else bool(self.probability >= self.threshold)


@dataclass(frozen=True)
class ClassifierReport:
    """What a training run did, measured on its validation split.

    Attributes:
        validation_fnr: FNR at the chosen threshold.
        validation_fpr: FPR at the chosen threshold.
        validation_accuracy: Accuracy at the chosen threshold.
        validation_auroc: Threshold-free AUROC of p(defect).
        threshold: The probability threshold chosen with the FNR-first rule.
        target_fnr: The FNR bound the threshold was chosen for.
        epochs_run: Epochs trained.
        best_epoch: 1-based epoch whose weights were kept.
        stop_reason: ``"patience"``, ``"max_epochs"`` or ``"time_budget"``.
        class_counts: ``{"train": {class: n}, "validation": {class: n}}``; classes are
            ``"good"`` and the defect types.
        defect_types: The defect types the model distinguishes.
        n_train: Training images used.
        n_validation: Validation images used.
        seconds: Wall time of the whole run (loading included).
        device: Torch device used.
        history: Per-epoch validation results.
        validation_names: Display names (paths, or ``image-<i>`` by input position) of the
            held-out images, so callers can see or re-score them.
        skipped: (name, reason) of each image that could not be loaded.
    """

    validation_fnr: float
    validation_fpr: float
    validation_accuracy: float
    validation_auroc: float
    threshold: float
    target_fnr: float
    epochs_run: int
    best_epoch: int
    stop_reason: str
    class_counts: dict[str, dict[str, int]]
    defect_types: tuple[str, ...]
    n_train: int
    n_validation: int
    seconds: float
    device: str
    history: tuple[EpochRecord, ...] = ()
    validation_names: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for ``config.json`` and job records)."""
        data = asdict(self)
        data["defect_types"] = list(self.defect_types)
        data["history"] = [asdict(r) for r in self.history]
        data["validation_names"] = list(self.validation_names)
        data["skipped"] = [list(s) for s in self.skipped]
        return data
