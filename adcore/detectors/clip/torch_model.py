"""WinCLIP / WinCLIP+ maths as a plain ``nn.Module`` around a frozen open_clip ViT.

Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation", CVPR 2023.

* Zero-shot: the class token of the whole image and of every sliding window of ``k x k`` patch
  tokens (the window's tokens alone, with their positional embeddings, go through the ViT) is
  compared with the two text embeddings (normal, anomalous) of the prompt ensemble; the
  softmax probability of "anomalous" is the window's score. A patch's score at one scale is the
  harmonic mean of the scores of the windows covering it; scales are averaged.
* Few-shot (WinCLIP+): the patch tokens and window embeddings of reference good images are kept
  in per-scale memories (registered buffers). A test token's score is ``(1 - max cosine
  similarity to the memory) / 2``; windows are spread onto patches by averaging, scales are
  averaged. The few-shot map is averaged with the zero-shot map.
* Image score: zero-shot ``(p_image + max zero-shot map) / 2``; few-shot
  ``(p_image + max few-shot map) / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adcore.detectors.patchcore.torch_model import gaussian_smooth
from adcore.detectors.pooling import anomaly_focused_embedding
from adcore.errors import WeightsNotFoundError

_CHUNK = 512


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else [*starts, length - size]


def window_layout(
    grid: tuple[int, int], size: int, stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sliding ``size x size`` windows over a patch grid.

    Args:
        grid: (gh, gw) patches.
        size: Window side in patches.
        stride: Step between windows; the last row/column of windows is always kept, so every
            patch is covered.

    Returns:
        ((W, size*size) int64 patch indices of each window, (W, gh*gw) float 0/1 coverage).
    """
    gh, gw = grid
    if not 1 <= size <= min(gh, gw):
        raise ValueError(f"Window size {size} does not fit the {gh}x{gw} patch grid")
    if stride < 1:
        raise ValueError(f"Window stride must be at least 1, got {stride}")
    index = torch.arange(gh * gw).view(gh, gw)
    windows = torch.stack(
        [
            index[r : r + size, c : c + size].reshape(-1)
            for r in _starts(gh, size, stride)
            for c in _starts(gw, size, stride)
        ]
    )
    coverage = torch.zeros(windows.shape[0], gh * gw)
    coverage.scatter_(1, windows, 1.0)
    return windows, coverage


