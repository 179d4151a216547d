"""Inputs of the supervised classifier: labelled images and hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from adcore.detectors.base import ImageSource

GOOD = "good"
DEFECT = "defect"
GENERIC_DEFECT_TYPE = "defect"
"""The type of a defect whose own type has too few examples (or none was given)."""

Balance = Literal["sampler", "class_weights"]


@dataclass(frozen=True)
class LabelledImage:
    """One reviewed image.

    Attributes:
        source: A path, the file's bytes, or an (H, W, 3) uint8 RGB array.
        label: ``"good"`` or ``"defect"``.
        defect_type: The defect's type for a defect (None: untyped), None for a good part.
        sha256: Digest of the original bytes, when the caller knows it (else computed on load).
    """

    source: ImageSource
    label: str
    defect_type: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.label not in (GOOD, DEFECT):
            raise ValueError(f"label must be {GOOD!r} or {DEFECT!r}, got {self.label!r}")

    @property
    def is_defect(self) -> bool:
        """Whether the label is the defect label."""
        return self.label == DEFECT


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of the supervised good/defect classifier.

    Attributes:
        backbone: A key of :data:`adcore.backbones.BACKBONES` (EfficientNet-Lite0 by default).
        image_size: Side S of the square model input, in pixels.
        batch_size: Images per optimisation step and per scoring batch.
        max_epochs: Upper bound on training epochs.
        patience: Stop after this many epochs without a better validation score.
        learning_rate: AdamW learning rate (cosine-annealed to 0 over ``max_epochs``).
        weight_decay: AdamW weight decay.
        dropout: Dropout on pooled features before the heads.
        frozen_stages: The stem and this many early backbone stages keep their ImageNet
            weights (0: fine-tune everything); about halves CPU training time.
        validation_fraction: Share of the labelled images held out (stratified) for early
            stopping and the threshold.
        balance: ``"sampler"`` (balanced good/defect batches via ``WeightedRandomSampler``) or
            ``"class_weights"`` (shuffled batches, positive-class weight in the loss).
        min_examples_per_type: A defect type with fewer labelled examples is folded into the
            generic ``"defect"`` type; the type head exists only with two or more types.
        type_loss_weight: Weight of the defect-type loss next to the good/defect loss.
        max_rotation_degrees: Augmentation: random rotation within +-this many degrees.
        flips: Augmentation: random horizontal and vertical flips.
        target_fnr: Largest validation FNR the probability threshold may allow (FNR-first).
        max_train_seconds: Optional wall-time budget: no epoch starts that would likely end
            after it. None: no budget.
        seed: Random seed (split, sampling, augmentation, head initialisation).
    """

    backbone: str = "efficientnet_lite0"
    image_size: int = 160
    batch_size: int = 32
    max_epochs: int = 15
    patience: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    frozen_stages: int = 2
    validation_fraction: float = 0.2
    balance: Balance = "sampler"
    min_examples_per_type: int = 20
    type_loss_weight: float = 0.5
    max_rotation_degrees: float = 10.0
    flips: bool = True
    target_fnr: float = 0.05
    max_train_seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.balance not in ("sampler", "class_weights"):
            raise ValueError(f"balance must be 'sampler' or 'class_weights', not {self.balance!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("max_epochs, patience and batch_size must be at least 1")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if not 0.0 <= self.target_fnr < 1.0:
            raise ValueError(f"target_fnr must be in [0, 1), got {self.target_fnr}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        """Build from a (JSON) dict, ignoring unknown keys."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
