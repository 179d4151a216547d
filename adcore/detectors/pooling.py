"""One global feature vector per image, focused on what the detector finds anomalous.

Plain average pooling of a part's features mostly describes the part itself (every part of a
product looks alike), so nearest neighbours among defects would barely depend on the defect.
:func:`anomaly_focused_embedding` instead contrasts the features *where the detector sees an
anomaly* with the features of the whole image:

``v = sum_p w_p e_p - mean_p e_p`` with ``w_p = max(0, s_p - median(s)) / sum_q max(0, s_q -
median(s))``,

where ``e_p`` is patch ``p``'s feature vector and ``s_p`` its anomaly score. Two cracks then give
similar vectors even on differently textured parts, and the vector is centred (its sign and
direction carry information), so cosine similarities spread over [-1, 1]. A map without any
patch above its median (a flat map) gives the zero vector, which resembles nothing.
"""

from __future__ import annotations

import torch


def anomaly_focused_embedding(features: torch.Tensor, patch_scores: torch.Tensor) -> torch.Tensor:
    """Anomaly-weighted mean of patch features minus their plain mean.

    Args:
        features: (B, D, h, w) patch features.
        patch_scores: (B, h, w) anomaly score of each patch (higher is more anomalous).

    Returns:
        (B, D) float32 global vectors; rows of flat-scored images are zero.

    Raises:
        ValueError: If the shapes do not line up.
    """
    if features.ndim != 4 or patch_scores.shape != (features.shape[0], *features.shape[-2:]):
        raise ValueError(
            f"expected (B, D, h, w) features and (B, h, w) scores, got {tuple(features.shape)} "
            f"and {tuple(patch_scores.shape)}"
        )
    flat = features.float().flatten(2)  # (B, D, P)
    scores = patch_scores.float().flatten(1)  # (B, P)
    # The lower median, as ``torch.median``, through a sort that ONNX export can hold.
    middle = (scores.shape[1] - 1) // 2
    median = scores.sort(dim=1).values[:, middle : middle + 1]
    excess = (scores - median).clamp_min(0.0)
    total = excess.sum(dim=1, keepdim=True)
    weights = torch.where(total > 0, excess / total.clamp_min(1e-12), 1.0 / scores.shape[1])
    focused = torch.einsum("bdp,bp->bd", flat, weights)
    return focused - flat.mean(dim=2)
