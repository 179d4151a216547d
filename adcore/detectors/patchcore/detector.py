"""PatchCore detector: fit, score, instant update and save/load around :class:`PatchCoreModel`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from adcore.combined_features import backbone_members
from adcore.coreset import greedy_coreset, two_stage_coreset
from adcore.detectors.base import (
    BatchDetector,
    FitReport,
    ImageSource,
    Progress,
    ScoredImage,
    default_device,
    known_fields,
    load_and_build,
    load_many,
    refused_reason,
    report,
    restore_fitted_identity,
    save_fitted,
    scaled_progress,
    split_calibration,
    training_set_hash,
)
from adcore.detectors.patchcore.torch_model import IMAGE_SCORES, PatchCoreModel
from adcore.detectors.tiled import predict_in_tiles, split_into_tiles
from adcore.errors import DatasetError, ModelFileError
from adcore.tiling import check_tiling


@dataclass(frozen=True)
class PatchCoreConfig:
    """Hyper-parameters of a PatchCore detector.

    Attributes:
        backbone: Backbone name (see :mod:`adcore.backbones`), or several joined by ``+``, whose
            patch features are concatenated (:mod:`adcore.combined_features`; the default reads
            EfficientNet-Lite0 and Lite2).
        layers: Backbone stages whose features are concatenated (the same for each backbone).
        image_size: Side of the square model input, in pixels.
        coreset_ratio: Fraction of training patches kept in the memory bank.
        num_neighbors: Neighbours for the image-score re-weighting.
        blur_sigma: Anomaly-map smoothing, in input pixels.
        image_score: How a part's score comes from its patch scores: ``"smoothed_max"`` (the
            default) or ``"reweighted_max"`` (PatchCore eq. 7, the rule of models saved before
            the option existed); see :mod:`adcore.detectors.patchcore.torch_model`.
        score_sigma: Blur of the patch-score grid for ``"smoothed_max"``, in patches.
        batch_size: Images per forward pass.
        oversample: Stage-2 pool size of the coreset selection, as a multiple of the bank size.
        calibration_fraction: Share of good training images held out to set the first threshold
            (they join the memory bank afterwards through :meth:`PatchCore.update`).
        good_quantile: Quantile of held-out good scores used as the first threshold.
        seed: Random seed.
        tile_size: Tile side in pixels for high-resolution parts: fit and score in overlapping
            tiles at native resolution, stitched (see :mod:`adcore.tiling`); None scores the
            whole image resized to ``image_size`` (models saved without it).
        tile_overlap: Least shared fraction of neighbouring tiles.
    """

    backbone: str = "efficientnet_lite0+efficientnet_lite2"
    layers: tuple[int, ...] = (2, 3)
    image_size: int = 256
    coreset_ratio: float = 0.01
    num_neighbors: int = 9
    blur_sigma: float = 4.0
    image_score: str = "smoothed_max"
    score_sigma: float = 1.0
    batch_size: int = 16
    oversample: int = 10
    calibration_fraction: float = 0.1
    good_quantile: float = 0.99
    seed: int = 0
    tile_size: int | None = None
    tile_overlap: float = 0.25

    def __post_init__(self) -> None:
        check_tiling(self.tile_size, self.tile_overlap)
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(
                f"Unknown image score {self.image_score!r}; choose one of {IMAGE_SCORES}"
            )
        if self.image_score == "reweighted_max" and len(backbone_members(self.backbone)) > 1:
            raise ValueError(
                "The re-weighted max reads one bank entry's neighbours, which several backbones "
                "do not share: use image_score='smoothed_max' with "
                f"{self.backbone!r}, or one backbone"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchCoreConfig:
        """A config from a dict (overrides of today's defaults); unknown keys are ignored."""
        return cls(**known_fields(cls, data, tuples=("layers",)))

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> PatchCoreConfig:
        """The config saved in a model file.

        Models saved before a field existed keep the behaviour they were fitted and calibrated
        with (:data:`SAVED_BEFORE`), not today's default.
        """
        return cls.from_dict({**SAVED_BEFORE, **data})


SAVED_BEFORE: dict[str, Any] = {"backbone": "efficientnet_lite0", "image_score": "reweighted_max"}
"""Config values of models saved before the field was written (their thresholds assume them)."""


class PatchCore(BatchDetector):
    """A one-class detector that learns normal patches from good images.

    Args:
        config: Hyper-parameters.
        device: Torch device; CUDA when available by default.
        pretrained: Load ImageNet backbone weights (False only in tests).
    """

    kind = "patchcore"

    def __init__(
        self,
        config: PatchCoreConfig | None = None,
        *,
        device: str | None = None,
        pretrained: bool = True,
    ) -> None:
        self.config = config or PatchCoreConfig()
        self.device = torch.device(device) if device else default_device()
        self.pretrained = pretrained
        self.model = (
            PatchCoreModel(
                self.config.backbone,
                self.config.layers,
                num_neighbors=self.config.num_neighbors,
                blur_sigma=self.config.blur_sigma,
                image_score=self.config.image_score,
                score_sigma=self.config.score_sigma,
                pretrained=pretrained,
            )
            .to(self.device)
            .eval()
        )
        self.threshold: float | None = None
        self.training_hash: str | None = None
        self.training_digests: list[str] = []
        self.coverage_radii: tuple[float, ...] | None = None
        """Each network's largest distance of a training patch to the bank (the update's stop)."""

    # ------------------------------------------------------------------ embedding
    def _embed(
        self,
        images: Sequence[np.ndarray],
        progress: Progress | None = None,
        what: str = "Embedding",
    ) -> torch.Tensor:
        """(N, P, D) patch embeddings of images (of their tiles when tiling), batch by batch."""
        tell = report(progress)
        if self.config.tile_size is not None:
            images = split_into_tiles(images, self.config.tile_size, self.config.tile_overlap)
        out = []
        with torch.inference_mode():
            for x, done in self._input_batches(images):
                emb = self.model.embed(x)
                b, d, h, w = emb.shape
                out.append(emb.permute(0, 2, 3, 1).reshape(b, h * w, d))
                tell(done / len(images), f"{what} {done}/{len(images)} images")
        return torch.cat(out)

    # ------------------------------------------------------------------ fit
    def fit(self, sources: Sequence[ImageSource], progress: Progress | None = None) -> FitReport:
        """Learn normal appearance from good images.

        A share of the images (``calibration_fraction``) is held out: their scores set the first
        threshold (the ``good_quantile`` rule), then they join the bank through :meth:`update`.

        Args:
            sources: Good images (paths, bytes or arrays). Bad files are skipped and reported.
            progress: Optional callback ``progress(fraction, message)``.

        Returns:
            A :class:`FitReport`; ``details`` has the bank size and the calibration threshold.
        """
        start = time.perf_counter()
        tell = report(progress)
        loaded, skipped = load_many(sources)
        if not loaded:
            raise DatasetError("No usable good image to fit on" + refused_reason(skipped))
        calibration, train = split_calibration(
            loaded, self.config.calibration_fraction, self.config.seed
        )

        emb = self._embed([im.pixels for im in train], scaled_progress(tell, 0.0, 0.6))
        n_patches = emb.shape[0] * emb.shape[1]
        n_select = max(1, math.ceil(self.config.coreset_ratio * n_patches))
        tell(0.6, f"Selecting {n_select} of {n_patches} patches")
        # Each network's part of the embedding gets its own coreset (one for a single backbone);
        # bank row j holds every network's j-th pick side by side.
        picks = [
            part.reshape(n_patches, -1)[
                two_stage_coreset(
                    part, n_select, oversample=self.config.oversample, seed=self.config.seed
                )
            ]
            for part in emb.split(self.model.network_dims, dim=2)
        ]
        self.model.memory_bank = torch.cat(picks, dim=1).contiguous()
        tell(0.75, "Measuring the memory bank's coverage radius")
        squared, _ = self.model.nearest_per_network(emb.reshape(n_patches, -1))
        self.coverage_radii = tuple(float(d2.max().sqrt()) for d2 in squared)
        self.training_digests = [im.sha256 for im in train]
        details: dict[str, Any] = {"n_train_patches": n_patches}
        if calibration:
            self._calibrate(calibration, details, tell, at=0.85)
        self.training_hash = training_set_hash(self.training_digests)
        details["memory_bank_size"] = int(self.model.memory_bank.shape[0])
        details["threshold"] = self.threshold
        tell(1.0, "Fit done")
        return FitReport(len(loaded), time.perf_counter() - start, details, tuple(skipped))

    # ------------------------------------------------------------------ update
    def update(
        self, sources: Sequence[ImageSource], *, digests: Sequence[str] | None = None
    ) -> int:
        """Add confirmed-good images to the memory bank without a refit.

        Greedy selection continues from the current bank over the new images' patches until every
        new patch lies within the bank's coverage radius from the fit (or a 1-per-patch cap), so
        a part confirmed good stops looking anomalous while the bank grows only as needed.

        Args:
            sources: Good images.
            digests: Their sha256 digests, when already known.

        Returns:
            The number of patches added to the bank.
        """
        loaded, skipped = load_many(sources)
        if not loaded:
            raise DatasetError("No usable image to add" + refused_reason(skipped))
        emb = self._embed([im.pixels for im in loaded]).reshape(-1, self.model.embedding_dim)
        dims = self.model.network_dims
        # Models saved without radii: any new patch not already in the bank is added.
        radii = self.coverage_radii or (0.0,) * len(dims)
        bank = self.model.memory_bank
        picked = [
            greedy_coreset(
                part,
                part.shape[0],
                initial_centers=bank_part,
                stop_radius=radius,
                seed=self.config.seed,
            ).indices
            for part, bank_part, radius in zip(
                emb.split(dims, dim=1), bank.split(dims, dim=1), radii, strict=True
            )
        ]
        # A patch one network needs joins every network's part of the bank.
        added = picked[0] if len(picked) == 1 else torch.unique(torch.cat(picked))
        if added.numel():
            self.model.memory_bank = torch.cat([bank, emb[added]])
        self._add_training_digests(loaded, digests)
        return int(added.numel())

    # ------------------------------------------------------------------ predict
    def predict(
        self, images: Sequence[np.ndarray], progress: Progress | None = None
    ) -> list[ScoredImage]:
        """Score decoded images (see :meth:`BatchDetector.predict`).

        With ``tile_size`` set, each image is scored in tiles and its map is (H, W), the
        image's own size (:func:`adcore.detectors.tiled.predict_in_tiles`).
        """
        if self.config.tile_size is None:
            return super().predict(images, progress)
        return predict_in_tiles(
            super().predict, images, self.config.tile_size, self.config.tile_overlap, progress
        )

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x)

    def _score_and_embed_batch(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.model.score_and_embed(x)

    # ------------------------------------------------------------------ persistence
    def save(
        self,
        directory: str | os.PathLike,
        *,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write ``model.safetensors`` + ``config.json`` (see :mod:`adcore.persistence`)."""
        if self.model.memory_bank.shape[0] == 0:
            raise ModelFileError("Refusing to save an unfitted model")
        config = asdict(self.config)
        config["layers"] = list(self.config.layers)
        save_fitted(
            self,
            directory,
            config=config,
            tensors={"memory_bank": self.model.memory_bank},
            facts={
                "backbone": self.config.backbone,
                "coverage_radii": self.coverage_radii and list(self.coverage_radii),
            },
            extra=extra,
            overwrite=overwrite,
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        device: str | None = None,
        pretrained: bool = True,
        expected_training_hash: str | None = None,
    ) -> PatchCore:
        """Rebuild a saved detector, refusing anything that does not verify."""
        saved, detector = load_and_build(
            directory,
            cls.kind,
            expected_training_hash,
            lambda config: cls(
                PatchCoreConfig.from_saved(config), device=device, pretrained=pretrained
            ),
        )
        config = detector.config
        bank = saved.tensors.get("memory_bank")
        if bank is None or bank.ndim != 2 or bank.shape[1] != detector.model.embedding_dim:
            raise ModelFileError(
                f"{directory}: memory bank shape {None if bank is None else tuple(bank.shape)} "
                f"does not match backbone {config.backbone} (D={detector.model.embedding_dim})"
            )
        restore_fitted_identity(detector, saved.document, directory)
        detector.model.memory_bank = bank.to(detector.device)
        detector.coverage_radii = saved_coverage_radii(saved.document)
        return detector


def saved_coverage_radii(document: dict[str, Any]) -> tuple[float, ...] | None:
    """A saved model's coverage radii (models saved before several backbones kept one)."""
    radii = document.get("coverage_radii")
    if radii is not None:
        return tuple(float(r) for r in radii)
    single = document.get("coverage_radius")
    return None if single is None else (float(single),)
