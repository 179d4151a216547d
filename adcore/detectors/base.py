"""What every detector shares: typed results, image preparation and the batch-loading contract."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adcore.errors import ImageLoadError, ModelFileError
from adcore.image_io import ImageLimits, load_image
from adcore.map_scale import STORED_KEY as MAP_CALIBRATION_KEY
from adcore.map_scale import MapCalibration, measure_map_calibration
from adcore.persistence import SavedModel, load_model, save_model
from adcore.thresholds import select_threshold
from adcore.verdicts import is_flagged

ImageSource = str | os.PathLike | bytes | np.ndarray
"""A path, raw file bytes, or an already decoded (H, W, 3) uint8 RGB array."""

T = TypeVar("T")

Progress = Callable[[float, str], None]
"""Progress callback: ``progress(fraction_done, message)`` with fraction in [0, 1]."""


def _no_progress(_fraction: float, _message: str) -> None:
    return None


@dataclass(frozen=True)
class ScoredImage:
    """One scored image: what a detector's ``predict`` returns for each image.

    (Not :class:`db.Prediction`, the stored row a service writes from it.)

    Attributes:
        score: Image anomaly score; higher is more anomalous.
        anomaly_map: (S, S) float32 per-pixel anomaly score at the model's input resolution, or
            (H, W) at the image's own size for models that score in tiles (:mod:`adcore.tiling`).
        threshold: The decision threshold in force when scored, or None if none is set.
        embedding: (D,) float32 global feature vector of the image, computed in the same pass
            (for "resembles confirmed defects", :mod:`adcore.explain.neighbours`), or None for
            models that give none.
    """

    score: float
    anomaly_map: np.ndarray
    threshold: float | None = None
    embedding: np.ndarray | None = None

    @property
    def is_defect(self) -> bool | None:
        """Whether the part is flagged (:func:`adcore.verdicts.is_flagged`); None without one."""
        return None if self.threshold is None else is_flagged(self.score, self.threshold)

    def map_resized(self, height: int, width: int) -> np.ndarray:
        """The anomaly map resized (bilinear) to an original image's size.

        Returns:
            (height, width) float32 array.
        """
        t = torch.from_numpy(np.ascontiguousarray(self.anomaly_map))[None, None]
        return F.interpolate(t, size=(height, width), mode="bilinear")[0, 0].numpy()


@dataclass(frozen=True)
class FitReport:
    """What a fit did.

    Attributes:
        n_images: Images used.
        seconds: Wall time of the fit.
        details: Detector-specific facts (memory bank size, losses, ...).
        skipped: (name, reason) for every input that could not be loaded.
    """

    n_images: int
    seconds: float
    details: dict = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input with its identity.

    Attributes:
        name: Display name (file name, or ``image-<i>`` for arrays and bytes).
        pixels: (H, W, 3) uint8 RGB.
        sha256: Hex digest of the original bytes (of the array bytes for arrays).
    """

    name: str
    pixels: np.ndarray
    sha256: str


def load_many(
    sources: Sequence[ImageSource], limits: ImageLimits | None = None
) -> tuple[list[LoadedImage], list[tuple[str, str]]]:
    """Decode a batch, keeping going past bad files.

    Args:
        sources: Paths, bytes or (H, W, 3) uint8 arrays.
        limits: Header limits for file inputs.

    Returns:
        (the images that loaded, in input order; (name, message) of each that did not).
    """
    loaded: list[LoadedImage] = []
    failures: list[tuple[str, str]] = []
    for i, source in enumerate(sources):
        if isinstance(source, np.ndarray):
            name = f"image-{i}"
            try:
                pixels = _check_array(source, name)
            except ImageLoadError as err:
                failures.append((name, str(err)))
                continue
            digest = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
            loaded.append(LoadedImage(name, pixels, digest))
            continue
        if isinstance(source, bytes | bytearray | memoryview):
            name, data = f"image-{i}", bytes(source)
        else:
            name = Path(source).name
            data = None
        try:
            pixels = load_image(source if data is None else data, limits=limits, name=name)
            if data is None:
                data = Path(source).read_bytes()
        except ImageLoadError as err:
            failures.append((name, str(err)))
            continue
        loaded.append(LoadedImage(name, pixels, hashlib.sha256(data).hexdigest()))
    return loaded, failures


def _check_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageLoadError(
            f"{name}: expected an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}"
        )
    return np.ascontiguousarray(array)


def training_set_hash(digests: Sequence[str]) -> str:
    """Order-independent hash of a training set, from its images' sha256 digests."""
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def known_fields(
    config_class: type, data: dict[str, Any], tuples: Sequence[str] = ()
) -> dict[str, Any]:
    """The entries of a saved config dict that a config dataclass has (others are dropped).

    Args:
        config_class: The dataclass.
        data: The saved config (JSON: tuples come back as lists).
        tuples: Fields to turn back into tuples where present.
    """
    known = {k: v for k, v in data.items() if k in config_class.__dataclass_fields__}
    for name in tuples:
        if name in known:
            known[name] = tuple(known[name])
    return known


