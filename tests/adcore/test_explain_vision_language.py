"""Tests of the vision-language explainer (a tiny random Qwen2-VL built here; no download)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from synthetic_parts import FAITHFUL_REWRITE, FLAGGED_FACTS
from tiny_language_model import (
    build_tiny_idefics3,
    build_tiny_language_model,
)

from adcore.anomaly_maps import overlay_image
from adcore.errors import ExplainerUnavailable
from adcore.explain.fact_check import check_text
from adcore.explain.language_model import (
    LanguageModelExplainer,
    clear_explainer_cache,
    language_model_unavailable,
    load_language_model,
)
from adcore.explain.sentences import render
from adcore.explain.vision_language import IMAGE_PREAMBLE, MAX_IMAGE_SIDE, VisionLanguageExplainer
from adcore.explain.vision_language_sources import TRUST_REMOTE_CODE_ENV, remote_code_allowed


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir: Path) -> VisionLanguageExplainer:
    loaded = load_language_model(str(tiny_vlm_dir))
    assert isinstance(loaded, VisionLanguageExplainer)
    return loaded


@pytest.fixture(autouse=True)
def fresh_explainer_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    clear_explainer_cache()
    yield
    clear_explainer_cache()


def part_and_overlay() -> tuple[PILImage.Image, PILImage.Image]:
    """A 64 x 48 grey part and its overlay of a map hot in the upper-left corner."""
    pixels = np.full((48, 64, 3), 120, dtype=np.uint8)
    anomaly_map = np.zeros((8, 8), dtype=np.float32)
    anomaly_map[:3, :3] = 50.0
    overlay = overlay_image(pixels, anomaly_map, 0.5, threshold=29.4)
    return PILImage.fromarray(pixels), PILImage.fromarray(overlay)


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_folder_loads_as_a_vision_language_model(
    tiny_vlm_dir: Path, vlm: VisionLanguageExplainer
) -> None:
    assert language_model_unavailable(str(tiny_vlm_dir)) is None
    assert vlm.name == str(tiny_vlm_dir)
    assert not vlm.uses_chat
    assert type(vlm.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert vlm.tokenizer.pad_token == "<pad>"


def spy_on_generate(
    explainer: VisionLanguageExplainer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Record the keyword inputs of the explainer's ``model.generate`` (which still runs)."""
    seen: dict[str, Any] = {}
    generate = explainer.model.generate

    def spy(**inputs: Any) -> Any:
        seen.update(inputs)
        return generate(**inputs)

    monkeypatch.setattr(explainer.model, "generate", spy)
    return seen


