"""The command line: fit, score (JSON, bad files), benchmark --json, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adcore.cli import main

BENCH_KEYS = {
    "dataset",
    "detector",
    "n_train",
    "n_test",
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "f1_max",
    "fit_seconds",
    "score_ms_per_image",
    "peak_rss_mb",
}


def test_fit_then_score_json(mvtec_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert main(["fit", str(mvtec_tree), "--out", str(out), "--image-size", "64", "--quiet"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    capsys.readouterr()
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"")
    good = mvtec_tree / "test" / "good" / "000.png"
    bad = mvtec_tree / "test" / "scratch" / "000.png"
    assert main(["score", str(out), str(good), str(junk), str(bad), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    names = [r["image"] for r in payload["results"]]
    assert names == ["000.png", "000.png"]
    scores = [r["score"] for r in payload["results"]]
    assert scores[1] > scores[0]
    assert payload["results"][1]["verdict"] == "defect"
    assert payload["errors"][0]["image"] == "junk.jpg"
    assert "0 bytes" in payload["errors"][0]["error"] or "empty" in payload["errors"][0]["error"]


def test_benchmark_json_has_the_documented_fields(mvtec_tree: Path, capsys) -> None:
    assert main(["benchmark", str(mvtec_tree), "--image-size", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= BENCH_KEYS
    assert result["n_train"] == 12 and result["n_test"] == 8
    assert result["image_auroc"] == pytest.approx(1.0)
    assert 0.5 < result["pixel_auroc"] <= 1.0 and 0.0 < result["aupro"] <= 1.0


def test_benchmark_onnx_compares_the_export_with_torch(mvtec_tree: Path, capsys) -> None:
    args = ["benchmark", str(mvtec_tree), "--image-size", "64", "--json", "--onnx"]
    args += ["--image-score", "reweighted_max", "--backbone", "efficientnet_lite2"]
    assert main(args) == 0
    details = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["details"]
    assert details["onnx_max_relative_difference"] <= 1e-4
    assert details["onnx_verdict_changes"] == 0
    assert details["onnx_image_auroc"] == pytest.approx(1.0)
    assert details["onnx_ms_per_image"] > 0


def test_benchmark_without_masks_reports_null_pixel_metrics(mvtec_tree: Path, capsys) -> None:
    import shutil

    shutil.rmtree(mvtec_tree / "ground_truth")
    assert main(["benchmark", str(mvtec_tree), "--image-size", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pixel_auroc"] is None and result["aupro"] is None


def test_errors_are_messages_not_tracebacks(tmp_path: Path, capsys) -> None:
    assert main(["fit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "no-model"), "x.png"]) == 2
    assert "No model" in capsys.readouterr().err


# ---------------------------------------------------------------------- CLIP detector
@pytest.fixture
def tiny_clip_checkpoint(tmp_path: Path, monkeypatch) -> Path:
    """A tiny random open_clip ViT checkpoint; empty weight caches; no network allowed."""
    import huggingface_hub.constants
    from clip_tiny import NetworkGuard, register_tiny_clip, write_tiny_checkpoint

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    guard = NetworkGuard().install(monkeypatch)
    register_tiny_clip(tmp_path)
    yield write_tiny_checkpoint(tmp_path / "tiny-clip.safetensors")
    assert guard.attempts == []


def _clip_args(checkpoint: Path) -> list[str]:
    from clip_tiny import TINY_CLIP

    return ["--detector", "clip", "--clip-model", TINY_CLIP, "--clip-pretrained", str(checkpoint)]


@pytest.mark.parametrize("shots", [0, 2])
def test_benchmark_clip_zero_and_few_shot(
    mvtec_tree: Path, tiny_clip_checkpoint: Path, shots: int, capsys
) -> None:
    args = ["benchmark", str(mvtec_tree), *_clip_args(tiny_clip_checkpoint)]
    assert main([*args, "--shots", str(shots), "--image-size", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= BENCH_KEYS and result["detector"] == "clip"
    assert result["details"]["shots"] == shots
    assert result["details"]["mode"] == ("zero-shot" if shots == 0 else "few-shot")
    assert 0.0 <= result["image_auroc"] <= 1.0 and result["pixel_auroc"] is not None


def test_fit_and_score_with_clip(
    mvtec_tree: Path, tiny_clip_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "clip-model"
    fit = ["fit", str(mvtec_tree), "--out", str(out), *_clip_args(tiny_clip_checkpoint)]
    assert main([*fit, "--shots", "3", "--quiet"]) == 0
    document = json.loads((out / "config.json").read_text())
    assert document["config"]["object_name"] == "widget"  # the dataset name by default
    assert document["config"]["shots"] == 3
    capsys.readouterr()
    good = mvtec_tree / "test" / "good" / "000.png"
    assert main(["score", str(out), str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["image"] == "000.png"


def test_clip_without_weights_is_a_one_line_error(
    mvtec_tree: Path, tiny_clip_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    default = ["benchmark", str(mvtec_tree), "--detector", "clip"]
    assert main(default) == 2  # ViT-B-16-plus-240 / laion400m_e32 is not cached here
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CLIP weights") and "not in the local cache" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    missing = tmp_path / "nowhere.safetensors"
    assert main([*default, "--clip-model", "ViT-B-16", "--clip-pretrained", str(missing)]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert main([*default, "--clip-pretrained", "no_such_tag"]) == 2
    assert "known tags: laion400m_e31, laion400m_e32" in capsys.readouterr().err
