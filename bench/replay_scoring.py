"""Re-scoring a fixed image set against a changing PatchCore memory bank, without the backbone.

The replay benchmark needs the scores of *every* test part under the model of each moment (to
recalibrate thresholds on the reviewed parts and to evaluate on the not-yet-streamed rest). The
backbone is frozen, so patch embeddings are computed once; when the bank only grows (an instant
update appends rows), nearest-neighbour distances are updated against the new rows only. Image
scores then use :meth:`PatchCoreModel.image_scores` exactly as :meth:`PatchCore.predict` does;
``replay.py`` cross-checks the two on streamed parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from adcore.detectors.patchcore import PatchCore


class CachedScorer:
    """PatchCore image scores of a fixed image set, from cached patch embeddings.

    Args:
        detector: A detector whose backbone and image size define the embeddings.
        images: (H, W, 3) uint8 RGB arrays.
        chunk: Patch rows per distance block (bounds memory).
    """

    def __init__(self, detector: PatchCore, images: Sequence[np.ndarray], chunk: int = 8192):
        self.embeddings = detector._embed(list(images))  # (N, P, D)
        self.chunk = chunk
        self._bank: torch.Tensor | None = None
        self._dist = torch.empty(0)  # (N, P) distance to the nearest bank row
        self._index = torch.empty(0, dtype=torch.int64)  # (N, P) its bank index
        self._scores = np.empty(0)

    def sync(self, detector: PatchCore) -> None:
        """Bring distances and scores up to date with the detector's current bank."""
        bank = detector.model.memory_bank.detach()
        old = self._bank
        if old is not None and bank.shape[0] >= old.shape[0] and torch.equal(bank[: len(old)], old):
            if bank.shape[0] > old.shape[0]:
                dist, index = self._nearest(bank[len(old) :])
                closer = dist < self._dist
                self._dist = torch.where(closer, dist, self._dist)
                self._index = torch.where(closer, index + len(old), self._index)
        else:
            self._dist, self._index = self._nearest(bank)
        self._bank = bank.clone()
        self._scores = self._image_scores(detector)

    def scores(self) -> np.ndarray:
        """(N,) float64 image scores under the bank of the last :meth:`sync`."""
        return self._scores.copy()

    def _nearest(self, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, P) distances, (N, P) indices) of every cached patch to its nearest bank row."""
        n, p, d = self.embeddings.shape
        flat = self.embeddings.reshape(n * p, d)
        bank_sq = (bank * bank).sum(1)
        dists, index = [], []
        with torch.inference_mode():
            for block in flat.split(self.chunk):
                d2 = torch.addmm(bank_sq, block, bank.T, alpha=-2.0)
                d2, i = d2.min(dim=1)
                dists.append((d2 + (block * block).sum(1)).clamp_min_(0.0).sqrt_())
                index.append(i)
        return torch.cat(dists).view(n, p), torch.cat(index).view(n, p)

    def _image_scores(self, detector: PatchCore, batch: int = 64) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, self.embeddings.shape[0], batch):
                sl = slice(start, start + batch)
                scores = detector.model.image_scores(
                    self.embeddings[sl], self._dist[sl], self._index[sl]
                )
                out.append(scores.double().cpu().numpy())
        return np.concatenate(out)