class ClipAnomalyModel(nn.Module):
    """Window/patch embeddings of a frozen CLIP ViT, text embeddings and few-shot memories.

    Args:
        clip: An open_clip ``CLIP`` model with a ``VisionTransformer`` image tower.
        window_sizes: Window sides in patches (WinCLIP uses 2 and 3 on a 15x15 grid).
        window_stride: Step between windows (WinCLIP: 1). Windows dominate the cost (each is a
            short ViT pass); stride 2 has about 4 times fewer.
        logit_scale: Temperature of the normal/anomalous softmax (WinCLIP: 100).
        blur_sigma: Gaussian smoothing of the anomaly map, in output pixels.
        mean: Per-channel normalisation mean of the CLIP weights.
        std: Per-channel normalisation std.
    """

    def __init__(
        self,
        clip: Any,
        *,
        window_sizes: Sequence[int] = (2, 3),
        window_stride: int = 1,
        logit_scale: float = 100.0,
        blur_sigma: float = 4.0,
        mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073),
        std: Sequence[float] = (0.26862954, 0.26130258, 0.27577711),
    ) -> None:
        super().__init__()
        visual = getattr(clip, "visual", None)
        needed = ("conv1", "class_embedding", "positional_embedding", "transformer", "proj")
        if visual is None or not all(hasattr(visual, n) for n in needed):
            raise WeightsNotFoundError("This CLIP model has no ViT image tower with a class token")
        if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok":
            raise WeightsNotFoundError("This CLIP ViT does not pool with a class token")
        self.clip = clip.eval().requires_grad_(False)
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.native_size = tuple(int(s) for s in visual.image_size)
        self.embed_dim = int(visual.output_dim)
        self.window_sizes = tuple(int(k) for k in window_sizes)
        self.logit_scale = float(logit_scale)
        self.blur_sigma = float(blur_sigma)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("text_embeddings", torch.zeros(2, self.embed_dim))
        for k in self.window_sizes:
            windows, coverage = window_layout(self.grid, k, window_stride)
            self.register_buffer(f"windows_{k}", windows, persistent=False)
            self.register_buffer(f"coverage_{k}", coverage, persistent=False)
        for key in self.scales:
            self.register_buffer(f"memory_{key}", torch.empty(0, self.embed_dim))

    # ------------------------------------------------------------------ layout
    @property
    def scales(self) -> tuple[str, ...]:
        """Memory scales: ``"patch"`` tokens and ``"win<k>"`` window embeddings."""
        return ("patch", *(f"win{k}" for k in self.window_sizes))

    def memory(self, key: str) -> torch.Tensor:
        """(M, E) normalised reference embeddings of one scale."""
        return getattr(self, f"memory_{key}")

    def set_memory(self, key: str, value: torch.Tensor) -> None:
        """Replace one scale's memory with (M, E) embeddings."""
        setattr(self, f"memory_{key}", value.to(self.text_embeddings))

    @property
    def memory_size(self) -> int:
        """Reference embeddings held, over all scales."""
        return sum(int(self.memory(k).shape[0]) for k in self.scales)

    # ------------------------------------------------------------------ text
    def encode_states(self, normal: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
        """Per-state text embeddings from tokenised prompt ensembles.

        Args:
            normal: (Pn, L) token ids of the normal prompts.
            anomalous: (Pa, L) token ids of the anomalous prompts.

        Returns:
            (2, E) normalised mean embedding of each state (normal first).
        """
        states = []
        for tokens in (normal, anomalous):
            features = F.normalize(self.clip.encode_text(tokens.to(self.mean.device)), dim=-1)
            states.append(F.normalize(features.mean(0), dim=-1))
        return torch.stack(states)

    # ------------------------------------------------------------------ image
    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, W) class + patch tokens with positions, after ``ln_pre``."""
        visual = self.clip.visual
        x = images
        if tuple(x.shape[-2:]) != self.native_size:
            x = F.interpolate(x, size=self.native_size, mode="bilinear", antialias=True)
        x = (x - self.mean) / self.std
        x = visual.conv1(x).flatten(2).transpose(1, 2)  # (B, N, W)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        return visual.ln_pre(x)

    def _head(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., W) transformer outputs -> (..., E) normalised joint-space embeddings."""
        visual = self.clip.visual
        return F.normalize(visual.ln_post(tokens) @ visual.proj, dim=-1)

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, E) normalised class-token embeddings."""
        return self._head(self.clip.visual.transformer(self._tokens(images))[:, 0])

    def encode_image(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Image, patch and window embeddings.

        Args:
            images: (B, 3, H, W) RGB in [0, 1] (resized to the CLIP input size).

        Returns:
            ``"image"``: (B, E); ``"patch"``: (B, N, E); ``"win<k>"``: (B, W_k, E); all
            normalised. N = gh * gw patches, W_k windows of side k.
        """
        x0 = self._tokens(images)
        full = self.clip.visual.transformer(x0)
        out = {"image": self._head(full[:, 0]), "patch": self._head(full[:, 1:])}
        bsz, _, width = x0.shape
        for k in self.window_sizes:
            windows = getattr(self, f"windows_{k}")
            n_win = windows.shape[0]
            patches = x0[:, 1:][:, windows]  # (B, W_k, k*k, W)
            cls = x0[:, :1].unsqueeze(1).expand(bsz, n_win, 1, width)
            seqs = torch.cat([cls, patches], dim=2).reshape(bsz * n_win, 1 + k * k, width)
            pooled = [self.clip.visual.transformer(s)[:, 0] for s in seqs.split(_CHUNK)]
            out[f"win{k}"] = self._head(torch.cat(pooled)).view(bsz, n_win, -1)
        return out

    # ------------------------------------------------------------------ scores
    def anomalous_probability(self, features: torch.Tensor) -> torch.Tensor:
        """(..., E) normalised features -> (...) softmax probability of the anomalous state."""
        logits = self.logit_scale * features @ self.text_embeddings.T
        return logits.softmax(dim=-1)[..., 1]

    def zero_shot(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """((B,) image probability, (B, N) zero-shot patch map) from :meth:`encode_image`."""
        image = self.anomalous_probability(features["image"])
        if not self.window_sizes:
            return image, self.anomalous_probability(features["patch"])
        maps = []
        for k in self.window_sizes:
            coverage = getattr(self, f"coverage_{k}")  # (W_k, N)
            score = self.anomalous_probability(features[f"win{k}"]).clamp_min(1e-6)
            maps.append(coverage.sum(0) / ((1.0 / score) @ coverage))  # harmonic mean
        return image, torch.stack(maps).mean(0)

    def _nearest_distance(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """(B, Q, E) queries -> (B, Q) ``(1 - max cosine similarity) / 2`` to the memory."""
        flat = queries.reshape(-1, queries.shape[-1])
        best = torch.cat([(block @ memory.T).amax(dim=1) for block in flat.split(_CHUNK)])
        return (0.5 * (1.0 - best)).view(queries.shape[:-1])

    def few_shot(self, features: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(B, N) few-shot patch map, or None while the memories are empty."""
        maps = []
        for key in self.scales:
            memory = self.memory(key)
            if memory.shape[0] == 0:
                continue
            dist = self._nearest_distance(features[key], memory)
            if key != "patch":
                coverage = getattr(self, f"coverage_{key[3:]}")
                dist = (dist @ coverage) / coverage.sum(0)  # mean over covering windows
            maps.append(dist)
        return torch.stack(maps).mean(0) if maps else None

    def add_references(self, images: torch.Tensor) -> int:
        """Append the embeddings of good images to every scale's memory.

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            The number of embeddings added.
        """
        features = self.encode_image(images)
        added = 0
        for key in self.scales:
            new = features[key].reshape(-1, self.embed_dim)
            self.set_memory(key, torch.cat([self.memory(key), new]))
            added += new.shape[0]
        return added

    def score_and_embed(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score a batch and give each image one global vector, in one pass.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            ((B,) image scores in [0, 1], (B, S, S) anomaly maps, (B, E) anomaly-focused
            pooling of the patch tokens by the patch map, see
            :func:`adcore.detectors.pooling.anomaly_focused_embedding`).
        """
        features = self.encode_image(images)
        image, zero_map = self.zero_shot(features)
        few_map = self.few_shot(features)
        if few_map is None:
            patch_map, score = zero_map, 0.5 * (image + zero_map.amax(dim=1))
        else:
            patch_map, score = 0.5 * (zero_map + few_map), 0.5 * (image + few_map.amax(dim=1))
        gh, gw = self.grid
        grid_map = patch_map.view(-1, gh, gw)
        maps = F.interpolate(
            grid_map.unsqueeze(1), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        tokens = features["patch"].transpose(1, 2).reshape(-1, self.embed_dim, gh, gw)
        vectors = anomaly_focused_embedding(tokens, grid_map)
        return score, gaussian_smooth(maps, self.blur_sigma)[:, 0], vectors

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            ((B,) image scores in [0, 1], (B, S, S) anomaly maps).
        """
        scores, maps, _ = self.score_and_embed(images)
        return scores, maps
