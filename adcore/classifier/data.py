"""Turning labelled images into training tensors: type vocabulary, split, sampling, augmentation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from adcore.classifier.config import GENERIC_DEFECT_TYPE, GOOD, Balance, LabelledImage
from adcore.detectors.base import load_many, to_tensor_batch
from adcore.errors import DatasetError, JobCancelled


@dataclass(frozen=True)
class LabelledTensors:
    """Decoded, resized labelled images.

    Attributes:
        pixels: (N, 3, S, S) uint8 RGB.
        is_defect: (N,) float32, 1 = defect, 0 = good.
        type_index: (N,) int64 index into the defect-type vocabulary; -1 for good parts.
        digests: sha256 of each image.
        names: Display name of each image.
    """

    pixels: torch.Tensor
    is_defect: torch.Tensor
    type_index: torch.Tensor
    digests: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def subset(self, index: np.ndarray) -> LabelledTensors:
        """The rows in ``index`` (an (M,) int array)."""
        rows = torch.as_tensor(index, dtype=torch.long)
        return LabelledTensors(
            self.pixels[rows],
            self.is_defect[rows],
            self.type_index[rows],
            tuple(self.digests[i] for i in index),
            tuple(self.names[i] for i in index),
        )

    def class_keys(self, vocabulary: Sequence[str]) -> list[str]:
        """``"good"`` or the defect type of each row (for stratification and counts)."""
        return [GOOD if t < 0 else vocabulary[t] for t in self.type_index.tolist()]


def type_vocabulary(samples: Sequence[LabelledImage], min_examples: int) -> tuple[str, ...]:
    """The defect types the classifier distinguishes, sorted.

    Types with at least ``min_examples`` labelled defects keep their name; the others (and
    untyped defects) share :data:`GENERIC_DEFECT_TYPE`, which is listed when any defect uses it.
    """
    counts = Counter(s.defect_type or GENERIC_DEFECT_TYPE for s in samples if s.is_defect)
    kept = {t for t, n in counts.items() if n >= min_examples}
    if any(t not in kept for t in counts):
        kept.add(GENERIC_DEFECT_TYPE)
    return tuple(sorted(kept))


def type_of(sample: LabelledImage, vocabulary: Sequence[str]) -> int:
    """Index of a sample's defect type in ``vocabulary`` (-1 for a good part)."""
    if not sample.is_defect:
        return -1
    name = sample.defect_type or GENERIC_DEFECT_TYPE
    return vocabulary.index(name if name in vocabulary else GENERIC_DEFECT_TYPE)


def prepare_tensors(
    samples: Sequence[LabelledImage],
    vocabulary: Sequence[str],
    image_size: int,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[LabelledTensors, list[tuple[str, str]]]:
    """Decode and resize every image once, skipping (and reporting) unreadable ones.

    Args:
        samples: Labelled images.
        vocabulary: Defect-type names (see :func:`type_vocabulary`).
        image_size: Side S of the stored square images.
        should_stop: Checked between images; True raises :class:`JobCancelled`.

    Returns:
        (the tensors of the images that loaded, (name, reason) of each skipped image).
    """
    pixels: list[torch.Tensor] = []
    kept: list[LabelledImage] = []
    digests: list[str] = []
    names: list[str] = []
    skipped: list[tuple[str, str]] = []
    for index, sample in enumerate(samples):
        if should_stop is not None and should_stop():
            raise JobCancelled("Training cancelled while loading images")
        name = _display_name(sample, index)
        loaded, failures = load_many([sample.source])
        if failures:
            skipped.append((name, failures[0][1]))
            continue
        kept.append(sample)
        digests.append(sample.sha256 or loaded[0].sha256)
        names.append(name)
        pixels.append(_to_uint8(to_tensor_batch([loaded[0].pixels], image_size)))
    if not kept:
        return _empty(image_size), skipped
    return (
        LabelledTensors(
            torch.cat(pixels),
            torch.tensor([float(s.is_defect) for s in kept]),
            torch.tensor([type_of(s, vocabulary) for s in kept], dtype=torch.long),
            tuple(digests),
            tuple(names),
        ),
        skipped,
    )


def _display_name(sample: LabelledImage, index: int) -> str:
    if isinstance(sample.source, np.ndarray | bytes | bytearray | memoryview):
        return f"image-{index}"
    return str(sample.source)


def _to_uint8(batch: torch.Tensor) -> torch.Tensor:
    return batch.mul(255.0).round_().to(torch.uint8)


def _empty(image_size: int) -> LabelledTensors:
    return LabelledTensors(
        torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.long),
        (),
        (),
    )


def stratified_split(
    keys: Sequence[str], validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (train, validation), stratified by class key.

    Stratifies by good / defect type when every class has at least two rows and the validation
    share can hold one of each; otherwise by good / defect only.

    Raises:
        DatasetError: Fewer than two good or two defective images.
    """
    binary = ["good" if k == GOOD else "defect" for k in keys]
    counts = Counter(binary)
    if counts["good"] < 2 or counts["defect"] < 2:
        raise DatasetError(
            f"Need at least 2 good and 2 defective images to train and validate, got "
            f"{counts['good']} good and {counts['defect']} defective"
        )
    index = np.arange(len(keys))
    for strata in (list(keys), binary):
        try:
            train, validation = train_test_split(
                index, test_size=validation_fraction, random_state=seed, stratify=strata
            )
        except ValueError:
            continue
        if {binary[i] for i in validation} == {"good", "defect"}:
            return np.sort(train), np.sort(validation)
    raise DatasetError(
        f"Cannot hold out a validation set with both classes from {len(keys)} images "
        f"(validation_fraction={validation_fraction}); label more images"
    )


def epoch_order(
    is_defect: torch.Tensor, balance: Balance, generator: torch.Generator
) -> torch.Tensor:
    """Row order of one epoch: balanced draws with replacement, or a plain shuffle.

    Args:
        is_defect: (N,) 0/1 labels.
        balance: ``"sampler"``: ``WeightedRandomSampler`` with weights 1 / class count, so
            good and defect are drawn equally often; ``"class_weights"``: a permutation.
        generator: Random source.

    Returns:
        (N,) int64 row indices.
    """
    n = int(is_defect.numel())
    if balance == "class_weights":
        return torch.randperm(n, generator=generator)
    n_defect = float(is_defect.sum())
    weights = torch.where(is_defect > 0.5, 1.0 / n_defect, 1.0 / (n - n_defect))
    sampler = torch.utils.data.WeightedRandomSampler(
        weights.double(), num_samples=n, replacement=True, generator=generator
    )
    return torch.tensor(list(sampler), dtype=torch.long)


def augment(
    images: torch.Tensor, max_rotation_degrees: float, flips: bool, generator: torch.Generator
) -> torch.Tensor:
    """Defect-preserving augmentation: random flips and a small rotation, no crop or colour.

    Rotation uses reflection padding, so no black corners appear that could look like defects.

    Args:
        images: (B, 3, S, S) float in [0, 1].
        max_rotation_degrees: Rotations are uniform in +-this.
        flips: Random horizontal and vertical flips.
        generator: Random source (CPU).

    Returns:
        (B, 3, S, S) augmented images on the input's device.
    """
    b = images.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_rotation_degrees)
    sx = torch.ones(b)
    sy = torch.ones(b)
    if flips:
        sx = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        sy = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin * sy
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, cos * sy
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
