"""Grad-CAM explanations of the supervised classifier's defect score (pytorch-grad-cam).

Grad-CAM weighs the activations of one late convolutional layer by the spatially averaged
gradient of the defect logit, keeps the positive part and normalises it to [0, 1]: bright
regions are those that pushed p(defect) up. The layer is chosen per architecture by
:func:`adcore.classifier.torch_model.gradcam_target_layer` (EfficientNet-Lite ``conv_head``,
ResNet ``layer4[-1]``, MobileNetV3 ``features[-1]``), so maps have the backbone's stride-32
resolution, upsampled to the model input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from adcore.classifier.torch_model import DefectLogit, gradcam_target_layer
from adcore.detectors.base import to_tensor_batch

if TYPE_CHECKING:
    from adcore.classifier import Classifier


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
