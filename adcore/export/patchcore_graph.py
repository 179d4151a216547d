"""PatchCore's scoring as one traceable ``nn.Module``, the part of an export torch writes.

:class:`PatchCoreScoring` maps (N, 3, S, S) RGB in [0, 1] to PatchCore's image scores and
smoothed anomaly maps with the same maths as :class:`~adcore.detectors.patchcore.PatchCoreModel`
(it calls the model's own :meth:`embed` and :func:`gaussian_smooth`), written without the
Python loops and data-dependent branches an ONNX export cannot hold: the nearest-neighbour search
is one matrix product per batch (one per network when PatchCore reads several) instead of
chunks, and the neighbourhood of the worst patch's anchor is found with the same
``|a|^2 - 2 a.b + |b|^2`` product instead of ``torch.cdist``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adcore.detectors.patchcore.torch_model import PatchCoreModel, gaussian_smooth, smoothed_max
from adcore.detectors.pooling import anomaly_focused_embedding


class PatchCoreScoring(nn.Module):
    """Scores and maps of a fitted PatchCore, ready for ``torch.onnx.export``.

    Args:
        model: The fitted model (its memory bank must not be empty).
    """

    def __init__(self, model: PatchCoreModel) -> None:
        super().__init__()
        if model.memory_bank.shape[0] == 0:
            raise ValueError("The memory bank is empty: fit the model before exporting it")
        self.model = model
        bank = model.memory_bank.detach().float()
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(1))
        self.k = min(model.num_neighbors, bank.shape[0])
        self.network_dims = model.network_dims

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score a batch.

        Args:
            images: (N, 3, S, S) RGB in [0, 1].

        Returns:
            ((N,) image scores, (N, S, S) smoothed anomaly maps, (N, D) global vectors: the
            anomaly-focused pooling the torch model gives each scored image).
        """
        emb = self.model.embed(images)
        bsz, dim, h, w = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(bsz, h * w, dim)
        dist, index = self._nearest(flat)

        if self.model.image_score == "smoothed_max":
            scores = smoothed_max(dist.reshape(bsz, 1, h, w), self.model.score_sigma)
        else:
            scores = self._reweighted_max(flat, dist, index)

        maps = F.interpolate(
            dist.reshape(bsz, 1, h, w),
            size=images.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        vectors = anomaly_focused_embedding(emb, dist.reshape(bsz, h, w))
        return scores, gaussian_smooth(maps, self.model.blur_sigma)[:, 0], vectors

    def _nearest(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`PatchCoreModel.nearest` (each network on its own) as whole-batch products.

        Args:
            flat: (N, P, D) patch embeddings.

        Returns:
            ((N, P) distances, (N, P) bank index of the first network's nearest entry).
        """
        if len(self.network_dims) == 1:
            d2, index = (self.bank_sq - 2.0 * flat @ self.bank.T).min(dim=2)  # of (N, P, M)
            return (d2 + (flat * flat).sum(2)).clamp_min(0.0).sqrt(), index
        total, first = None, None
        dims = self.network_dims
        for part, bank in zip(flat.split(dims, 2), self.bank.split(dims, 1), strict=True):
            d2, index = ((bank * bank).sum(1) - 2.0 * part @ bank.T).min(dim=2)
            d2 = (d2 + (part * part).sum(2)).clamp_min(0.0)
            total = d2 if total is None else total + d2
            first = index if first is None else first
        return total.sqrt(), first

    def _reweighted_max(
        self, flat: torch.Tensor, dist: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """PatchCore eq. 7 (see :meth:`PatchCoreModel.reweighted_max`), without ``cdist``.

        Args:
            flat: (N, P, D) patch embeddings.
            dist: (N, P) nearest-neighbour distances.
            index: (N, P) bank index of each patch's nearest neighbour.

        Returns:
            (N,) image scores.
        """
        bsz, _, dim = flat.shape
        worst = dist.argmax(dim=1, keepdim=True)  # (N, 1)
        score = dist.gather(1, worst)[:, 0]
        feature = flat.gather(1, worst.unsqueeze(2).expand(bsz, 1, dim))[:, 0]  # (N, D)
        anchor = self.bank[index.gather(1, worst)[:, 0]]  # (N, D)
        anchor_d2 = (anchor * anchor).sum(1, keepdim=True) - 2.0 * anchor @ self.bank.T
        support = (anchor_d2 + self.bank_sq).topk(self.k, dim=1, largest=False).indices
        nearby = torch.linalg.vector_norm(feature.unsqueeze(1) - self.bank[support], dim=-1)
        return (1.0 - torch.softmax(nearby, dim=1)[:, 0]) * score
