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
