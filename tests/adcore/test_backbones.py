"""Backbones: the shipped Lite0/Lite2 weights really load; missing weights give a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adcore import backbones
from adcore.backbones import FeatureExtractor, build_classifier, load_state_dict_by_position
from adcore.errors import WeightsNotFoundError


def _chelsea(size: int) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    img = Image.fromarray(skimage_data.chelsea()).resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()[None] / 255.0
    return (x - 0.5) / 0.5


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_shipped_weights_classify_a_cat(name: str) -> None:
    model = build_classifier(name)
    with torch.inference_mode():
        top = int(model(_chelsea(224)).argmax())
    assert top in (281, 282, 285), f"chelsea classified as ImageNet class {top}"


def test_random_weights_do_not_classify_a_cat() -> None:
    """Guards the test above: it can fail, since random weights do not find the cat."""
    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", pretrained=False)
    with torch.inference_mode():
        probs = model(_chelsea(224)).softmax(1)[0]
    assert float(probs[[281, 282, 285]].sum()) < 0.5


def test_position_mapping_refuses_mismatched_tensors() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(WeightsNotFoundError, match="do not fit"):
        load_state_dict_by_position(model, {"a": torch.zeros(4, 4), "b": torch.zeros(4)})
    with pytest.raises(WeightsNotFoundError, match="tensors"):
        load_state_dict_by_position(model, {"a": torch.zeros(4, 3)})


def test_feature_extractor_shapes_and_fast_path_matches_eager() -> None:
    fe = FeatureExtractor("efficientnet_lite0")
    assert fe.channels == [40, 112] and fe.strides == [8, 16]
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        fast = fe(x)
    with torch.no_grad(), torch.enable_grad():
        eager = fe(x)
    assert [tuple(f.shape) for f in fast] == [(2, 40, 8, 8), (2, 112, 4, 4)]
    for a, b in zip(fast, eager, strict=True):
        assert torch.allclose(a, b.detach(), atol=1e-3)


def test_missing_torchvision_weights_name_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("LOUPE_WEIGHTS_DIR", raising=False)

    def offline(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsNotFoundError, match="resnet18-f37072fd.pth"):
        FeatureExtractor("resnet18")
    with pytest.raises(WeightsNotFoundError, match="not found"):
        FeatureExtractor("resnet18", weights_path=tmp_path / "nope.pth")


def test_torchvision_weights_load_from_a_local_file(tmp_path, monkeypatch) -> None:
    """A torchvision-format checkpoint in $LOUPE_WEIGHTS_DIR is found and loaded."""
    torchvision_models = pytest.importorskip("torchvision.models")
    reference = torchvision_models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setenv("LOUPE_WEIGHTS_DIR", str(tmp_path))
    model = build_classifier("resnet18")
    assert torch.equal(model.conv1.weight, reference.conv1.weight)


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="Unknown backbone"):
        backbones.get_spec("vgg-nonexistent")
