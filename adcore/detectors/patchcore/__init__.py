"""PatchCore: memory bank of nominal patch features, nearest-neighbour anomaly scores."""

from adcore.detectors.patchcore.detector import PatchCore, PatchCoreConfig
from adcore.detectors.patchcore.torch_model import PatchCoreModel

__all__ = ["PatchCore", "PatchCoreConfig", "PatchCoreModel"]
