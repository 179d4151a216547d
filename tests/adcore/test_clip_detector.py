"""CLIP detector (WinCLIP / WinCLIP+) on a tiny random open_clip ViT, without network access.

Shapes, determinism, the zero- and few-shot paths end to end, save/load by reference, and
clear errors for missing weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_tiny import TINY_CLIP, NetworkGuard, save_tiny_clip, write_tiny_checkpoint
from synthetic_parts import make_part

from adcore.detectors.clip import ClipConfig, ClipDetector, clip_unavailable
from adcore.detectors.clip.torch_model import window_layout
from adcore.detectors.clip.weights import resolve_clip_weights
from adcore.detectors.registry import build_detector, load_any_model
from adcore.errors import DatasetError, ModelFileError, WeightsNotFoundError
from adcore.persistence import file_sha256


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and empty weight caches (HOME and the Hugging Face hub cache)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    guard = NetworkGuard().install(monkeypatch)
    yield guard
    assert guard.attempts == []


def _detector(checkpoint: Path, **overrides) -> ClipDetector:
    settings = {"model_name": TINY_CLIP, "pretrained": str(checkpoint), "image_size": 48}
    settings.update(overrides)
    return build_detector("clip", device="cpu", **settings)


GOOD = [make_part(i, size=40) for i in range(4)]
BAD = [make_part(50 + i, size=40, defect=True) for i in range(2)]


def test_window_layout_covers_every_patch() -> None:
    windows, coverage = window_layout((4, 4), 2)
    assert windows.shape == (9, 4) and coverage.shape == (9, 16)
    counts = coverage.sum(0).view(4, 4)
    assert counts[0, 0] == 1 and counts[1, 1] == 4 and counts[0, 1] == 2
    assert windows[0].tolist() == [0, 1, 4, 5]
    with pytest.raises(ValueError, match="does not fit"):
        window_layout((4, 4), 5)


def test_strided_windows_still_cover_every_patch() -> None:
    windows, coverage = window_layout((5, 5), 2, stride=2)
    assert windows.shape == (9, 4)  # starts 0, 2, 3 in each direction
    assert bool((coverage.sum(0) >= 1).all())
    assert windows[-1].tolist() == [18, 19, 23, 24]


def test_predictions_have_the_typed_shapes(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint)
    preds = detector.predict(GOOD[:2] + [np.zeros((30, 70, 3), np.uint8)])
    assert len(preds) == 3
    for pred in preds:
        assert pred.anomaly_map.shape == (48, 48) and pred.anomaly_map.dtype == np.float32
        assert 0.0 <= pred.score <= 1.0 and pred.threshold is None and pred.is_defect is None
        assert pred.embedding is not None and pred.embedding.shape == (32,)
    assert detector.model.grid == (4, 4) and detector.model.native_size == (32, 32)


def test_default_image_size_is_the_clip_input(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint, image_size=None)
    assert detector.config.image_size == 32
    assert detector.predict(GOOD[:1])[0].anomaly_map.shape == (32, 32)


def test_scores_are_deterministic(tiny_checkpoint: Path) -> None:
    first = _detector(tiny_checkpoint).predict(GOOD)
    again = _detector(tiny_checkpoint).predict(GOOD)
    for a, b in zip(first, again, strict=True):
        assert a.score == b.score
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


def test_object_name_changes_the_text_embeddings(tiny_checkpoint: Path) -> None:
    generic = _detector(tiny_checkpoint).model.text_embeddings
    named = _detector(tiny_checkpoint, object_name="metal_nut").model.text_embeddings
    assert generic.shape == (2, 32)
    torch.testing.assert_close(generic.norm(dim=1), torch.ones(2))
    assert not torch.allclose(generic, named)


def test_zero_shot_map_is_the_harmonic_mean_of_window_scores(tiny_checkpoint: Path) -> None:
    model = _detector(tiny_checkpoint, window_sizes=[2]).model
    x = torch.from_numpy(np.stack(GOOD[:1])).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        features = model.encode_image(x)
        image, patch_map = model.zero_shot(features)
        window_scores = model.anomalous_probability(features["win2"])[0]
    windows, _ = window_layout((4, 4), 2)
    for patch in (0, 5, 15):
        covering = [w for w in range(windows.shape[0]) if patch in windows[w].tolist()]
        scores = window_scores[covering]
        expected = len(covering) / (1.0 / scores).sum()
        assert patch_map[0, patch].item() == pytest.approx(expected.item(), rel=1e-5)
    assert image.shape == (1,) and patch_map.shape == (1, 16)


def test_zero_shot_end_to_end(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint)
    report = detector.fit([])
    assert report.details["mode"] == "zero-shot" and report.details["shots"] == 0
    assert detector.model.memory_size == 0 and detector.threshold is None
    preds = detector.predict(GOOD + BAD)
    assert len({round(p.score, 6) for p in preds}) > 1  # the images are told apart


def test_shots_zero_ignores_the_given_images(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint, shots=0)
    report = detector.fit(GOOD)
    assert report.details["mode"] == "zero-shot" and detector.model.memory_size == 0


def test_few_shot_references_score_as_normal(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint, calibration_fraction=0.0)
    report = detector.fit(GOOD[:2])
    per_image = 16 + 9 + 4  # patches + 2x2 windows + 3x3 windows on the 4x4 grid
    assert report.details["mode"] == "few-shot" and report.details["shots"] == 2
    assert detector.model.memory_size == 2 * per_image
    x = torch.from_numpy(np.stack([GOOD[0], BAD[0]])).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear")
    with torch.inference_mode():
        few = detector.model.few_shot(detector.model.encode_image(x))
    assert few.shape == (2, 16)
    assert few[0].max().item() < 1e-3  # a reference finds itself in the memory
    assert few[1].max().item() > few[0].max().item()
    zero_shot = _detector(tiny_checkpoint).predict(GOOD[:1])[0].score
    assert detector.predict(GOOD[:1])[0].score != zero_shot


def test_shots_pick_a_subset_and_calibration_sets_a_threshold(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint, shots=3, calibration_fraction=0.34)
    report = detector.fit(GOOD)
    assert report.n_images == 3 and report.details["shots"] == 3  # the held-out one joins
    assert detector.threshold is not None and len(detector.training_digests) == 3
    assert detector.predict(GOOD[:1])[0].is_defect is not None


def test_update_adds_references(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint, calibration_fraction=0.0)
    detector.fit(GOOD[:1])
    before, digests = detector.model.memory_size, list(detector.training_digests)
    assert detector.update(GOOD[1:2]) == 29
    assert detector.model.memory_size == before + 29
    assert len(detector.training_digests) == len(digests) + 1


def test_unreadable_references_are_a_dataset_error(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint)
    with pytest.raises(DatasetError, match="No usable good image"):
        detector.fit([b"not an image"])


def test_save_load_round_trip_keeps_scores_without_copying_clip(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    detector = _detector(tiny_checkpoint, object_name="bottle", calibration_fraction=0.0)
    detector.fit(GOOD[:2])
    detector.with_threshold(0.4)
    before = detector.predict(GOOD + BAD)
    detector.save(tmp_path / "model")

    document = json.loads((tmp_path / "model" / "config.json").read_text())
    assert document["kind"] == "clip"
    assert document["clip_weights"]["sha256"] == file_sha256(tiny_checkpoint)
    assert document["clip_weights"]["pretrained"] == str(tiny_checkpoint)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model" / "model.safetensors"), framework="pt") as fh:
        names = set(fh.keys())
    assert names == {"text_embeddings", "memory_patch", "memory_win2", "memory_win3"}

    loaded = load_any_model(tmp_path / "model", device="cpu")
    assert isinstance(loaded, ClipDetector) and loaded.threshold == 0.4
    assert loaded.config.object_name == "bottle"
    after = loaded.predict(GOOD + BAD)
    for a, b in zip(before, after, strict=True):
        assert a.score == b.score and a.is_defect == b.is_defect
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


def test_zero_shot_detector_saves_and_loads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    detector = _detector(tiny_checkpoint)
    detector.fit([])
    detector.save(tmp_path / "zs")
    loaded = ClipDetector.load(tmp_path / "zs", device="cpu")
    assert loaded.model.memory_size == 0
    assert loaded.predict(GOOD[:1])[0].score == detector.predict(GOOD[:1])[0].score


def test_load_refuses_missing_or_changed_clip_weights(tmp_path: Path, tiny_checkpoint) -> None:
    checkpoint = write_tiny_checkpoint(tmp_path / "own.safetensors", seed=1)
    detector = _detector(checkpoint)
    detector.fit(GOOD[:1])
    detector.save(tmp_path / "model")
    write_tiny_checkpoint(checkpoint, seed=2)  # other weights at the same path
    with pytest.raises(ModelFileError, match="sha256 differs"):
        ClipDetector.load(tmp_path / "model", device="cpu")
    checkpoint.unlink()
    with pytest.raises(WeightsNotFoundError, match="checkpoint file not found"):
        load_any_model(tmp_path / "model", device="cpu")


def test_missing_weights_are_clear_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="not in the local cache"):
        ClipDetector(ClipConfig(), device="cpu")  # ViT-B-16-plus-240 / laion400m_e32
    with pytest.raises(WeightsNotFoundError, match="neither a checkpoint file nor"):
        resolve_clip_weights("ViT-B-16-plus-240", "no_such_tag")
    with pytest.raises(WeightsNotFoundError, match="not found"):
        resolve_clip_weights(TINY_CLIP, str(tmp_path / "gone.safetensors"))
    with pytest.raises(WeightsNotFoundError, match="Unknown CLIP model"):
        resolve_clip_weights("No-Such-ViT", "openai")
    with pytest.raises(WeightsNotFoundError, match="not supported"):
        resolve_clip_weights("RN50", "openai")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="Could not load CLIP weights"):
        _detector(junk)


def test_clip_unavailable_gives_a_reason_or_none(tiny_checkpoint: Path) -> None:
    assert clip_unavailable(TINY_CLIP, str(tiny_checkpoint)) is None
    reason = clip_unavailable("ViT-B-16-plus-240", "laion400m_e32")
    assert reason is not None and "docs/clip.md" in reason


def test_pretrained_tag_loads_from_the_url_cache(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    from open_clip import pretrained

    url = "https://example.invalid/weights/loupe-tiny-clip-tag.safetensors"
    monkeypatch.setitem(pretrained._PRETRAINED, TINY_CLIP, {"tinytag": pretrained._pcfg(url=url)})
    assert "not in the local cache" in clip_unavailable(TINY_CLIP, "tinytag")
    cache = tmp_path / "home" / ".cache" / "clip"
    cache.mkdir(parents=True)
    (cache / "loupe-tiny-clip-tag.safetensors").write_bytes(tiny_checkpoint.read_bytes())
    assert clip_unavailable(TINY_CLIP, "tinytag") is None
    by_tag = _detector(tiny_checkpoint, pretrained="tinytag").predict(GOOD[:1])[0].score
    assert by_tag == _detector(tiny_checkpoint).predict(GOOD[:1])[0].score


def test_pretrained_tag_resolves_from_the_hub_cache(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--timm--vit_base_patch16_plus_clip_240.laion400m_e31"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    found = resolve_clip_weights("ViT-B-16-plus-240", "laion400m_e31")
    assert found.checkpoint == (snapshot / "open_clip_pytorch_model.bin").resolve()
    assert found.tag_config["hf_hub"].startswith("timm/")


def test_window_stride_reaches_the_detector(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint, window_stride=2, calibration_fraction=0.0)
    detector.fit(GOOD[:1])
    assert detector.model.memory_size == 16 + 4 + 4  # 2x2: starts 0, 2 per axis; 3x3: 0, 1
    assert detector.predict(GOOD[:1])[0].anomaly_map.shape == (48, 48)


def test_torch_state_dict_checkpoints_load_without_running_pickled_code(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    state = load_file(str(tiny_checkpoint))
    torch.save(state, tmp_path / "tiny.bin")
    assert _detector(tmp_path / "tiny.bin").predict(GOOD[:1])[0].score == pytest.approx(
        _detector(tiny_checkpoint).predict(GOOD[:1])[0].score
    )
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": state, "hook": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(WeightsNotFoundError, match="Could not load CLIP weights"):
        _detector(tmp_path / "evil.pt")
    assert not marker.exists()


class _Evil:
    """A pickled object: loading it with full unpickling would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
