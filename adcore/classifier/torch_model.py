"""The supervised good/defect classifier as a plain ``nn.Module``: backbone, pooling, two heads.

The network maps an RGB image in [0, 1] to

* one *defect logit*: ``sigmoid(logit)`` is p(defect), the image score;
* ``n_types`` *type logits* (only when at least two defect types are known): a softmax over
  them, read only for parts judged defective, names the most likely defect type.

Any backbone of :mod:`adcore.backbones` works: timm EfficientNet-Lite / ResNet, or torchvision
MobileNetV3. Its ImageNet head is dropped and its pooled features feed both heads.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from adcore.backbones import build_classifier, get_spec


class ClassifierModel(nn.Module):
    """Backbone + defect head + optional defect-type head.

    Args:
        backbone: A key of :data:`adcore.backbones.BACKBONES`.
        n_types: Number of defect types the type head distinguishes (0 or 1: no type head).
        pretrained: Start from ImageNet weights (False: random initialisation, for tests and
            for loading a saved model, whose own weights replace everything).
        weights_path: Explicit checkpoint path for torchvision backbones.
        dropout: Dropout rate on the pooled features during training.
        frozen_stages: Keep the stem and this many early stages at their (ImageNet) weights
            and batch-norm statistics; 0 fine-tunes everything. Early stages hold generic
            edge/texture filters and cost most of the backward pass at high resolution.
    """

    def __init__(
        self,
        backbone: str,
        n_types: int = 0,
        *,
        pretrained: bool = True,
        weights_path: str | os.PathLike | None = None,
        dropout: float = 0.2,
        frozen_stages: int = 0,
    ) -> None:
        super().__init__()
        self.spec = get_spec(backbone)
        self.body = build_classifier(backbone, pretrained=pretrained, weights_path=weights_path)
        self.n_features = _drop_imagenet_head(self.body)
        # A plain list, not a ModuleList: the modules stay registered under ``body`` only.
        self.frozen_modules: list[nn.Module] = _early_stages(self.body, frozen_stages)
        for module in self.frozen_modules:
            module.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.defect_head = nn.Linear(self.n_features, 1)
        self.n_types = n_types if n_types >= 2 else 0
        self.type_head = nn.Linear(self.n_features, self.n_types) if self.n_types else None
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> ClassifierModel:
        """Set training mode, keeping the frozen early stages in eval mode (fixed statistics)."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            (B, F) features.
        """
        return self.body((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score images.

        Args:
            images: (B, 3, S, S) RGB in [0, 1].

        Returns:
            ((B,) defect logits, (B, n_types) type logits or None without a type head).
        """
        pooled = self.dropout(self.features(images))
        defect_logit = self.defect_head(pooled).squeeze(1)
        type_logits = self.type_head(pooled) if self.type_head is not None else None
        return defect_logit, type_logits


class DefectLogit(nn.Module):
    """A view of a :class:`ClassifierModel` returning (B, 1) defect logits (for Grad-CAM).

    Grad-CAM's ``ClassifierOutputTarget(0)`` then explains the defect class.
    """

    def __init__(self, model: ClassifierModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1] -> (B, 1) defect logits."""
        return self.model(images)[0].unsqueeze(1)


def _drop_imagenet_head(body: nn.Module) -> int:
    """Replace the 1000-class ImageNet head by the identity; return the pooled feature width."""
    reset = getattr(body, "reset_classifier", None)
    if callable(reset):  # timm models: keep global pooling, drop the classifier
        reset(0)
        return int(body.num_features)
    classifier = getattr(body, "classifier", None)  # torchvision MobileNetV3
    if isinstance(classifier, nn.Sequential) and isinstance(classifier[0], nn.Linear):
        body.classifier = nn.Identity()
        return int(classifier[0].in_features)
    raise ValueError(f"Do not know how to drop the ImageNet head of {type(body).__name__}")


def _early_stages(body: nn.Module, n_stages: int) -> list[nn.Module]:
    """The stem and the first ``n_stages`` stages of a backbone.

    Knows timm EfficientNet/ResNet and torchvision MobileNetV3 (whose ``features[0]`` is the
    stem).

    Raises:
        ValueError: For any other backbone.
    """
    if n_stages <= 0:
        return []
    if hasattr(body, "blocks"):  # timm EfficientNet
        return [body.conv_stem, body.bn1, *list(body.blocks)[:n_stages]]
    if hasattr(body, "layer1"):  # timm ResNet
        stages = [getattr(body, f"layer{i}") for i in range(1, 5)]
        return [body.conv1, body.bn1, *stages[:n_stages]]
    if hasattr(body, "features"):  # torchvision MobileNetV3
        return list(body.features)[: n_stages + 1]
    raise ValueError(f"Do not know the stages of {type(body).__name__}")


def gradcam_target_layer(model: ClassifierModel) -> nn.Module:
    """The layer whose activations Grad-CAM weighs, per architecture.

    EfficientNet-Lite: ``conv_head`` (last convolution, stride 32); ResNet: ``layer4[-1]``;
    torchvision MobileNetV3: ``features[-1]``.
    """
    body = model.body
    if hasattr(body, "conv_head"):
        return body.conv_head
    if hasattr(body, "layer4"):
        return body.layer4[-1]
    if hasattr(body, "features") and isinstance(body.features, nn.Sequential):
        return body.features[-1]
    raise ValueError(f"No Grad-CAM target layer known for {type(body).__name__}")
