"""Export parity on real images: onnxruntime scores what torch scores (magnetic tile).

A PatchCore fitted on 20 good magnetic-tile images scores 20 test images (goods and every defect
type, original sizes) with torch and with its ONNX export: the scores agree to a relative 1e-4
and no verdict changes. The bench (bench/export_parity.py) checks every test image.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_parts import MAGNETIC_TILE

from adcore.datasets import load_mvtec
from adcore.detectors.base import load_many
from adcore.detectors.onnx_runtime import OnnxPatchCore
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.export.onnx_export import export_patchcore

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="../shared/datasets not present")
def test_onnx_export_scores_magnetic_tile_like_torch(tmp_path) -> None:
    ds = load_mvtec(MAGNETIC_TILE, max_train=20)
    test = ds.test[:: max(1, len(ds.test) // 20)][:20]
    detector = PatchCore(PatchCoreConfig(calibration_fraction=0.2), device="cpu")
    detector.fit([s.path for s in ds.train])
    loaded, failures = load_many([s.path for s in test])
    assert not failures and len(loaded) == 20
    images = [im.pixels for im in loaded]
    assert len({im.shape for im in images}) > 1  # sizes vary: the in-graph resize is exercised

    runtime = OnnxPatchCore(export_patchcore(detector, tmp_path / "model.onnx"))
    want = detector.predict(images)
    got = runtime.predict(images)

    torch_scores = np.array([p.score for p in want])
    onnx_scores = np.array([p.score for p in got])
    relative = np.abs(onnx_scores - torch_scores) / np.abs(torch_scores)
    assert relative.max() <= 1e-4
    assert [p.is_defect for p in got] == [p.is_defect for p in want]
    assert {s.label for s in test} == {0, 1}
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b.anomaly_map, a.anomaly_map, rtol=1e-3, atol=1e-3)
