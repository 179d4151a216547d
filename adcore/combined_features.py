"""Patch features of several backbones at once, for a PatchCore that reads more than one network.

A backbone name may join several known backbones with ``+``
(``"efficientnet_lite0+efficientnet_lite2"``): each member extracts its own stages and the stage
maps of all members are returned in one list, the first member's first. PatchCore aggregates,
upsamples and concatenates them into one patch embedding (see
:meth:`adcore.detectors.patchcore.torch_model.PatchCoreModel.embed`), so one memory-bank
tensor, one anomaly map, the instant updates and the ONNX export serve every network. Each
network's part of the embedding gets its own coreset and is searched on its own
(:meth:`~adcore.detectors.patchcore.torch_model.PatchCoreModel.nearest`): a patch's distance is
the root of the sum of each network's squared distance to its nearest good patch, so a patch
must look normal to every network to score low. (Measured while choosing: one joint search over
the concatenation, with one coreset, scored worse than Lite2 alone on the mean.)

Why: EfficientNet-Lite0 and Lite2 err on different parts; read together they score better on the
mean image AUROC over ELPV mono, ELPV poly and magnetic tile than either alone (issue 13,
bench/RESULTS_variants.md, bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adcore.backbones import FeatureExtractor

SEPARATOR = "+"


def backbone_members(name: str) -> tuple[str, ...]:
    """The backbones a (possibly combined) backbone name stands for.

    Raises:
        ValueError: An empty member (``"a++b"``) or the same backbone twice.
    """
    members = tuple(part.strip() for part in name.split(SEPARATOR))
    if any(not m for m in members):
        raise ValueError(f"Backbone name {name!r} has an empty part")
    if len(set(members)) != len(members):
        raise ValueError(f"Backbone name {name!r} names a backbone twice")
    return members


class CombinedFeatureExtractor(nn.Module):
    """The stage features of several frozen backbones, concatenated as one list.

    Args:
        names: Two or more keys of :data:`adcore.backbones.BACKBONES`.
        layers: The stages each member returns (the same indices for every member).
        pretrained: Load ImageNet weights (else random, for tests).
    """

    def __init__(
        self, names: Sequence[str], layers: Sequence[int] | None = None, *, pretrained: bool = True
    ) -> None:
        super().__init__()
        if len(names) < 2:
            raise ValueError("A combined extractor needs at least two backbones")
        self.names = tuple(names)
        self.members = nn.ModuleList(
            FeatureExtractor(name, layers, pretrained=pretrained) for name in names
        )

    @property
    def channels(self) -> list[int]:
        """Channels of each returned stage, member by member."""
        return [c for member in self.members for c in member.channels]

    @property
    def strides(self) -> list[int]:
        """Downsampling factor of each returned stage, member by member."""
        return [s for member in self.members for s in member.strides]

    def gradcam_layers(self) -> list[tuple[str, nn.Module]]:
        """Each member's deepest returned stage, named ``"<backbone> <module>"``."""
        return [
            (f"{name} {label}", module)
            for name, member in zip(self.names, self.members, strict=True)
            for label, module in member.gradcam_layers()
        ]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Extract every member's features.

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            One (B, C_i, H / s_i, W / s_i) tensor per stage of each member, in member order.
        """
        return [f for member in self.members for f in member(images)]


def build_extractor(
    name: str, layers: Sequence[int] | None = None, *, pretrained: bool = True
) -> FeatureExtractor | CombinedFeatureExtractor:
    """The feature extractor of a backbone name: one backbone, or several joined by ``+``."""
    members = backbone_members(name)
    if len(members) == 1:
        return FeatureExtractor(name, layers, pretrained=pretrained)
    return CombinedFeatureExtractor(members, layers, pretrained=pretrained)
