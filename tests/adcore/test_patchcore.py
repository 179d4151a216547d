"""PatchCore: fit/predict on tiny synthetic parts, save/load, tampering, update()."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from synthetic_parts import make_part

from adcore.detectors.base import BatchDetector
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.detectors.pooling import anomaly_focused_embedding
from adcore.errors import DatasetError, ModelFileError

SMALL = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, batch_size=8)


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    detector = PatchCore(SMALL, device="cpu")
    detector.fit([make_part(i) for i in range(12)])
    return detector


def test_fit_sets_bank_threshold_and_hash(fitted: PatchCore) -> None:
    bank = fitted.model.memory_bank
    # The default reads Lite0 (stages 2 and 3: 40 + 112 channels) and Lite2 (48 + 120).
    assert bank.ndim == 2 and bank.shape[1] == 40 + 112 + 48 + 120
    # 9 train images x 8x8 patches x 10% = 58 from the coreset, plus what update() added.
    assert bank.shape[0] >= 58
    assert fitted.threshold is not None and fitted.threshold > 0
    assert fitted.training_hash and len(fitted.training_digests) == 12


def test_defect_scores_higher_and_map_points_at_it(fitted: PatchCore) -> None:
    good = fitted.predict([make_part(500 + i) for i in range(3)])
    bad = fitted.predict([make_part(600 + i, defect=True) for i in range(3)])
    assert min(p.score for p in bad) > max(p.score for p in good)
    assert all(p.is_defect for p in bad)
    assert bad[0].anomaly_map.shape == (64, 64) and bad[0].anomaly_map.dtype == np.float32
    row, _col = np.unravel_index(np.argmax(bad[0].anomaly_map), (64, 64))
    assert 64 // 3 - 6 <= row <= 64 // 3 + 10
    resized = bad[0].map_resized(120, 90)
    assert resized.shape == (120, 90)


def test_bad_files_are_skipped_and_reported(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    detector = PatchCore(SMALL, device="cpu")
    report = detector.fit([make_part(i) for i in range(6)] + [junk])
    assert report.n_images == 6
    assert [name for name, _ in report.skipped] == ["junk.png"]
    results, failures = detector.predict_files([junk, make_part(1)])
    assert len(results) == 1 and failures[0][0] == "junk.png"
    with pytest.raises(DatasetError, match="No usable"):
        PatchCore(SMALL, device="cpu").fit([junk])


def test_save_load_round_trip(fitted: PatchCore, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    loaded = PatchCore.load(tmp_path / "m", device="cpu")
    parts = [make_part(700), make_part(701, defect=True)]
    a, b = fitted.predict(parts), loaded.predict(parts)
    assert [p.score for p in a] == pytest.approx([p.score for p in b], rel=1e-5)
    assert loaded.threshold == fitted.threshold
    assert loaded.training_hash == fitted.training_hash
    with pytest.raises(ModelFileError, match="already exists"):
        fitted.save(tmp_path / "m")


def _saved(fitted: PatchCore, tmp_path: Path) -> Path:
    target = tmp_path / "m"
    fitted.save(target)
    return target


def test_tampered_config_is_refused(fitted: PatchCore, tmp_path: Path) -> None:
    target = _saved(fitted, tmp_path)
    doc = json.loads((target / "config.json").read_text())
    doc["threshold"] = 0.0
    (target / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="changed after"):
        PatchCore.load(target)


def test_tampered_tensors_are_refused(fitted: PatchCore, tmp_path: Path) -> None:
    target = _saved(fitted, tmp_path)
    data = bytearray((target / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (target / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the hash"):
        PatchCore.load(target)


def test_pickles_and_mismatches_are_refused(fitted: PatchCore, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({"memory_bank": torch.zeros(3, 152)}, pickled / "model.pt")
    with pytest.raises(ModelFileError, match="pickle"):
        PatchCore.load(pickled)
    target = _saved(fitted, tmp_path)
    with pytest.raises(ModelFileError, match="other data"):
        PatchCore.load(target, expected_training_hash="0" * 64)
    with pytest.raises(ModelFileError, match="No model directory"):
        PatchCore.load(tmp_path / "missing")


def test_backbone_swap_in_config_is_refused(fitted: PatchCore, tmp_path: Path) -> None:
    """Re-saving with a consistent hash but a bank that does not fit the backbone fails."""
    from adcore.persistence import save_model

    save_model(
        tmp_path / "m",
        kind="patchcore",
        config={"backbone": "efficientnet_lite0", "image_size": 64},
        tensors={"memory_bank": torch.zeros(5, 99)},
    )
    with pytest.raises(ModelFileError, match="does not match backbone"):
        PatchCore.load(tmp_path / "m")


def test_update_stops_flagging_a_confirmed_good_variant(fitted: PatchCore) -> None:
    detector = PatchCore(SMALL, device="cpu")
    detector.fit([make_part(i) for i in range(12)])
    # A new, legitimately different appearance (brighter, other stripes), confirmed good.
    variant = np.clip(make_part(900).astype(int)[:, ::-1].transpose(1, 0, 2) + 30, 0, 255)
    variant = variant.astype(np.uint8)
    before = detector.predict([variant])[0]
    assert before.is_defect, "the variant should look anomalous before the update"
    bank_before = detector.model.memory_bank.shape[0]
    added = detector.update([variant])
    after = detector.predict([variant])[0]
    assert added > 0 and detector.model.memory_bank.shape[0] == bank_before + added
    assert not after.is_defect and after.score < before.score
    # A real defect is still flagged after the update.
    assert detector.predict([make_part(901, defect=True)])[0].is_defect


# --- global feature vectors -------------------------------------------------------------------


def spotted_part(seed: int) -> np.ndarray:
    """A good part with a bright round spot (a defect of another kind than the scratch)."""
    image = make_part(seed).copy()
    yy, xx = np.mgrid[0:64, 0:64]
    image[(yy - 44) ** 2 + (xx - 20) ** 2 <= 16] = 250
    return image


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_each_prediction_carries_a_global_vector_from_the_same_pass(fitted: PatchCore) -> None:
    images = [make_part(600, defect=True), make_part(601, defect=True), spotted_part(602)]

    predictions = fitted.predict(images)
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
    with torch.inference_mode():
        scores, maps = fitted.model(x)

    for prediction, score, heat in zip(predictions, scores, maps, strict=True):
        assert prediction.embedding.shape == (320,) and prediction.embedding.dtype == np.float32
        assert np.isfinite(prediction.embedding).all()
        assert prediction.score == pytest.approx(float(score), rel=1e-5)
        np.testing.assert_allclose(prediction.anomaly_map, heat.numpy(), rtol=1e-5, atol=1e-6)
    scratch_a, scratch_b, spot = (p.embedding for p in predictions)
    assert cosine(scratch_a, scratch_b) > cosine(scratch_a, spot)


def test_pooling_focuses_on_the_anomalous_patches() -> None:
    features = torch.zeros(2, 3, 2, 2)
    features[:, 0] = 1.0  # every patch has 1 on channel 0 ...
    features[:, 1, 0, 0] = 4.0  # ... and the first patch also 4 on channel 1
    scores = torch.stack([torch.tensor([[9.0, 1.0], [1.0, 1.0]]), torch.ones(2, 2)])

    vectors = anomaly_focused_embedding(features, scores)

    # Image 0: all weight on patch (0, 0): (1, 4, 0) - mean (1, 1, 0); image 1: a flat map.
    torch.testing.assert_close(vectors, torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="expected"):
        anomaly_focused_embedding(features, torch.ones(2, 3, 3))


def test_a_detector_without_vectors_gives_none() -> None:
    class MapOnly(BatchDetector):
        config = SimpleNamespace(batch_size=4, image_size=16)
        device = torch.device("cpu")
        threshold = None

        def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean(dim=(1, 2, 3)), x.mean(dim=1)

    (prediction,) = MapOnly().predict([make_part(0)])

    assert prediction.embedding is None and prediction.anomaly_map.shape == (16, 16)


def test_map_scale_is_measured_at_fit_saved_and_reloaded(fitted: PatchCore, tmp_path: Path) -> None:
    calibration = fitted.map_calibration
    assert calibration is not None and calibration.n_images == 3  # the held-out good images
    good = np.stack([p.anomaly_map for p in fitted.predict([make_part(800 + i) for i in range(3)])])
    defect = fitted.predict([make_part(900, defect=True)])[0].anomaly_map
    assert (good <= calibration.normal_level).mean() > 0.8  # good parts stay cool
    assert defect.max() > calibration.normal_level
    # The map (blurred 4 px) peaks near the smoothed patch grid (blurred one patch) it scores.
    assert 0.5 < calibration.peak_to_score < 2.0
    target = _saved(fitted, tmp_path)
    stored = json.loads((target / "config.json").read_text())["map_calibration"]
    assert stored["normal_level"] == pytest.approx(calibration.normal_level)
    assert PatchCore.load(target, device="cpu").map_calibration == calibration


def test_a_model_saved_before_map_scales_loads_without_one(tmp_path: Path) -> None:
    detector = PatchCore(SMALL, device="cpu")
    detector.fit([make_part(i) for i in range(8)])
    detector.map_calibration = None  # as saved by Loupe before the scale was measured
    detector.save(tmp_path / "old")
    assert "map_calibration" not in json.loads((tmp_path / "old" / "config.json").read_text())
    loaded = PatchCore.load(tmp_path / "old", device="cpu")
    assert loaded.map_calibration is None and loaded.threshold == detector.threshold


def test_a_model_saved_before_the_image_score_option_keeps_its_rule(tmp_path: Path) -> None:
    detector = PatchCore(
        PatchCoreConfig(
            image_size=64,
            coreset_ratio=0.1,
            calibration_fraction=0.25,
            backbone="efficientnet_lite0",
            image_score="reweighted_max",
        ),
        device="cpu",
    )
    detector.fit([make_part(i) for i in range(8)])
    detector.save(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())["config"]
    del saved["image_score"], saved["score_sigma"], saved["backbone"]  # as saved before issue 13

    config = PatchCoreConfig.from_saved(saved)
    assert (config.image_score, config.backbone) == ("reweighted_max", "efficientnet_lite0")
    rebuilt = PatchCore(config, device="cpu")
    rebuilt.model.memory_bank = detector.model.memory_bank
    part = make_part(77, defect=True)
    assert rebuilt.predict([part])[0].score == pytest.approx(detector.predict([part])[0].score)
    assert PatchCoreConfig().image_score == "smoothed_max"  # new models use today's default


def test_the_smoothed_max_weighs_a_lone_patch_less_than_a_defect_spanning_patches() -> None:
    from adcore.detectors.patchcore.torch_model import smoothed_max

    lone = torch.zeros(1, 1, 16, 16)
    lone[0, 0, 8, 8] = 1.0
    blob = torch.zeros(1, 1, 16, 16)
    blob[0, 0, 7:10, 7:10] = 1.0
    assert smoothed_max(blob, 1.0) > 2 * smoothed_max(lone, 1.0)
    assert smoothed_max(lone, 0.0) == pytest.approx(1.0)  # no blur: the plain max
    tiny = torch.rand(2, 1, 3, 3)  # a grid smaller than the kernel blurs less, never fails
    assert smoothed_max(tiny, 1.0).shape == (2,)
