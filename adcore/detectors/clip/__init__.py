"""CLIP zero-/few-shot detector (WinCLIP / WinCLIP+) for products without a one-class model."""

from adcore.detectors.clip.detector import ClipConfig, ClipDetector
from adcore.detectors.clip.torch_model import ClipAnomalyModel
from adcore.detectors.clip.weights import clip_unavailable, load_clip, resolve_clip_weights

__all__ = [
    "ClipAnomalyModel",
    "ClipConfig",
    "ClipDetector",
    "clip_unavailable",
    "load_clip",
    "resolve_clip_weights",
]
