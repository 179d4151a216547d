"""PatchCore reading two networks: names, features, per-network search, update, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_parts import make_part

from adcore.backbones import FeatureExtractor
from adcore.combined_features import CombinedFeatureExtractor, backbone_members, build_extractor
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.detectors.patchcore.detector import saved_coverage_radii

LITE0, LITE2 = "efficientnet_lite0", "efficientnet_lite2"
TINY = {"image_size": 64, "coreset_ratio": 0.1, "calibration_fraction": 0.0}


def test_backbone_names_split_on_plus() -> None:
    assert backbone_members(LITE0) == (LITE0,)
    assert backbone_members(f"{LITE0} + {LITE2}") == (LITE0, LITE2)
    with pytest.raises(ValueError, match="empty part"):
        backbone_members(f"{LITE0}++{LITE2}")
    with pytest.raises(ValueError, match="twice"):
        backbone_members(f"{LITE0}+{LITE0}")
    with pytest.raises(ValueError, match="Unknown backbone"):
        build_extractor(f"{LITE0}+vgg-nonexistent", pretrained=False)


def test_the_combined_extractor_returns_every_network_s_stages_in_order() -> None:
    combined = build_extractor(f"{LITE0}+{LITE2}", pretrained=False)
    assert isinstance(combined, CombinedFeatureExtractor)
    assert isinstance(build_extractor(LITE2, pretrained=False), FeatureExtractor)
    assert combined.channels == [40, 112, 48, 120] and combined.strides == [8, 16, 8, 16]
    with torch.inference_mode():
        feats = combined(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [
        (2, 40, 8, 8),
        (2, 112, 4, 4),
        (2, 48, 8, 8),
        (2, 120, 4, 4),
    ]
    assert [name for name, _ in combined.gradcam_layers()] == [
        f"{LITE0} blocks.4",
        f"{LITE2} blocks.4",
    ]


def test_the_re_weighted_max_is_refused_for_two_networks() -> None:
    with pytest.raises(ValueError, match="smoothed_max"):
        PatchCoreConfig(backbone=f"{LITE0}+{LITE2}", image_score="reweighted_max")
    PatchCoreConfig(backbone=LITE2, image_score="reweighted_max")  # one network: allowed


@pytest.fixture(scope="module")
def three_fits() -> dict[str, PatchCore]:
    """The same good parts fitted by Lite0 alone, Lite2 alone and both together."""
    parts = [make_part(i) for i in range(8)]
    fits = {}
    for name in (LITE0, LITE2, f"{LITE0}+{LITE2}"):
        detector = PatchCore(PatchCoreConfig(backbone=name, **TINY), device="cpu")
        detector.fit(parts)
        fits[name] = detector
    return fits


def _patch_distances(detector: PatchCore, images: list[np.ndarray]) -> torch.Tensor:
    emb = detector._embed(images)
    with torch.inference_mode():
        return detector.model.nearest(emb.reshape(-1, emb.shape[-1]))[0]


def test_two_networks_score_a_patch_by_each_network_s_own_nearest_good_patch(
    three_fits: dict[str, PatchCore],
) -> None:
    images = [make_part(90, defect=True), make_part(91)]
    lite0 = _patch_distances(three_fits[LITE0], images)
    lite2 = _patch_distances(three_fits[LITE2], images)
    both = _patch_distances(three_fits[f"{LITE0}+{LITE2}"], images)
    # Each network's part of the bank is its own coreset, so the combined distance is the root of
    # the sum of the squared distances the two single-network models give.
    torch.testing.assert_close(both, torch.sqrt(lite0**2 + lite2**2), rtol=1e-4, atol=1e-4)
    combined = three_fits[f"{LITE0}+{LITE2}"]
    assert combined.model.memory_bank.shape == (
        three_fits[LITE0].model.memory_bank.shape[0],
        40 + 112 + 48 + 120,
    )
    assert len(combined.coverage_radii) == 2
    assert combined.coverage_radii[0] == pytest.approx(three_fits[LITE0].coverage_radii[0])


def test_an_update_adds_a_patch_either_network_needs_to_both(
    three_fits: dict[str, PatchCore],
) -> None:
    fits = {name: _copy(detector) for name, detector in three_fits.items()}
    new_good = [make_part(200 + i, size=64) for i in range(2)]
    added = {name: detector.update(new_good) for name, detector in fits.items()}
    combined = fits[f"{LITE0}+{LITE2}"]
    # The union of what each network alone would add.
    assert max(added[LITE0], added[LITE2]) <= added[f"{LITE0}+{LITE2}"]
    assert added[f"{LITE0}+{LITE2}"] <= added[LITE0] + added[LITE2]
    rows = three_fits[f"{LITE0}+{LITE2}"].model.memory_bank.shape[0] + added[f"{LITE0}+{LITE2}"]
    assert combined.model.memory_bank.shape == (rows, 320)
    # The parts just learned now sit within each network's coverage radius.
    emb = combined._embed(new_good)
    squared, _ = combined.model.nearest_per_network(emb.reshape(-1, 320))
    for d2, radius in zip(squared, combined.coverage_radii, strict=True):
        assert float(d2.max().sqrt()) <= radius + 1e-4


def _copy(detector: PatchCore) -> PatchCore:
    clone = PatchCore(detector.config, device="cpu")
    clone.model.memory_bank = detector.model.memory_bank.clone()
    clone.coverage_radii = detector.coverage_radii
    return clone


def test_the_radii_are_saved_and_an_old_single_radius_still_loads(
    three_fits: dict[str, PatchCore], tmp_path: Path
) -> None:
    combined = three_fits[f"{LITE0}+{LITE2}"]
    combined.save(tmp_path / "both")
    loaded = PatchCore.load(tmp_path / "both", device="cpu")
    assert loaded.coverage_radii == pytest.approx(combined.coverage_radii)
    part = make_part(95, defect=True)
    assert loaded.predict([part])[0].score == pytest.approx(combined.predict([part])[0].score)

    document = json.loads((tmp_path / "both" / "config.json").read_text())
    assert document["coverage_radii"] == pytest.approx(list(combined.coverage_radii))
    # Models saved before two networks kept one radius under another name.
    assert saved_coverage_radii({"coverage_radius": 1.5}) == (1.5,)
    assert saved_coverage_radii({}) is None
