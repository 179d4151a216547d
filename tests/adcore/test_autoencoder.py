"""Tests for the reconstruction-autoencoder detector, on tiny synthetic images."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adcore.detectors.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    AutoencoderModel,
    reconstruction_loss,
)
from adcore.detectors.base import to_tensor_batch
from adcore.errors import DatasetError, ModelFileError

SIZE = 32


def _config(**overrides) -> AutoencoderConfig:
    base = {
        "image_size": SIZE,
        "depth": 3,
        "base_channels": 8,
        "max_channels": 32,
        "latent_channels": 8,
        "blur_sigma": 1.0,
        "train_steps": 8,
        "batch_size": 8,
        "update_steps": 2,
    }
    return AutoencoderConfig(**{**base, **overrides})


def _gradient(rng: np.random.Generator, noise: float = 4.0) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: a horizontal ramp with a random offset, plus noise."""
    ramp = np.linspace(40.0, 200.0, SIZE)[None, :] + rng.uniform(-10, 10)
    img = np.repeat(ramp, SIZE, axis=0)[..., None] + rng.normal(0.0, noise, (SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _goods(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_gradient(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def fitted() -> Autoencoder:
    det = Autoencoder(_config(train_steps=12), device="cpu")
    det.fit(_goods(20))
    return det


def test_module_shapes() -> None:
    model = AutoencoderModel(64, depth=4, base_channels=4, max_channels=16, latent_channels=4)
    x = torch.rand(2, 3, 64, 64)
    assert model.encoder(x).shape == (2, 4, 4, 4)
    assert model.reconstruct(x).shape == (2, 3, 64, 64)
    scores, maps = model.eval()(x)
    assert scores.shape == (2,) and maps.shape == (2, 64, 64)
    with pytest.raises(ValueError):
        AutoencoderModel(60, depth=3)


def test_image_score_is_mean_of_top_fraction() -> None:
    model = AutoencoderModel(32, depth=3, top_fraction=0.01)
    maps = torch.zeros(1, 32, 32)
    maps.view(-1)[:11] = torch.arange(11.0)  # k = ceil(0.01 * 1024) = 11
    assert model.image_scores(maps).item() == pytest.approx(5.0)


def test_predict_shapes_and_fit_report(fitted: Autoencoder) -> None:
    images = _goods(3, seed=1) + [np.zeros((48, 40, 3), np.uint8)]
    preds = fitted.predict(images)
    assert len(preds) == 4
    for p in preds:
        assert p.anomaly_map.shape == (SIZE, SIZE) and p.anomaly_map.dtype == np.float32
        assert np.isfinite(p.score) and p.threshold == fitted.threshold
    assert preds[0].map_resized(48, 40).shape == (48, 40)
    assert fitted.threshold is not None
    assert len(fitted.training_digests) == 20  # 18 trained + 2 calibration images learnt after


def test_fit_is_deterministic() -> None:
    images, probe = _goods(10), _goods(3, seed=5)
    a = Autoencoder(_config(train_steps=4), device="cpu")
    b = Autoencoder(_config(train_steps=4), device="cpu")
    ra, rb = a.fit(images), b.fit(images)
    assert ra.details["losses"] == rb.details["losses"]
    np.testing.assert_array_equal(
        [p.score for p in a.predict(probe)], [p.score for p in b.predict(probe)]
    )
    c = Autoencoder(_config(train_steps=4, seed=1), device="cpu")
    assert c.fit(images).details["losses"] != ra.details["losses"]


def test_training_lowers_reconstruction_loss() -> None:
    images = _goods(16)
    det = Autoencoder(
        _config(train_steps=30, learning_rate=5e-3, calibration_fraction=0.0), device="cpu"
    )
    batch = to_tensor_batch(images[:8], SIZE)

    def loss() -> float:
        with torch.inference_mode():
            return float(reconstruction_loss(batch, det.model.reconstruct(batch)))

    before = loss()
    report = det.fit(images)
    assert loss() < 0.5 * before
    assert report.details["loss_last"] < report.details["loss_first"]


def test_progress_is_reported_per_step() -> None:
    calls: list[tuple[float, str]] = []
    det = Autoencoder(_config(train_steps=5), device="cpu")
    det.fit(_goods(10), progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert sum("Training step" in m for _, m in calls) == 5
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_bright_square_stands_out() -> None:
    det = Autoencoder(
        _config(train_steps=60, learning_rate=5e-3, calibration_fraction=0.0), device="cpu"
    )
    det.fit(_goods(32))
    good = _goods(1, seed=99)[0]
    defect = good.copy()
    defect[8:18, 14:24] = 255
    p_good, p_defect = det.predict([good, defect])
    assert p_defect.score > 2.0 * p_good.score
    row, col = np.unravel_index(np.argmax(p_defect.anomaly_map), p_defect.anomaly_map.shape)
    assert 8 <= row < 18 and 14 <= col < 24


def test_update_adds_digests_and_lowers_their_score(fitted: Autoencoder, tmp_path: Path) -> None:
    fitted.save(tmp_path / "before")
    det = Autoencoder.load(tmp_path / "before", device="cpu")
    rng = np.random.default_rng(7)
    odd = [np.clip(_gradient(rng)[:, ::-1].astype(int) + 30, 0, 255).astype(np.uint8)]
    before = det.predict(odd)[0].score
    old_hash = det.training_hash
    det.config = replace(det.config, update_steps=20, update_learning_rate=5e-3)
    assert det.update(odd) == 1
    assert det.predict(odd)[0].score < before
    assert len(det.training_digests) == len(fitted.training_digests) + 1
    assert det.training_hash != old_hash


def test_save_load_round_trip(fitted: Autoencoder, tmp_path: Path) -> None:
    probe = _goods(4, seed=3)
    fitted.save(tmp_path / "m")
    loaded = Autoencoder.load(
        tmp_path / "m", device="cpu", expected_training_hash=fitted.training_hash
    )
    assert loaded.config == fitted.config
    assert loaded.threshold == fitted.threshold
    assert loaded.training_digests == fitted.training_digests
    a, b = fitted.predict(probe), loaded.predict(probe)
    np.testing.assert_array_equal([p.score for p in a], [p.score for p in b])
    np.testing.assert_array_equal(a[0].anomaly_map, b[0].anomaly_map)
    with pytest.raises(ModelFileError):
        fitted.save(tmp_path / "m")
    fitted.save(tmp_path / "m", overwrite=True)
    with pytest.raises(ModelFileError):
        Autoencoder.load(tmp_path / "m", expected_training_hash="0" * 64)


def test_tampered_config_is_refused(fitted: Autoencoder, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    doc = json.loads(path.read_text())
    doc["config"]["latent_channels"] = 16
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError):
        Autoencoder.load(tmp_path / "m")


def test_unfitted_save_and_foreign_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError):
        Autoencoder(_config(), device="cpu").save(tmp_path / "x")
    from adcore.persistence import save_model

    save_model(tmp_path / "pc", kind="patchcore", config={}, tensors={"a": torch.zeros(1)})
    with pytest.raises(ModelFileError):
        Autoencoder.load(tmp_path / "pc")


def test_mismatched_weights_are_refused(fitted: Autoencoder, tmp_path: Path) -> None:
    from adcore.persistence import save_model

    tensors = dict(fitted.model.state_dict())
    tensors.pop(next(iter(tensors)))
    save_model(
        tmp_path / "m",
        kind="autoencoder",
        config=asdict(fitted.config),
        tensors=tensors,
        extra={"training_hash": fitted.training_hash, "training_digests": fitted.training_digests},
    )
    with pytest.raises(ModelFileError, match="weights do not match"):
        Autoencoder.load(tmp_path / "m")


def test_bad_files_are_skipped_and_reported(tmp_path: Path) -> None:
    paths = []
    for i, img in enumerate(_goods(6)):
        paths.append(tmp_path / f"good{i}.png")
        Image.fromarray(img).save(paths[-1])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    det = Autoencoder(_config(train_steps=2), device="cpu")
    report = det.fit([*paths, tmp_path / "empty.png", tmp_path / "text.png"])
    assert report.n_images == 6
    assert {name for name, _ in report.skipped} == {"empty.png", "text.png"}
    pairs, failures = det.predict_files([paths[0], tmp_path / "text.png"])
    assert len(pairs) == 1 and [n for n, _ in failures] == ["text.png"]
    with pytest.raises(DatasetError):
        det.fit([tmp_path / "empty.png"])


def test_module_scores_and_embeds_in_one_pass() -> None:
    model = AutoencoderModel(64, depth=4, base_channels=4, max_channels=16, latent_channels=4)
    x = torch.rand(2, 3, 64, 64)

    with torch.inference_mode():
        scores, maps, vectors = model.eval().score_and_embed(x)
        plain_scores, plain_maps = model(x)

    assert vectors.shape == (2, 4) and vectors.dtype == torch.float32
    torch.testing.assert_close(scores, plain_scores)
    torch.testing.assert_close(maps, plain_maps)


def test_predictions_carry_no_embedding(fitted: Autoencoder) -> None:
    # The bottleneck vectors do not tell defect types apart (bench/RESULTS_explain.md).
    (prediction,) = fitted.predict(_goods(1, seed=5))

    assert prediction.embedding is None