def split_calibration(
    loaded: Sequence[LoadedImage], fraction: float, seed: int
) -> tuple[list[LoadedImage], list[LoadedImage]]:
    """Hold out a random share of the good images to set the first threshold.

    Args:
        loaded: The good images.
        fraction: Share to hold out (none when that would leave nothing to fit on).
        seed: Seed of the random choice.

    Returns:
        (the held-out images, the rest), each in input order.
    """
    n_cal = int(len(loaded) * fraction)
    if len(loaded) - n_cal < 1:
        n_cal = 0
    order = np.random.default_rng(seed).permutation(len(loaded))
    return [loaded[i] for i in sorted(order[:n_cal])], [loaded[i] for i in sorted(order[n_cal:])]


def fitted_identity(model: Any) -> dict[str, Any]:
    """The ``config.json`` fields every saved model carries: thresholds and training set.

    ``calibrated_threshold`` is the threshold the fit itself set from held-out good images
    (None when the fit set none, and for models saved before it was recorded); ``threshold``
    is the one in force, which recalibration or a manager may have moved. Detectors that
    measured their maps on those images also carry the ``map_calibration`` their maps are
    coloured by (:mod:`adcore.map_scale`).
    """
    identity = {
        "threshold": model.threshold,
        "calibrated_threshold": getattr(model, "calibrated_threshold", None),
        "training_hash": model.training_hash,
        "training_digests": model.training_digests,
    }
    calibration: MapCalibration | None = getattr(model, "map_calibration", None)
    if calibration is not None:
        identity[MAP_CALIBRATION_KEY] = calibration.to_json()
    return identity


