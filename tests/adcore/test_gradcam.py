"""Grad-CAM: of the classifier (shapes, range, overlay, localisation) and of PatchCore's anomaly."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_parts import make_part

from adcore.classifier import Classifier, ClassifierConfig, LabelledImage, train_classifier
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.gradcam import (
    anomaly_gradcam,
    defect_heatmap,
    defect_heatmaps,
    heatmap_overlay,
    resize_heatmap,
)


def noisy_part(seed: int, size: int, scratch_at: tuple[int, int] | None = None) -> np.ndarray:
    """(size, size, 3) uint8 grey noise; ``scratch_at=(y, x)`` adds a bright 4 x 24 scratch."""
    rng = np.random.default_rng(seed)
    img = 100 + rng.normal(0, 8, (size, size))
    if scratch_at is not None:
        y, x = scratch_at
        img[y : y + 4, x : x + 24] = 250
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def random_scratch(rng: np.random.Generator, size: int) -> tuple[int, int]:
    return int(rng.integers(4, size - 8)), int(rng.integers(4, size - 28))


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18", "mobilenet_v3_large"])
def test_maps_have_the_input_shape_and_unit_range(backbone: str) -> None:
    config = ClassifierConfig(backbone=backbone, image_size=64)
    classifier = Classifier(config, pretrained=False, device="cpu")
    images = [noisy_part(i, 50 + 10 * i, (10, 10)) for i in range(3)]  # any input size
    maps = defect_heatmaps(classifier, images, batch_size=2)
    assert len(maps) == 3
    for heatmap in maps:
        assert heatmap.shape == (64, 64) and heatmap.dtype == np.float32
        assert np.isfinite(heatmap).all() and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert not classifier.model.training


def test_resize_and_overlay_follow_the_original_image() -> None:
    classifier = Classifier(ClassifierConfig(image_size=64), pretrained=False, device="cpu")
    image = noisy_part(0, 90, (30, 30))[:, :70]
    full = defect_heatmap(classifier, image)
    assert full.shape == (90, 70) and full.dtype == np.float32
    assert full.min() >= 0.0 and full.max() <= 1.0
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    assert resize_heatmap(ramp, 8, 12).shape == (8, 12)
    overlay = heatmap_overlay(image, full, opacity=0.5)
    assert overlay.shape == (90, 70, 3) and overlay.dtype == np.uint8
    hot = heatmap_overlay(image, np.ones((4, 4), np.float32), opacity=1.0)
    cold = heatmap_overlay(image, np.zeros((4, 4), np.float32), opacity=1.0)
    assert hot[..., 0].mean() > cold[..., 0].mean()  # jet: 1 is red, 0 is blue
    assert cold[..., 2].mean() > hot[..., 2].mean()


@pytest.mark.slow
def test_trained_classifier_looks_at_the_scratch() -> None:
    """Shipped ImageNet Lite0 fine-tuned on bright scratches: Grad-CAM is hot on the scratch."""
    size = 128
    rng = np.random.default_rng(0)
    samples = [LabelledImage(noisy_part(i, size), "good") for i in range(60)]
    samples += [
        LabelledImage(noisy_part(1000 + i, size, random_scratch(rng, size)), "defect")
        for i in range(30)
    ]
    config = ClassifierConfig(image_size=size, batch_size=16, max_epochs=8, patience=4)
    classifier, report = train_classifier(samples, config, device="cpu")
    assert report.validation_auroc > 0.9

    positions = [random_scratch(rng, size) for _ in range(8)]
    images = [noisy_part(9000 + i, size, pos) for i, pos in enumerate(positions)]
    near = 0
    for (y, x), heatmap in zip(positions, defect_heatmaps(classifier, images), strict=True):
        box = np.zeros((size, size), bool)
        box[max(0, y - 8) : y + 12, max(0, x - 8) : x + 32] = True
        assert heatmap[box].mean() > heatmap[~box].mean()
        peak = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
        centre = (y + 2, x + 12)
        near += np.hypot(peak[0] - centre[0], peak[1] - centre[1]) <= 32  # one feature cell
    assert near >= 6


@pytest.fixture(scope="module")
def patchcore() -> PatchCore:
    """A tiny default PatchCore (shipped Lite0 and Lite2 weights) fitted on 12 synthetic parts."""
    config = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25)
    detector = PatchCore(config, device="cpu")
    detector.fit([make_part(i) for i in range(12)])
    return detector


def test_anomaly_gradcam_points_at_the_scratch(patchcore: PatchCore) -> None:
    image = make_part(600, size=96, defect=True)  # a dark scratch in rows 32-35, columns 24-71
    explained = anomaly_gradcam(patchcore, image)
    heatmap = explained.heatmap
    assert heatmap.shape == (96, 96) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and 0.9 < heatmap.max() <= 1.0
    band = np.zeros((96, 96), bool)
    band[20:48, 16:80] = True
    assert heatmap[band].mean() > 2 * heatmap[~band].mean()
    assert explained.explained > 0 and "above the normal level" in explained.target
    # The default reads two networks: Grad-CAM weighs the deepest stage of each.
    assert explained.layer == "efficientnet_lite0 blocks.4 and efficientnet_lite2 blocks.4"


def test_anomaly_gradcam_explains_more_on_a_defect_than_on_a_good_part(
    patchcore: PatchCore,
) -> None:
    good = anomaly_gradcam(patchcore, make_part(700))
    defect = anomaly_gradcam(patchcore, make_part(701, defect=True))
    assert defect.explained > 5 * good.explained
    if good.explained == 0:  # nothing above the normal level: nothing to explain
        assert not good.heatmap.any()


def test_anomaly_gradcam_without_a_normal_level_explains_the_score(patchcore: PatchCore) -> None:
    calibration = patchcore.map_calibration
    patchcore.map_calibration = None  # as a model saved before the level was measured
    try:
        explained = anomaly_gradcam(patchcore, make_part(702, defect=True))
    finally:
        patchcore.map_calibration = calibration
    score = patchcore.predict([make_part(702, defect=True)])[0].score
    assert explained.target == "image anomaly score"
    assert explained.explained == pytest.approx(score, rel=1e-3)


def test_anomaly_gradcam_needs_patchcore() -> None:
    classifier = Classifier(ClassifierConfig(image_size=64), pretrained=False, device="cpu")
    with pytest.raises(ValueError, match="needs a PatchCore detector"):
        anomaly_gradcam(classifier, make_part(1))  # type: ignore[arg-type]
