"""Reconstruction autoencoder maths as a plain ``nn.Module``.

A small convolutional autoencoder is trained from scratch on good images only. Stride-2
convolutions (BatchNorm, LeakyReLU) squeeze the image into a narrow spatial bottleneck; a
mirrored decoder of bilinear upsampling + convolution rebuilds it, ending in a sigmoid. Parts it
has never seen (defects) are rebuilt badly, so the per-pixel squared reconstruction error,
averaged over channels and Gaussian-smoothed, is the anomaly map. The image score is the mean
of the top ``top_fraction`` of map values, which is steadier than the single maximum.

:meth:`AutoencoderModel.embedding` gives one global vector per image (the bottleneck features
pooled where the anomaly map is high, minus their plain mean; see
:func:`adcore.detectors.pooling.anomaly_focused_embedding`). It is measured by
bench/neighbour_types.py but not stored by the detector: it does not separate defect types.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adcore.detectors.patchcore.torch_model import gaussian_smooth
from adcore.detectors.pooling import anomaly_focused_embedding


def _down(cin: int, cout: int) -> nn.Sequential:
    """Halve the resolution: (B, cin, H, W) -> (B, cout, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    """Double the resolution: (B, cin, H, W) -> (B, cout, 2H, 2W)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class AutoencoderModel(nn.Module):
    """Convolutional autoencoder with reconstruction-error scoring.

    Stage ``i`` of the encoder has ``min(base_channels * 2**i, max_channels)`` channels; the
    bottleneck is ``latent_channels`` x (S / 2**depth) x (S / 2**depth).

    Args:
        image_size: Side S of the square input; must be divisible by ``2**depth``.
        depth: Number of stride-2 encoder stages (and of decoder upsamplings).
        base_channels: Channels of the first encoder stage.
        max_channels: Cap on the channels of any stage.
        latent_channels: Channels of the bottleneck.
        blur_sigma: Gaussian smoothing of the anomaly map, in input pixels.
        top_fraction: Share of the highest map values averaged into the image score.
    """

    def __init__(
        self,
        image_size: int = 256,
        *,
        depth: int = 5,
        base_channels: int = 16,
        max_channels: int = 128,
        latent_channels: int = 32,
        blur_sigma: float = 4.0,
        top_fraction: float = 0.01,
    ) -> None:
        super().__init__()
        if depth < 1 or image_size % (2**depth) != 0:
            raise ValueError(f"image_size {image_size} is not divisible by 2**depth = {2**depth}")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        self.image_size = image_size
        self.blur_sigma = blur_sigma
        self.top_fraction = top_fraction
        widths = [min(base_channels * 2**i, max_channels) for i in range(depth)]
        self.encoder = nn.Sequential(
            *[_down(cin, cout) for cin, cout in zip([3, *widths[:-1]], widths, strict=True)],
            nn.Conv2d(widths[-1], latent_channels, 1, bias=False),
            nn.BatchNorm2d(latent_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )
        rev = widths[::-1]
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, rev[0], 1, bias=False),
            nn.BatchNorm2d(rev[0]),
            nn.LeakyReLU(0.2, inplace=True),
            *[_up(cin, cout) for cin, cout in zip(rev[:-1], rev[1:], strict=True)],
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(widths[0], 3, 3, padding=1),
            nn.Sigmoid(),
        )

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Encode and decode.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            (B, 3, S, S) reconstruction in [0, 1].
        """
        return self.decoder(self.encoder(images))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Bottleneck features.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            (B, latent_channels, S / 2**depth, S / 2**depth) features.
        """
        return self.encoder(images)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Rebuild images from bottleneck features.

        Args:
            latent: (B, latent_channels, s, s) features from :meth:`encode`.

        Returns:
            (B, 3, S, S) reconstruction in [0, 1].
        """
        return self.decoder(latent)

    def embedding(self, latent: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """One global vector per image: bottleneck features focused on the anomalous area.

        Args:
            latent: (B, C, s, s) bottleneck features of the images.
            maps: (B, S, S) their anomaly maps (area-averaged down to s x s as patch scores).

        Returns:
            (B, C) float32 vectors.
        """
        patch_scores = F.adaptive_avg_pool2d(maps.float()[:, None], latent.shape[-2:])[:, 0]
        return anomaly_focused_embedding(latent, patch_scores)

    def score_and_embed(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score a batch and give each image one global feature vector, in one pass.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            ((B,) image scores, (B, S, S) smoothed anomaly maps, (B, C) float32 vectors).
        """
        latent = self.encode(images)
        maps = self.anomaly_maps(images, self.decode(latent))
        return self.image_scores(maps), maps, self.embedding(latent, maps)

    def anomaly_maps(self, images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """Smoothed per-pixel reconstruction error.

        Args:
            images: (B, 3, S, S) inputs in [0, 1].
            reconstruction: (B, 3, S, S) their reconstructions.

        Returns:
            (B, S, S) float32 maps: squared error averaged over channels, then blurred.
        """
        err = (images.float() - reconstruction.float()).pow(2).mean(dim=1, keepdim=True)
        return gaussian_smooth(err, self.blur_sigma)[:, 0]

    def image_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """Mean of the top ``top_fraction`` of each map's values.

        Args:
            maps: (B, H, W) anomaly maps.

        Returns:
            (B,) image scores.
        """
        flat = maps.flatten(1)
        k = max(1, math.ceil(self.top_fraction * flat.shape[1]))
        return flat.topk(k, dim=1).values.mean(dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            ((B,) image scores, (B, S, S) smoothed anomaly maps).
        """
        maps = self.anomaly_maps(images, self.reconstruct(images))
        return self.image_scores(maps), maps


def reconstruction_loss(
    images: torch.Tensor, reconstruction: torch.Tensor, l1_weight: float = 0.1
) -> torch.Tensor:
    """Training loss: mean squared error plus a small L1 term.

    Args:
        images: (B, 3, S, S) targets in [0, 1].
        reconstruction: (B, 3, S, S) reconstructions.
        l1_weight: Weight of the L1 term.

    Returns:
        () scalar loss.
    """
    images, reconstruction = images.float(), reconstruction.float()
    loss = F.mse_loss(reconstruction, images)
    if l1_weight:
        loss = loss + l1_weight * F.l1_loss(reconstruction, images)
    return loss
