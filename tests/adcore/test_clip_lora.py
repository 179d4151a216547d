"""CLIP adapters: LoRA (peft) on the attention projections + learnable prompt context.

Trained on labelled parts with an image-level loss; only adapter parameters change; save/load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clip_tiny import TINY_CLIP, NetworkGuard, save_tiny_clip
from synthetic_parts import make_part

from adcore.detectors.clip import ClipDetector
from adcore.detectors.clip.lora import (
    ClipAdapterConfig,
    attach_adapters,
    train_adapters,
    trainable_parameters,
    unmerge_adapters,
)
from adcore.detectors.registry import build_detector, load_any_model
from adcore.errors import DatasetError

PARTS = [make_part(i, size=32) for i in range(6)] + [
    make_part(100 + i, size=32, defect=True) for i in range(6)
]
LABELS = [0] * 6 + [1] * 6
FAST = ClipAdapterConfig(rank=4, alpha=8.0, n_context=2, epochs=8, learning_rate=1e-2)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip-lora"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    guard = NetworkGuard().install(monkeypatch)
    yield
    assert guard.attempts == []


def _detector(checkpoint: Path) -> ClipDetector:
    return build_detector(
        "clip", device="cpu", model_name=TINY_CLIP, pretrained=str(checkpoint), image_size=32
    )


def test_training_changes_only_adapter_parameters_and_lowers_the_loss(tiny_checkpoint) -> None:
    detector = _detector(tiny_checkpoint)
    frozen_before = {
        n: p.detach().clone() for n, p in detector.model.clip.named_parameters() if "lora_" not in n
    }
    attach_adapters(detector, FAST)
    trained = trainable_parameters(detector)
    assert {n for n, p in detector.model.clip.named_parameters() if p.requires_grad} == {
        n for n in trained if n != "context"
    }
    assert any(n.startswith("visual.") for n in trained) and any(
        n.startswith("transformer.") for n in trained
    )
    adapters_before = {n: p.detach().clone() for n, p in trained.items()}

    result = train_adapters(detector, PARTS, LABELS)

    assert result.n_images == 12 and len(result.losses) == FAST.epochs + 1
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert result.trainable_parameters == sum(p.numel() for p in trained.values())
    unmerge_adapters(detector)  # scoring uses the LoRA updates folded into the weights
    for name, param in detector.model.clip.named_parameters():
        if "lora_" not in name:
            original = name.replace(".base_layer", "")  # peft wraps the adapted modules
            exact = "in_proj_weight" not in name and "out_proj.base_layer.weight" not in name
            tolerance = 0.0 if exact else 1e-6  # unmerging rounds
            torch.testing.assert_close(
                param, frozen_before[original], rtol=0, atol=tolerance, msg=name
            )
    changed = [n for n, p in trained.items() if not torch.equal(p, adapters_before[n])]
    assert "context" in changed and any("lora_B" in n for n in changed)
    scores = np.array([p.score for p in detector.predict(PARTS)])
    assert scores[6:].mean() > scores[:6].mean()  # defects now look more anomalous


def test_adapters_save_and_load(tiny_checkpoint: Path, tmp_path: Path) -> None:
    detector = _detector(tiny_checkpoint)
    train_adapters(detector, PARTS, LABELS, ClipAdapterConfig(rank=2, n_context=2, epochs=1))
    detector.fit(PARTS[:2])  # references re-embedded through the adapted image tower
    before = detector.predict(PARTS)
    detector.save(tmp_path / "adapted")

    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapted" / "model.safetensors"), framework="pt") as fh:
        names = set(fh.keys())
    assert "adapter.context" in names and any("lora_A" in n for n in names)
    assert not any("in_proj_weight" in n or "token_embedding" in n for n in names)

    loaded = load_any_model(tmp_path / "adapted", device="cpu")
    assert loaded.adapter is not None and loaded.adapter.config.rank == 2
    for a, b in zip(before, loaded.predict(PARTS), strict=True):
        assert a.score == b.score
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)
    plain = _detector(tiny_checkpoint)
    plain.fit(PARTS[:2])
    assert plain.predict(PARTS[:1])[0].score != before[0].score


def test_training_needs_both_labels(tiny_checkpoint: Path) -> None:
    detector = _detector(tiny_checkpoint)
    with pytest.raises(DatasetError, match="good .0. and defective .1."):
        train_adapters(detector, PARTS[:6], LABELS[:6], FAST)
    with pytest.raises(ValueError, match="labels"):
        train_adapters(detector, PARTS, LABELS[:3], FAST)


def test_adapter_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="Bad adapter settings"):
        ClipAdapterConfig.from_dict({"towers": ["audio"]})
    assert ClipAdapterConfig.from_dict({"towers": ["visual"], "rank": 2}).towers == ("visual",)
