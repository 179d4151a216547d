"""Autoencoder detector: train, score, fine-tune and save/load around :class:`AutoencoderModel`."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from adcore.detectors.autoencoder.torch_model import AutoencoderModel, reconstruction_loss
from adcore.detectors.base import (
    BatchDetector,
    FitReport,
    ImageSource,
    Progress,
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
    to_tensor_batch,
    training_set_hash,
)
from adcore.errors import DatasetError, ModelFileError


@dataclass(frozen=True)
class AutoencoderConfig:
    """Hyper-parameters of an autoencoder detector.

    Attributes:
        image_size: Side of the square model input, in pixels (divisible by ``2**depth``).
        depth: Stride-2 encoder stages; the bottleneck is ``image_size / 2**depth`` wide.
        base_channels: Channels of the first encoder stage (doubled per stage).
        max_channels: Cap on the channels of any stage.
        latent_channels: Channels of the bottleneck.
        blur_sigma: Anomaly-map smoothing, in input pixels.
        top_fraction: Share of the highest map values averaged into the image score.
        train_steps: Optimizer steps of a fit (a fixed budget, whatever the number of images);
            500 steps of 16 images at 256 px take about 100 s on 2 CPU cores.
        batch_size: Images per step, and per forward pass when scoring.
        learning_rate: Adam learning rate at the start of the fit (cosine decay to 0).
        l1_weight: Weight of the L1 term added to the MSE loss.
        flip_augment: Random horizontal and vertical flips while training.
        update_steps: Fine-tuning steps of :meth:`Autoencoder.update`.
        update_learning_rate: Adam learning rate of :meth:`Autoencoder.update`.
        calibration_fraction: Share of good training images held out to set the first threshold
            (they are learnt afterwards through :meth:`Autoencoder.update`).
        good_quantile: Quantile of held-out good scores used as the first threshold.
        seed: Random seed (weights, batch order, augmentation, calibration split).
    """

    image_size: int = 256
    depth: int = 5
    base_channels: int = 8
    max_channels: int = 128
    latent_channels: int = 32
    blur_sigma: float = 4.0
    top_fraction: float = 0.01
    train_steps: int = 500
    batch_size: int = 16
    learning_rate: float = 1e-3
    l1_weight: float = 0.1
    flip_augment: bool = True
    update_steps: int = 10
    update_learning_rate: float = 1e-4
    calibration_fraction: float = 0.1
    good_quantile: float = 0.99
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderConfig:
        """The config saved in a model file; unknown keys are ignored."""
        return cls(**known_fields(cls, data))


class Autoencoder(BatchDetector):
    """A one-class detector that flags what it cannot reconstruct.

    Args:
        config: Hyper-parameters.
        device: Torch device; CUDA when available by default (mixed precision on CUDA only).
    """

    kind = "autoencoder"

    def __init__(self, config: AutoencoderConfig | None = None, *, device: str | None = None):
        self.config = config or AutoencoderConfig()
        self.device = torch.device(device) if device else default_device()
        self.model = self._build()
        self.threshold: float | None = None
        self.training_hash: str | None = None
        self.training_digests: list[str] = []

    def _build(self) -> AutoencoderModel:
        """A freshly initialised module; the weights depend on ``config.seed`` only."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            model = AutoencoderModel(
                c.image_size,
                depth=c.depth,
                base_channels=c.base_channels,
                max_channels=c.max_channels,
                latent_channels=c.latent_channels,
                blur_sigma=c.blur_sigma,
                top_fraction=c.top_fraction,
            )
        # channels_last roughly halves the CPU (oneDNN) convolution time.
        return model.to(self.device, memory_format=torch.channels_last).eval()

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 or float -> float in [0, 1], on the device, channels_last."""
        x = pixels.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    def _stack(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, 3, S, S) uint8 CPU tensor of resized images (4x smaller than float)."""
        out = []
        for start in range(0, len(images), 64):
            x = to_tensor_batch(images[start : start + 64], self.config.image_size)
            out.append(x.mul_(255.0).round_().to(torch.uint8))
        return torch.cat(out)

    def _train(
        self,
        data: torch.Tensor,
        steps: int,
        lr: float,
        *,
        seed: int,
        freeze_norm: bool,
        progress: Progress | None = None,
    ) -> list[float]:
        """Optimise the reconstruction loss.

        Args:
            data: (N, 3, S, S) uint8 training images.
            steps: Optimizer steps.
            lr: Initial Adam learning rate (cosine decay to 0 over ``steps``).
            seed: Seed of the batch order and flips.
            freeze_norm: Keep BatchNorm statistics fixed (fine-tuning on a few images).
            progress: Called after every step.

        Returns:
            The loss of every step.
        """
        tell = report(progress)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.model.train()
        if freeze_norm:
            for m in self.model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        losses: list[float] = []
        try:
            for step, idx in enumerate(_batches(len(data), self.config.batch_size, steps, gen)):
                x = data[idx]
                if self.config.flip_augment:
                    x = _random_flips(x, gen)
                x = self._inputs(x)
                opt.zero_grad(set_to_none=True)
                with self._autocast():
                    loss = reconstruction_loss(
                        x, self.model.reconstruct(x), l1_weight=self.config.l1_weight
                    )
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                losses.append(float(loss.detach()))
                tell((step + 1) / steps, f"Training step {step + 1}/{steps}, loss {losses[-1]:.5f}")
        finally:
            self.model.eval()
        return losses

    # ------------------------------------------------------------------ fit
    def fit(self, sources: Sequence[ImageSource], progress: Progress | None = None) -> FitReport:
        """Train from scratch on good images.

        A share of the images (``calibration_fraction``) is held out: their scores set the first
        threshold (the ``good_quantile`` rule), then they are learnt through :meth:`update`.

        Args:
            sources: Good images (paths, bytes or arrays). Bad files are skipped and reported.
            progress: Optional callback ``progress(fraction, message)``, called every step.

        Returns:
            A :class:`FitReport`; ``details`` has the step losses and the calibration threshold.
        """
        start = time.perf_counter()
        tell = report(progress)
        c = self.config
        loaded, skipped = load_many(sources)
        if not loaded:
            raise DatasetError("No usable good image to fit on" + refused_reason(skipped))
        calibration, train = split_calibration(loaded, c.calibration_fraction, c.seed)

        tell(0.0, f"Preparing {len(train)} training images")
        data = self._stack([im.pixels for im in train])
        self.model = self._build()
        self.threshold = self.calibrated_threshold = None
        losses = self._train(
            data,
            c.train_steps,
            c.learning_rate,
            seed=c.seed,
            freeze_norm=False,
            progress=scaled_progress(tell, 0.0, 0.9),
        )
        self.training_digests = [im.sha256 for im in train]
        details: dict[str, Any] = {
            "train_steps": c.train_steps,
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "losses": losses,
        }
        if calibration:
            self._calibrate(calibration, details, tell, at=0.9, learn_message_at=0.95)
        self.training_hash = training_set_hash(self.training_digests)
        details["threshold"] = self.threshold
        tell(1.0, "Fit done")
        return FitReport(len(loaded), time.perf_counter() - start, details, tuple(skipped))

    # ------------------------------------------------------------------ update
    def update(
        self, sources: Sequence[ImageSource], *, digests: Sequence[str] | None = None
    ) -> int:
        """Fine-tune briefly on confirmed-good images, without a refit.

        ``update_steps`` Adam steps at ``update_learning_rate`` on the new images only, with the
        BatchNorm statistics frozen (a handful of images would skew them). The threshold is
        kept as it is.

        Args:
            sources: Good images.
            digests: Their sha256 digests, when already known.

        Returns:
            The number of images used.
        """
        loaded, skipped = load_many(sources)
        if not loaded:
            raise DatasetError("No usable image to add" + refused_reason(skipped))
        data = self._stack([im.pixels for im in loaded])
        self._train(
            data,
            self.config.update_steps,
            self.config.update_learning_rate,
            seed=self.config.seed + 1 + len(self.training_digests),
            freeze_norm=True,
        )
        self._add_training_digests(loaded, digests)
        return len(loaded)

    # ------------------------------------------------------------------ predict
    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and maps; predictions carry no embedding.

        The bottleneck vectors (:meth:`AutoencoderModel.embedding`) do not tell defect types
        apart: on Magnetic tile their nearest confirmed defects named the right type for about
        40% of defects and named one anyway for most defects of an unseen type
        (bench/RESULTS_explain.md), so no "resembles" fact is offered for this detector.
        """
        self.model.eval()
        x = self._inputs(x)
        with self._autocast():
            recon = self.model.reconstruct(x)
        maps = self.model.anomaly_maps(x, recon)
        return self.model.image_scores(maps), maps

    # ------------------------------------------------------------------ persistence
    def save(
        self,
        directory: str | os.PathLike,
        *,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write ``model.safetensors`` (the state dict) + ``config.json``."""
        if self.training_hash is None:
            raise ModelFileError("Refusing to save an unfitted model")
        save_fitted(
            self,
            directory,
            config=asdict(self.config),
            tensors=dict(self.model.state_dict()),
            extra=extra,
            overwrite=overwrite,
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        device: str | None = None,
        expected_training_hash: str | None = None,
    ) -> Autoencoder:
        """Rebuild a saved detector, refusing anything that does not verify."""
        saved, detector = load_and_build(
            directory,
            cls.kind,
            expected_training_hash,
            lambda config: cls(AutoencoderConfig.from_dict(config), device=device),
        )
        try:
            detector.model.load_state_dict(saved.tensors, strict=True)
        except RuntimeError as err:
            raise ModelFileError(
                f"{directory}: weights do not match the saved config: {err}"
            ) from err
        restore_fitted_identity(detector, saved.document, directory)
        return detector


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index batches of ``min(batch_size, n)``, walking reshuffled epochs."""
    size = min(batch_size, n)
    pending = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if pending.numel() < size:
            pending = torch.cat([pending, torch.randperm(n, generator=gen)])
        yield pending[:size]
        pending = pending[size:]


def _random_flips(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each (3, S, S) image of a (B, 3, S, S) batch left-right and/or up-down at random."""
    x = x.clone()
    for dim in (-1, -2):
        pick = torch.rand(x.shape[0], generator=gen) < 0.5
        x[pick] = x[pick].flip(dim)
    return x
