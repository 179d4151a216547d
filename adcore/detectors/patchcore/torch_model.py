"""PatchCore maths as a plain ``nn.Module``.

After Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022.
Mid-level features of a frozen ImageNet backbone are aggregated over a 3x3 neighbourhood,
upsampled to the finest chosen stage and concatenated into one patch embedding per location.
The memory bank (a registered buffer) holds a coreset of training patch embeddings. A test
patch's anomaly score is its distance to the nearest bank entry. With several backbones (Loupe's
default reads EfficientNet-Lite0 and Lite2, :mod:`adcore.combined_features`), each network's
part of the embedding has its own coreset and its own nearest entry, and the patch's score is the
root of the sum of the networks' squared distances. The image score is, by ``image_score``:

* ``"smoothed_max"`` (Loupe's default since issue 13): the largest value of the patch-score grid
  after a Gaussian blur of ``score_sigma`` patches, so one noisy patch weighs less than a defect
  that spans a few neighbouring patches (bench/RESULTS_screening.md);
* ``"reweighted_max"``: the largest patch score re-weighted by how isolated its nearest bank entry
  is (PatchCore eq. 7; the default before, kept for models saved then).

Each scored image also gets one global feature vector (:meth:`PatchCoreModel.score_and_embed`):
its patch embeddings pooled where the patch scores are high, minus their plain mean (see
:func:`adcore.detectors.pooling.anomaly_focused_embedding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adcore.combined_features import build_extractor
from adcore.detectors.pooling import anomaly_focused_embedding


class PatchCoreModel(nn.Module):
    """Feature embedding, memory bank and nearest-neighbour scoring.

    Args:
        backbone: Backbone name (see :mod:`adcore.backbones`), or several joined by ``+``
            (see :mod:`adcore.combined_features`).
        layers: Backbone stages to use (of each backbone).
        num_neighbors: Bank neighbours used by the image-score re-weighting.
        blur_sigma: Gaussian smoothing of the anomaly map, in input pixels.
        image_score: ``"smoothed_max"`` or ``"reweighted_max"`` (see the module docstring).
        score_sigma: Blur of the patch-score grid for ``"smoothed_max"``, in patches.
        pretrained: Load ImageNet weights (False only in tests).
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[int] | None = None,
        *,
        num_neighbors: int = 9,
        blur_sigma: float = 4.0,
        image_score: str = "smoothed_max",
        score_sigma: float = 1.0,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        if image_score not in IMAGE_SCORES:
            raise ValueError(f"Unknown image score {image_score!r}; choose one of {IMAGE_SCORES}")
        self.extractor = build_extractor(backbone, layers, pretrained=pretrained)
        self.num_neighbors = num_neighbors
        self.blur_sigma = blur_sigma
        self.image_score = image_score
        self.score_sigma = score_sigma
        self.register_buffer("memory_bank", torch.empty(0, self.embedding_dim))

    @property
    def embedding_dim(self) -> int:
        """D, the length of one patch embedding."""
        return int(sum(self.extractor.channels))

    @property
    def network_dims(self) -> tuple[int, ...]:
        """How many of D each backbone gives, in order (one entry for a single backbone)."""
        members = getattr(self.extractor, "members", None)
        if members is None:
            return (self.embedding_dim,)
        return tuple(int(sum(member.channels)) for member in members)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings.

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            (B, D, h, w) embeddings, h = H / stride of the first chosen stage.
        """
        feats = [
            F.avg_pool2d(f.contiguous(), 3, stride=1, padding=1) for f in self.extractor(images)
        ]
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        return torch.cat(feats, dim=1)

    def nearest(
        self, patches: torch.Tensor, chunk: int = 16384
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance to, and index of, the nearest memory-bank entry.

        With several backbones, each network's part of a patch is matched against the same part
        of every bank row on its own, and the distance is the root of the sum of the networks'
        squared nearest distances: a patch is normal when each network finds something like it
        among the good patches. (Each network's part of the bank is its own coreset, so a bank
        row is not one training patch; see :meth:`PatchCore.fit`.)

        Args:
            patches: (N, D) embeddings.
            chunk: Rows per block, to bound memory.

        Returns:
            ((N,) distances, (N,) int64 bank indices: the first network's nearest row).
        """
        squared, index = self.nearest_per_network(patches, chunk)
        return torch.stack(squared).sum(0).sqrt_(), index

    def nearest_per_network(
        self, patches: torch.Tensor, chunk: int = 16384
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each network's squared distance to its nearest part of a bank row.

        Args:
            patches: (N, D) embeddings.
            chunk: Rows per block, to bound memory.

        Returns:
            (one (N,) tensor of squared distances per network, (N,) int64 bank indices of the
            first network's nearest row).
        """
        if self.memory_bank.shape[0] == 0:
            raise RuntimeError("The memory bank is empty: fit the model first")
        dims = self.network_dims
        banks = self.memory_bank.split(dims, dim=1)
        banks_sq = [(bank * bank).sum(1) for bank in banks]
        squared: list[list[torch.Tensor]] = [[] for _ in dims]
        index = []
        for block in patches.split(chunk):
            parts = block.split(dims, dim=1)
            for net, (part, bank, bank_sq) in enumerate(zip(parts, banks, banks_sq, strict=True)):
                # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, one matrix product per block.
                d2, i = torch.addmm(bank_sq, part, bank.T, alpha=-2.0).min(dim=1)
                squared[net].append((d2 + (part * part).sum(1)).clamp_min_(0.0))
                if net == 0:
                    index.append(i)
        return [torch.cat(parts) for parts in squared], torch.cat(index)

    def image_scores(
        self,
        embeddings: torch.Tensor,
        patch_scores: torch.Tensor,
        nn_index: torch.Tensor,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        """Image scores by the model's ``image_score`` rule.

        Args:
            embeddings: (B, P, D) patch embeddings.
            patch_scores: (B, P) nearest-neighbour distances, P = h * w.
            nn_index: (B, P) bank index of each patch's nearest neighbour.
            grid: (h, w), the patch grid.

        Returns:
            (B,) image scores.
        """
        if self.image_score == "smoothed_max":
            return smoothed_max(patch_scores.view(-1, 1, *grid), self.score_sigma)
        return self.reweighted_max(embeddings, patch_scores, nn_index)

    def reweighted_max(
        self, embeddings: torch.Tensor, patch_scores: torch.Tensor, nn_index: torch.Tensor
    ) -> torch.Tensor:
        """PatchCore's re-weighted image score (eq. 7).

        Args:
            embeddings: (B, P, D) patch embeddings.
            patch_scores: (B, P) nearest-neighbour distances.
            nn_index: (B, P) bank index of each patch's nearest neighbour.

        Returns:
            (B,) image scores.
        """
        b = torch.arange(patch_scores.shape[0], device=patch_scores.device)
        worst = patch_scores.argmax(dim=1)  # (B,)
        score = patch_scores[b, worst]
        feature = embeddings[b, worst]  # (B, D)
        anchor = self.memory_bank[nn_index[b, worst]]  # (B, D)
        k = min(self.num_neighbors, self.memory_bank.shape[0])
        support = torch.cdist(anchor, self.memory_bank).topk(k, largest=False).indices  # (B, k)
        dist = torch.linalg.vector_norm(feature.unsqueeze(1) - self.memory_bank[support], dim=-1)
        weight = 1.0 - torch.softmax(dist, dim=1)[:, 0]
        return weight * score

    def score_and_embed(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score a batch and give each image one global feature vector, in one pass.

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            ((B,) image scores, (B, H, W) smoothed anomaly maps, (B, D) float32 global vectors:
            the anomaly-focused pooling of the patch embeddings by their patch scores).
        """
        emb = self.embed(images)
        bsz, dim, h, w = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(bsz, h * w, dim)
        dist, index = self.nearest(flat.reshape(-1, dim))
        dist, index = dist.view(bsz, h * w), index.view(bsz, h * w)
        scores = self.image_scores(flat, dist, index, (h, w))
        maps = F.interpolate(
            dist.view(bsz, 1, h, w), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        vectors = anomaly_focused_embedding(emb, dist.view(bsz, h, w))
        return scores, gaussian_smooth(maps, self.blur_sigma)[:, 0], vectors

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch.

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            ((B,) image scores, (B, H, W) smoothed anomaly maps).
        """
        scores, maps, _ = self.score_and_embed(images)
        return scores, maps


IMAGE_SCORES = ("smoothed_max", "reweighted_max")


def smoothed_max(grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """The largest value of a Gaussian-blurred patch-score grid.

    Args:
        grid: (B, 1, h, w) patch scores.
        sigma: Blur in patches; the kernel radius is capped below the grid's side, so tiny grids
            (tests, thumbnails) blur less rather than fail.

    Returns:
        (B,) image scores.
    """
    side = min(grid.shape[-2:])
    return gaussian_smooth(grid, sigma, max_radius=side - 1).amax(dim=(1, 2, 3))


def gaussian_smooth(
    maps: torch.Tensor, sigma: float, max_radius: int | None = None
) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (kernel radius 4 sigma, as anomalib).

    Args:
        maps: (B, 1, H, W) maps.
        sigma: Standard deviation in pixels; 0 returns the input.
        max_radius: Cap on the kernel radius (reflect padding needs it below the map's side).

    Returns:
        (B, 1, H, W) smoothed maps.
    """
    if sigma <= 0:
        return maps
    radius = int(4.0 * sigma + 0.5)
    if max_radius is not None:
        radius = max(0, min(radius, max_radius))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.pad(maps, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))