def save_fitted(
    model: Any,
    directory: str | os.PathLike,
    *,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    facts: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Save a fitted model of ``model.kind`` (see :func:`adcore.persistence.save_model`).

    ``config.json`` gets the model's own ``facts``, its :func:`fitted_identity`, then the
    caller's ``extra`` (which wins on a clash).
    """
    save_model(
        directory,
        kind=model.kind,
        config=config,
        tensors=tensors,
        extra={**(facts or {}), **fitted_identity(model), **(extra or {})},
        overwrite=overwrite,
    )


def load_and_build(
    directory: str | os.PathLike,
    kind: str,
    expected_training_hash: str | None,
    build: Callable[[dict[str, Any]], T],
) -> tuple[SavedModel, T]:
    """Load a saved model's files and build an empty model from its saved config.

    Args:
        directory: The saved model's folder.
        kind: The expected kind.
        expected_training_hash: Refuse a model fitted on another training set.
        build: Makes the model from the saved config dict.

    Returns:
        (the verified saved files, the model built from their config).

    Raises:
        ModelFileError: The files do not verify, or the config does not describe a model.
    """
    saved = load_model(directory, kind=kind, expected_training_hash=expected_training_hash)
    try:
        return saved, build(saved.config)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{directory}: config does not describe a model: {err}") from err


def restore_fitted_identity(model: Any, document: dict[str, Any], directory: object) -> None:
    """Set threshold and training set from a loaded ``config.json``, checking the hash.

    Raises:
        ModelFileError: If the training-set hash does not match the listed digests.
    """
    digests = [str(d) for d in document.get("training_digests") or []]
    stored = document.get("training_hash")
    if (digests or stored) and stored != training_set_hash(digests):
        raise ModelFileError(f"{directory}: training-set hash does not match its digests")
    model.threshold = document.get("threshold")
    model.calibrated_threshold = document.get("calibrated_threshold")
    if MAP_CALIBRATION_KEY in document:  # absent from models saved before it was measured
        model.map_calibration = MapCalibration.from_json(document[MAP_CALIBRATION_KEY])
    model.training_hash = stored
    model.training_digests = digests


def to_tensor_batch(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Resize images to a square model input.

    Args:
        images: (H, W, 3) uint8 RGB arrays of any sizes.
        size: Output side S.

    Returns:
        (B, 3, S, S) float32 in [0, 1].
    """
    resized = [
        np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
        for im in images
    ]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float().div_(255.0)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def refused_reason(skipped: Sequence[tuple[str, str]]) -> str:
    """A short suffix for an error message: how many inputs were refused, and one reason."""
    return "" if not skipped else f" ({len(skipped)} refused, e.g. {skipped[0][1]})"


def scaled_progress(tell: Progress, lo: float, hi: float) -> Progress:
    """A progress callback that maps [0, 1] onto [lo, hi] of ``tell``."""
    return lambda fraction, message: tell(lo + (hi - lo) * fraction, message)


def report(progress: Progress | None) -> Progress:
    """A callable progress reporter (a no-op when ``progress`` is None)."""
    return progress or _no_progress


class Scoring:
    """What every scoring model offers on top of its ``predict``: files in, a threshold set.

    Needs ``predict(list of (H, W, 3) uint8 arrays) -> list of ScoredImage`` and a ``threshold``
    attribute.
    """

    threshold: float | None

    def predict_files(
        self, sources: Sequence[ImageSource]
    ) -> tuple[list[tuple[LoadedImage, ScoredImage]], list[tuple[str, str]]]:
        """Load and score a batch, reporting bad files instead of failing.

        Returns:
            ((image, prediction) for each loaded image; (name, message) for each refused one).
        """
        loaded, failures = load_many(sources)
        preds = self.predict([im.pixels for im in loaded]) if loaded else []
        return list(zip(loaded, preds, strict=True)), failures

    def with_threshold(self, threshold: float | None) -> Self:
        """Set the decision threshold and return self (for chaining)."""
        self.threshold = None if threshold is None else float(threshold)
        return self


class BatchDetector(Scoring):
    """What every detector wrapper shares: batched scoring, file scoring, the threshold.

    Subclasses set ``config`` (with ``batch_size`` and ``image_size``), ``device`` and
    ``threshold``, and implement :meth:`_score_batch`.
    """

    config: Any
    device: torch.device
    threshold: float | None
    calibrated_threshold: float | None = None
    """The threshold the fit set from held-out good images (never moved by recalibration)."""
    map_calibration: MapCalibration | None = None
    """How this detector's maps look on its held-out good images (None before it was measured)."""
    training_hash: str | None
    training_digests: list[str]

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score one batch.

        Args:
            x: (B, 3, S, S) RGB in [0, 1] on ``self.device``.

        Returns:
            ((B,) image scores, (B, S, S) anomaly maps).
        """
        raise NotImplementedError

    def _score_and_embed_batch(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Score one batch and give each image a global feature vector, in one pass.

        Detectors without feature vectors keep this default, which gives None.

        Args:
            x: (B, 3, S, S) RGB in [0, 1] on ``self.device``.

        Returns:
            ((B,) image scores, (B, S, S) anomaly maps, (B, D) vectors or None).
        """
        scores, maps = self._score_batch(x)
        return scores, maps, None

    def _input_batches(self, images: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, int]]:
        """Model inputs, ``batch_size`` images at a time.

        Yields:
            ((B, 3, S, S) RGB in [0, 1] on ``self.device``, images done after this batch).
        """
        bs = self.config.batch_size
        for start in range(0, len(images), bs):
            x = to_tensor_batch(images[start : start + bs], self.config.image_size)
            yield x.to(self.device), min(start + bs, len(images))

    def _calibrate(
        self,
        calibration: Sequence[LoadedImage],
        details: dict[str, Any],
        tell: Progress,
        at: float,
        learn_message_at: float | None = None,
    ) -> None:
        """Set the first threshold from held-out good images, then learn them by ``update``.

        The same images' maps set the normal level of the map colour scale
        (:func:`adcore.map_scale.measure_map_calibration`).

        Args:
            calibration: The held-out good images.
            details: The fit's details; gets ``calibration_scores``.
            tell: Progress reporter.
            at: Progress fraction of the calibration message.
            learn_message_at: If given, the progress fraction of a "learning" message.
        """
        tell(at, f"Calibrating the threshold on {len(calibration)} held-out good images")
        predictions = self.predict([im.pixels for im in calibration])
        cal_scores = np.array([p.score for p in predictions])
        choice = select_threshold(cal_scores, good_quantile=self.config.good_quantile)
        self.threshold = self.calibrated_threshold = float(choice.value)
        self.map_calibration = measure_map_calibration(
            [p.anomaly_map for p in predictions], cal_scores.tolist()
        )
        details["calibration_scores"] = cal_scores.tolist()
        if learn_message_at is not None:
            tell(learn_message_at, f"Learning the {len(calibration)} held-out images")
        self.update([im.pixels for im in calibration], digests=[im.sha256 for im in calibration])

    def update(
        self, sources: Sequence[ImageSource], *, digests: Sequence[str] | None = None
    ) -> int:
        """Learn confirmed-good images without a refit (each detector's own way)."""
        raise NotImplementedError

    def _add_training_digests(
        self, loaded: Sequence[LoadedImage], digests: Sequence[str] | None
    ) -> None:
        """Count images into the training set (``digests`` when known) and rehash it."""
        self.training_digests += list(digests) if digests else [im.sha256 for im in loaded]
        self.training_hash = training_set_hash(self.training_digests)

    def predict(
        self, images: Sequence[np.ndarray], progress: Progress | None = None
    ) -> list[ScoredImage]:
        """Score decoded images.

        Args:
            images: (H, W, 3) uint8 RGB arrays (use :func:`load_many` for files).
            progress: Optional callback.

        Returns:
            One :class:`ScoredImage` per image, (S, S) float32 maps at ``image_size`` and, for
            models that give them, (D,) float32 embeddings.
        """
        tell = report(progress)
        out: list[ScoredImage] = []
        with torch.inference_mode():
            for x, done in self._input_batches(images):
                scores, maps, vectors = self._score_and_embed_batch(x)
                scores, maps = scores.float().cpu().numpy(), maps.float().cpu().numpy()
                rows = [None] * len(scores) if vectors is None else vectors.float().cpu().numpy()
                for s, m, v in zip(scores, maps, rows, strict=True):
                    out.append(ScoredImage(float(s), m.astype(np.float32), self.threshold, v))
                tell(done / len(images), f"Scored {done}/{len(images)} images")
        return out
