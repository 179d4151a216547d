"""Choosing the scoring runtime: torch, or the model's ONNX export written on first use."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_parts import make_part

from adcore.detectors.autoencoder import Autoencoder, AutoencoderConfig
from adcore.detectors.onnx_runtime import OnnxPatchCore
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.export.onnx_export import EXPORT_FILE
from services.scoring.runtime import (
    ONNX,
    TORCH,
    RuntimeChoiceError,
    configured_runtime,
    scoring_detector,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    config = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25)
    detector = PatchCore(config, device="cpu")
    detector.fit([make_part(i) for i in range(8)])
    detector.save(tmp_path / "v1")
    return tmp_path / "v1"


def test_the_runtime_comes_from_the_environment() -> None:
    assert configured_runtime({}) == TORCH
    assert configured_runtime({"LOUPE_RUNTIME": " ONNX "}) == ONNX
    with pytest.raises(RuntimeChoiceError, match="LOUPE_RUNTIME='tensorrt'"):
        configured_runtime({"LOUPE_RUNTIME": "tensorrt"})


def test_onnx_writes_the_export_once_and_scores_what_torch_scores(model_dir: Path) -> None:
    first = scoring_detector(model_dir, ONNX)
    assert isinstance(first.detector, OnnxPatchCore) and first.runtime == ONNX
    assert "Exported" in first.note and (model_dir / EXPORT_FILE).is_file()
    written = (model_dir / EXPORT_FILE).stat().st_mtime_ns

    again = scoring_detector(model_dir, ONNX)
    assert again.note == "" and (model_dir / EXPORT_FILE).stat().st_mtime_ns == written

    torch_choice = scoring_detector(model_dir, TORCH)
    assert isinstance(torch_choice.detector, PatchCore)
    parts = [make_part(50), make_part(51, defect=True)]
    for want, got in zip(
        torch_choice.detector.predict(parts), again.detector.predict(parts), strict=True
    ):
        assert got.score == pytest.approx(want.score, rel=1e-4)
        assert got.is_defect == want.is_defect


def test_a_model_that_learned_since_its_export_is_exported_again(model_dir: Path) -> None:
    scoring_detector(model_dir, ONNX)
    old_export = (model_dir / EXPORT_FILE).read_bytes()
    detector = PatchCore.load(model_dir, device="cpu")
    detector.update([make_part(60)])
    detector.save(model_dir, overwrite=True)
    (model_dir / EXPORT_FILE).write_bytes(old_export)  # an export of the bank before the update

    renewed = scoring_detector(model_dir, ONNX)
    assert "Exported" in renewed.note
    assert renewed.detector.training_hash == detector.training_hash


def test_models_that_do_not_export_score_with_torch_and_say_so(tmp_path: Path) -> None:
    detector = Autoencoder(
        AutoencoderConfig(image_size=32, train_steps=2, batch_size=4), device="cpu"
    )
    detector.fit([make_part(i, size=32) for i in range(6)])
    detector.save(tmp_path / "ae")
    choice = scoring_detector(tmp_path / "ae", ONNX)
    assert choice.runtime == TORCH and "do not export" in choice.note
    assert not (tmp_path / "ae" / EXPORT_FILE).exists()


def test_warm_up_loads_each_active_model_once_and_skips_a_broken_one(
    factory, tmp_path: Path
) -> None:
    from active_model import fit_small_patchcore, project_with_active_model

    from db import Project
    from services.scoring.runtime import detector_loader, warm_up_active_models

    fitted = fit_small_patchcore()
    project_with_active_model(factory, "widgets", fitted, tmp_path / "models")
    broken = project_with_active_model(factory, "gears", fitted, tmp_path / "models-2")
    with factory() as session, session.begin():
        session.get(Project, broken).active_model_version.artifact_path = str(tmp_path / "gone")
    loader = detector_loader("torch")
    loaded = warm_up_active_models(factory, loader)
    assert len(loaded) == 1 and "models" in loaded[0]
    assert loader.cache_info().currsize == 1  # the first post finds it loaded
