"""ONNX export of PatchCore: Pillow-exact resize, score parity, metadata, registry, CLI, int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from synthetic_parts import make_part

from adcore.cli import main
from adcore.detectors.onnx_runtime import OnnxPatchCore
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.detectors.registry import load_detector
from adcore.errors import ModelFileError
from adcore.export.onnx_export import EXPORT_FILE, IR_VERSION, export_patchcore
from adcore.export.pil_resize import pil_bilinear_resize_nodes

SMALL = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, batch_size=4)


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    torch.manual_seed(0)  # random backbone weights: the same whatever ran before in the process
    detector = PatchCore(SMALL, device="cpu", pretrained=False)
    detector.fit([make_part(i) for i in range(12)])
    return detector


@pytest.fixture(scope="module")
def exported(fitted: PatchCore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_patchcore(fitted, tmp_path_factory.mktemp("export") / "tiny.onnx")


def _parts() -> list[np.ndarray]:
    """Goods and defects at the model size, larger, smaller and not square."""
    parts = [make_part(300 + i, size=64, defect=i % 2 == 1) for i in range(5)]
    parts += [make_part(400 + i, size=150, defect=i == 0) for i in range(3)]
    parts += [make_part(500, size=40), make_part(501, size=40, defect=True)]
    wide = make_part(502, size=120, defect=True)[:70]
    return [*parts, wide]


@pytest.mark.parametrize("shape", [(64, 64), (256, 256), (300, 200), (41, 97), (1000, 333)])
def test_the_graph_resizes_exactly_as_pillow(shape: tuple[int, int]) -> None:
    size = 64
    out, nodes, constants = pil_bilinear_resize_nodes("image", size)
    graph = helper.make_graph(
        nodes,
        "resize",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, None, None, 3])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, 3, size, size])],
        initializer=constants,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION
    )
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(shape[0])
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    got = session.run(None, {"image": image[None]})[0][0].transpose(1, 2, 0)
    np.testing.assert_array_equal(np.rint(got * 255).astype(np.uint8), expected)


def test_onnxruntime_scores_what_torch_scores(fitted: PatchCore, exported: Path) -> None:
    parts = _parts()
    torch_preds = fitted.predict(parts)
    onnx_preds = OnnxPatchCore(exported).predict(parts)
    assert len(onnx_preds) == len(parts)
    for want, got in zip(torch_preds, onnx_preds, strict=True):
        assert got.score == pytest.approx(want.score, rel=1e-4)
        assert got.is_defect == want.is_defect
        assert got.anomaly_map.shape == (64, 64) and got.anomaly_map.dtype == np.float32
        np.testing.assert_allclose(got.anomaly_map, want.anomaly_map, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.embedding, want.embedding, rtol=1e-3, atol=1e-4)
    assert {p.is_defect for p in onnx_preds} == {True, False}


def test_the_metadata_carries_threshold_scale_and_input_contract(
    fitted: PatchCore, exported: Path
) -> None:
    props = {p.key: json.loads(p.value) for p in onnx.load(str(exported)).metadata_props}
    assert props["loupe.threshold"] == fitted.threshold
    assert props["loupe.map_calibration"] == fitted.map_calibration.to_json()
    contract = props["loupe.input"]
    assert contract["dtype"] == "uint8" and contract["colour_order"] == "RGB"
    assert contract["shape"] == ["batch", "height", "width", 3]
    runtime = OnnxPatchCore(exported)
    assert runtime.threshold == fitted.threshold
    assert runtime.map_calibration == fitted.map_calibration
    assert runtime.training_hash == fitted.training_hash
    assert runtime.with_threshold(1e9).predict([make_part(1)])[0].is_defect is False


def test_the_registry_loads_the_export_of_a_model_directory(
    fitted: PatchCore, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="python -m adcore export"):
        load_detector(tmp_path / "m", runtime="onnx")
    export_patchcore(fitted, tmp_path / "m" / EXPORT_FILE)
    from_dir = load_detector(tmp_path / "m", runtime="onnx")
    from_file = load_detector(tmp_path / "m" / EXPORT_FILE)
    assert isinstance(from_dir, OnnxPatchCore) and isinstance(from_file, OnnxPatchCore)
    assert isinstance(load_detector(tmp_path / "m"), PatchCore)  # torch stays the default
    with pytest.raises(ValueError, match="runtime"):
        load_detector(tmp_path / "m", runtime="tensorrt")


def test_a_stale_export_is_refused(fitted: PatchCore, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    export_patchcore(fitted, tmp_path / "m" / EXPORT_FILE)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["training_hash"] = "0" * 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="export it again"):
        load_detector(tmp_path / "m", runtime="onnx")


def test_files_that_are_not_loupe_exports_are_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(
        helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION
        ),
        str(plain),
    )
    with pytest.raises(ModelFileError, match="Not a Loupe ONNX export"):
        OnnxPatchCore(plain)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a loadable"):
        OnnxPatchCore(junk)
    with pytest.raises(ModelFileError, match="No ONNX file"):
        OnnxPatchCore(tmp_path / "missing.onnx")


def test_export_refuses_unfitted_models_and_unknown_quantizations(
    fitted: PatchCore, tmp_path: Path
) -> None:
    with pytest.raises(ModelFileError, match="unfitted"):
        export_patchcore(PatchCore(SMALL, device="cpu", pretrained=False), tmp_path / "a.onnx")
    with pytest.raises(ModelFileError, match="quantization"):
        export_patchcore(fitted, tmp_path / "b.onnx", quantize="int4")
    with pytest.raises(ModelFileError, match="Only PatchCore"):
        export_patchcore(object(), tmp_path / "c.onnx")


def test_a_model_fitted_in_tiles_exports_and_scores_in_the_same_tiles(tmp_path: Path) -> None:
    config = PatchCoreConfig(
        image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, tile_size=64, tile_overlap=0.25
    )
    detector = PatchCore(config, device="cpu", pretrained=False)
    detector.fit([make_part(i, size=120) for i in range(8)])
    runtime = OnnxPatchCore(export_patchcore(detector, tmp_path / "tiled.onnx"))
    assert (runtime.tile_size, runtime.tile_overlap) == (64, 0.25)
    parts = [make_part(600, size=120), make_part(601, size=150, defect=True)[:100]]
    for part, want, got in zip(parts, detector.predict(parts), runtime.predict(parts), strict=True):
        assert got.anomaly_map.shape == want.anomaly_map.shape == part.shape[:2]
        assert got.score == pytest.approx(want.score, rel=1e-4)
        assert got.is_defect == want.is_defect
        np.testing.assert_allclose(got.anomaly_map, want.anomaly_map, rtol=1e-4, atol=1e-4)


def test_an_export_cannot_learn(exported: Path) -> None:
    runtime = OnnxPatchCore(exported)
    with pytest.raises(ModelFileError, match="export again"):
        runtime.update([make_part(1)])


def test_int8_export_runs_and_says_it_is_quantized(fitted: PatchCore, tmp_path: Path) -> None:
    path = export_patchcore(fitted, tmp_path / "int8.onnx", quantize="int8")
    runtime = OnnxPatchCore(path)
    assert runtime.metadata["quantization"] == "int8"
    assert runtime.threshold == fitted.threshold
    preds = runtime.predict(_parts()[:3])
    assert all(np.isfinite(p.score) and np.isfinite(p.anomaly_map).all() for p in preds)


def test_cli_export_then_score_with_onnxruntime(fitted: PatchCore, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m"
    fitted.save(model)
    images = []
    for i, part in enumerate(_parts()[:4]):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(part).save(images[-1])
    assert main(["export", str(model), "--format", "onnx"]) == 0
    assert (model / EXPORT_FILE).is_file()
    capsys.readouterr()
    runs = {}
    for runtime in ("torch", "onnx"):
        argv = ["score", str(model), *map(str, images), "--json", "--runtime", runtime]
        assert main(argv) == 0
        runs[runtime] = json.loads(capsys.readouterr().out)["results"]
    for want, got in zip(runs["torch"], runs["onnx"], strict=True):
        assert got["score"] == pytest.approx(want["score"], rel=1e-4)
        assert got["verdict"] == want["verdict"]
    assert main(["export", str(tmp_path / "nowhere")]) == 2


def test_the_previous_image_score_rule_exports_with_parity(tmp_path: Path) -> None:
    config = PatchCoreConfig(
        backbone="efficientnet_lite2",
        image_size=64,
        coreset_ratio=0.1,
        calibration_fraction=0.25,
        image_score="reweighted_max",
    )
    detector = PatchCore(config, device="cpu", pretrained=False)
    detector.fit([make_part(i) for i in range(8)])
    runtime = OnnxPatchCore(export_patchcore(detector, tmp_path / "reweighted.onnx"))
    assert runtime.metadata["image_score"] == "reweighted_max"
    parts = _parts()
    for want, got in zip(detector.predict(parts), runtime.predict(parts), strict=True):
        assert got.score == pytest.approx(want.score, rel=1e-4)
        assert got.is_defect == want.is_defect
