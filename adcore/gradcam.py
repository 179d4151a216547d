"""Grad-CAM explanations (pytorch-grad-cam) of the classifier and of PatchCore's anomaly.

Grad-CAM weighs the activations of one convolutional layer by the spatially averaged gradient
of a target output, keeps the positive part and normalises it to [0, 1] per image: bright
regions are those whose features pushed the target up.

* **Classifier** (:func:`defect_heatmaps`): the target is the defect logit, the layer is chosen
  per architecture by :func:`adcore.classifier.torch_model.gradcam_target_layer`
  (EfficientNet-Lite ``conv_head``, ResNet ``layer4[-1]``, MobileNetV3 ``features[-1]``), so
  maps have the backbone's stride-32 resolution, upsampled to the model input.
* **PatchCore detector** (:func:`anomaly_gradcam`), with no training at all: the target is the
  part's *anomaly above the normal level*, the sum over patches of how far each patch's
  distance to the memory bank exceeds the normal level measured on good images at fit time
  (:mod:`adcore.map_scale`); without that level, the image anomaly score. The layer is the
  deepest backbone stage PatchCore reads (stride 16 for EfficientNet-Lite), one per network
  when PatchCore reads several (the default: Lite0 and Lite2).
  A part with nothing above the normal level has nothing to explain: its map is all zero.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adcore.classifier.torch_model import DefectLogit, gradcam_target_layer
from adcore.detectors.base import to_tensor_batch

if TYPE_CHECKING:
    from adcore.classifier import Classifier
    from adcore.detectors.patchcore import PatchCore
    from adcore.detectors.patchcore.torch_model import PatchCoreModel

_HOOKS_LOCK = threading.Lock()
"""Grad-CAM hooks a layer: one explanation at a time per process, so two never mix."""


def defect_heatmaps(
    classifier: Classifier, images: Sequence[np.ndarray], *, batch_size: int = 8
) -> list[np.ndarray]:
    """Grad-CAM maps of the defect class.

    Args:
        classifier: A trained :class:`~adcore.classifier.Classifier`.
        images: (H, W, 3) uint8 RGB arrays.
        batch_size: Images per backward pass.

    Returns:
        One (S, S) float32 map in [0, 1] per image, S = the classifier's ``image_size``
        (all zeros when nothing in the image argues for a defect). Use :func:`resize_heatmap`
        to bring a map to the original image size.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = classifier.model
    was_training = model.training
    model.eval()
    wrapper = DefectLogit(model)
    maps: list[np.ndarray] = []
    try:
        with GradCAM(model=wrapper, target_layers=[gradcam_target_layer(model)]) as cam:
            for start in range(0, len(images), batch_size):
                x = to_tensor_batch(
                    images[start : start + batch_size], classifier.config.image_size
                )
                x = x.to(classifier.device)
                with torch.enable_grad():
                    grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * len(x))
                maps += [_unit_range(m) for m in grayscale]
    finally:
        model.train(was_training)
    return maps


def defect_heatmap(classifier: Classifier, image: np.ndarray) -> np.ndarray:
    """Grad-CAM map of one image, resized to the image: (H, W) float32 in [0, 1]."""
    heatmap = defect_heatmaps(classifier, [image])[0]
    return resize_heatmap(heatmap, image.shape[0], image.shape[1])


def resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (S, S) map to (height, width) float32, kept in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None]
    resized = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0].clamp_(0.0, 1.0).numpy()


def heatmap_overlay(pixels: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Blend a Grad-CAM map over its image (jet colours, 0 = blue, 1 = red).

    Args:
        pixels: (H, W, 3) uint8 RGB.
        heatmap: (S, S) or (H, W) map in [0, 1].
        opacity: Weight of the colour layer.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    from adcore.anomaly_maps import overlay_image

    return overlay_image(pixels, heatmap, opacity, vmin=0.0, vmax=1.0)


def _unit_range(heatmap: np.ndarray) -> np.ndarray:
    """Clean a map into float32 [0, 1] (pytorch-grad-cam already min-max scales it)."""
    out = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class AnomalyGradCam:
    """Grad-CAM of a PatchCore detector's anomaly for one image.

    Attributes:
        heatmap: (H, W) float32 in [0, 1] at the image's size (all zeros when ``explained`` is
            0: nothing to explain).
        explained: The value explained: the anomaly above the normal level (or the image
            score when the detector has no measured normal level).
        target: What ``explained`` is, in words.
        layer: The backbone layer whose activations were weighed.
    """

    heatmap: np.ndarray
    explained: float
    target: str
    layer: str


class _AnomalyTarget(nn.Module):
    """A PatchCore model seen as one output per image (B, 1), for Grad-CAM.

    With ``normal_level``: the sum over patches of ``max(0, distance - normal_level)``; without:
    the re-weighted image score.
    """

    def __init__(self, model: PatchCoreModel, normal_level: float | None) -> None:
        super().__init__()
        self.model = model
        self.normal_level = normal_level

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        emb = self.model.embed(images)
        bsz, dim, height, width = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(bsz, height * width, dim)
        dist, index = self.model.nearest(flat.reshape(-1, dim))
        dist, index = dist.view(bsz, -1), index.view(bsz, -1)
        if self.normal_level is None:
            return self.model.image_scores(flat, dist, index, (height, width))[:, None]
        return torch.relu(dist - self.normal_level).sum(dim=1, keepdim=True)


def anomaly_gradcam(detector: PatchCore, image: np.ndarray) -> AnomalyGradCam:
    """Grad-CAM of a fitted PatchCore detector's anomaly for one image (no training needed).

    Args:
        detector: A fitted :class:`~adcore.detectors.patchcore.PatchCore` (its measured
            ``map_calibration`` gives the normal level; without it the image score is used).
        image: (H, W, 3) uint8 RGB.

    Returns:
        The map at the image's size, what it explains and through which layer.

    Raises:
        ValueError: The detector has no backbone stages to explain (not PatchCore).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = getattr(detector, "model", None)
    extractor = getattr(model, "extractor", None)
    if extractor is None or not hasattr(model, "nearest"):
        raise ValueError(f"Grad-CAM of the anomaly needs a PatchCore detector, not {detector!r}")
    layers = extractor.gradcam_layers()
    calibration = detector.map_calibration
    normal = None if calibration is None else calibration.normal_level
    target = (
        "image anomaly score"
        if normal is None
        else f"anomaly above the normal level ({normal:.4g}), summed over the part"
    )
    x = to_tensor_batch([image], detector.config.image_size).to(detector.device)
    wrapper = _AnomalyTarget(model, normal)
    target_layers = [module for _, module in layers]
    with _HOOKS_LOCK, torch.enable_grad(), GradCAM(wrapper, target_layers) as cam:
        grayscale = cam(input_tensor=x.requires_grad_(True), targets=[ClassifierOutputTarget(0)])
        explained = float(cam.outputs[0, 0].detach())
    heatmap = _unit_range(grayscale[0]) if explained > 0 else np.zeros_like(grayscale[0])
    return AnomalyGradCam(
        heatmap=resize_heatmap(heatmap, image.shape[0], image.shape[1]),
        explained=explained,
        target=target,
        layer=_layer_label(detector.config.backbone, [name for name, _ in layers]),
    )


def _layer_label(backbone: str, layer_names: list[str]) -> str:
    """Which layers were weighed: ``"<backbone> <module>"``; a combined backbone's are named."""
    if len(layer_names) == 1:
        return f"{backbone} {layer_names[0]}"
    return " and ".join(layer_names)