def test_random_model_sees_both_images_and_falls_back(
    vlm: VisionLanguageExplainer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real generation with two images: random words never pass the fact-check."""
    image, overlay = part_and_overlay()
    seen = spy_on_generate(vlm, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="adcore.explain.language_model"):
        result = vlm.rewrite(FLAGGED_FACTS, image=image, overlay=overlay, max_new_tokens=6)

    assert seen["image_grid_thw"].shape[0] == 2  # the part and its overlay
    assert seen["pixel_values"].shape[0] > 0
    assert seen["max_new_tokens"] == 6 and seen["do_sample"] is False
    assert result.used_model is False
    assert result.text == render(FLAGGED_FACTS) == result.grounded_text
    assert result.fact_check.problems
    assert check_text(result.text, FLAGGED_FACTS).passed
    assert "rejected" in caplog.text and vlm.name in caplog.text


def test_idefics3_smolvlm_architecture_sees_both_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolVLM-256M's architecture (Idefics3): the other processor family, end to end."""
    folder = build_tiny_idefics3(tmp_path / "idefics3")
    explainer = load_language_model(str(folder))
    assert isinstance(explainer, VisionLanguageExplainer)
    assert type(explainer.model).__name__ == "Idefics3ForConditionalGeneration"
    image, overlay = part_and_overlay()
    seen = spy_on_generate(explainer, monkeypatch)
    result = explainer.rewrite(FLAGGED_FACTS, image=image, overlay=overlay, max_new_tokens=4)

    # (batch, tiles of both images, 3, 32, 32): each 64 x 48 image is 2 x 2 tiles + a global view
    assert tuple(seen["pixel_values"].shape) == (1, 10, 3, 32, 32)
    assert result.used_model is False and result.text == render(FLAGGED_FACTS)


def test_real_generation_returns_new_words_only(vlm: VisionLanguageExplainer) -> None:
    image, overlay = part_and_overlay()
    request = vlm.request(FLAGGED_FACTS, with_images=True)
    generated = vlm._generate(request, [image, overlay], 5)
    assert isinstance(generated, str)
    assert len(generated.split()) <= 5
    assert "<|" not in generated  # special tokens are skipped


def test_faithful_generation_is_used_with_the_images(
    vlm: VisionLanguageExplainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, overlay = part_and_overlay()
    seen: dict[str, Any] = {}

    def faithful(request: str, images: list[PILImage.Image], max_new_tokens: int) -> str:
        seen.update(request=request, images=images, max_new_tokens=max_new_tokens)
        return f'"{FAITHFUL_REWRITE}"\n\nMore chatter with 99 numbers.'

    monkeypatch.setattr(vlm, "_generate", faithful)
    result = vlm.rewrite(FLAGGED_FACTS, image=image, overlay=overlay, max_new_tokens=42)

    assert result.used_model is True and result.text == FAITHFUL_REWRITE
    assert result.fact_check.passed
    assert [picture.size for picture in seen["images"]] == [image.size, overlay.size]
    assert all(picture.mode == "RGB" for picture in seen["images"])
    assert render(FLAGGED_FACTS) in seen["request"]
    assert IMAGE_PREAMBLE in seen["request"] and "Flagged as defective" in seen["request"]
    assert seen["max_new_tokens"] == 42

    vlm.rewrite(FLAGGED_FACTS)  # text only: no images, no note about them
    assert seen["images"] == [] and IMAGE_PREAMBLE not in seen["request"]

    large = PILImage.new("L", (4 * MAX_IMAGE_SIDE, 2 * MAX_IMAGE_SIDE))
    vlm.rewrite(FLAGGED_FACTS, image=large)  # shrunk to bound the image tokens
    (shrunk,) = seen["images"]
    assert shrunk.size == (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE // 2) and shrunk.mode == "RGB"
    assert large.size == (4 * MAX_IMAGE_SIDE, 2 * MAX_IMAGE_SIDE)  # the caller's is untouched


def test_contradicting_generation_falls_back(
    vlm: VisionLanguageExplainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        vlm, "_generate", lambda request, images, max_new_tokens: "Passed as good at 41.2."
    )
    result = vlm.rewrite(FLAGGED_FACTS, image=part_and_overlay()[0])
    assert result.used_model is False and result.text == render(FLAGGED_FACTS)


def test_missing_folder_and_config_are_unavailable(tmp_path: Path) -> None:
    absent = tmp_path / "absent-vlm"
    with pytest.raises(ExplainerUnavailable, match="does not exist"):
        VisionLanguageExplainer.from_pretrained(absent)
    with pytest.raises(ExplainerUnavailable, match="config.json is missing"):
        VisionLanguageExplainer.from_pretrained(tmp_path)
    assert "nothing is downloaded" in language_model_unavailable(str(absent))
    assert "config.json is missing" in language_model_unavailable(str(tmp_path))


def test_unsupported_vision_language_model_is_refused(tmp_path: Path) -> None:
    llava = write_config(tmp_path / "llava", {"model_type": "llava", "vision_config": {}})
    reason = language_model_unavailable(str(llava))
    assert reason is not None and "'llava'" in reason and "Qwen2-VL" in reason
    with pytest.raises(ExplainerUnavailable, match="does not support"):
        load_language_model(str(llava))
    with pytest.raises(ExplainerUnavailable, match="not a supported vision-language model"):
        VisionLanguageExplainer.from_pretrained(llava)


def test_text_model_stays_on_the_causal_path(tmp_path: Path) -> None:
    folder = build_tiny_language_model(tmp_path / "llm")
    assert isinstance(load_language_model(str(folder)), LanguageModelExplainer)
    with pytest.raises(ExplainerUnavailable, match="not a supported vision-language model"):
        VisionLanguageExplainer.from_pretrained(folder)


def test_broken_weights_give_a_clear_error(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    broken = write_config(
        tmp_path / "broken", json.loads((tiny_vlm_dir / "config.json").read_text())
    )
    with pytest.raises(ExplainerUnavailable, match="Could not load a vision-language model"):
        load_language_model(str(broken))


def test_adapters_on_a_vision_language_model_are_refused(
    tiny_vlm_dir: Path, vlm: VisionLanguageExplainer, tmp_path: Path
) -> None:
    with pytest.raises(ExplainerUnavailable, match="text-only language models"):
        load_language_model(str(tiny_vlm_dir), adapter_path=tmp_path)
    with pytest.raises(ExplainerUnavailable, match="text-only language models"):
        vlm.prompt_for(FLAGGED_FACTS)  # what adapter training builds its prompts with


def test_minicpmv_needs_a_per_source_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    minicpm = write_config(
        tmp_path / "minicpm", {"model_type": "minicpmv", "architectures": ["MiniCPMV"]}
    )
    reason = language_model_unavailable(str(minicpm))
    assert reason is not None and "trust_remote_code" in reason
    assert TRUST_REMOTE_CODE_ENV in reason
    with pytest.raises(ExplainerUnavailable, match="trust_remote_code"):
        load_language_model(str(minicpm))
    with pytest.raises(ExplainerUnavailable, match="trust_remote_code"):
        VisionLanguageExplainer.from_pretrained(minicpm)

    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, str(other))
    assert not remote_code_allowed(str(minicpm))
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, f"{other}:{minicpm}/")
    assert remote_code_allowed(str(minicpm))
    assert language_model_unavailable(str(minicpm)) is None
    # Allowed, but the folder holds no weights or model code: a clear error, no crash.
    with pytest.raises(ExplainerUnavailable, match="Could not load MiniCPM-V"):
        load_language_model(str(minicpm))


class FakeMiniCPM:
    """Records ``chat`` calls like MiniCPM-V 2.6's ``chat(image, msgs, tokenizer, ...)``."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def chat(self, **kwargs: Any) -> str:
        """Record the call's keyword arguments and return the fixed answer."""
        self.calls.append(kwargs)
        return self.answer


def test_minicpmv_chat_gets_the_images_then_the_request() -> None:
    model = FakeMiniCPM(FAITHFUL_REWRITE)
    tokenizer = object()
    explainer = VisionLanguageExplainer(model, tokenizer, name="minicpm", uses_chat=True)
    image, overlay = part_and_overlay()
    result = explainer.rewrite(FLAGGED_FACTS, image=image, overlay=overlay, max_new_tokens=30)

    assert result.used_model is True and result.text == FAITHFUL_REWRITE
    (call,) = model.calls
    assert call["image"] is None and call["tokenizer"] is tokenizer
    assert call["sampling"] is False and call["max_new_tokens"] == 30
    (message,) = call["msgs"]
    first, second, request = message["content"]
    assert message["role"] == "user"
    assert first.size == image.size and second.size == overlay.size
    assert render(FLAGGED_FACTS) in request

    model.answer = "The part looks fine."
    assert explainer.rewrite(FLAGGED_FACTS).text == render(FLAGGED_FACTS)
