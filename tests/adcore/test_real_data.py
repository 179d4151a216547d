"""Integration on real data: the detector separates real defects from good parts.

The bounds are loose sanity checks (a broken pipeline scores near 0.5); quality targets live in
bench/RESULTS.md, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_parts import MAGNETIC_TILE

from adcore.datasets import load_elpv, load_mvtec
from adcore.detectors.base import load_many
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.detectors.registry import load_detector
from adcore.metrics import image_metrics, pixel_auroc

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="../shared/datasets not present")
def test_magnetic_tile_subset(tmp_path) -> None:
    ds = load_mvtec(MAGNETIC_TILE, max_train=40)
    test = list(ds.test[::5])
    detector = PatchCore(PatchCoreConfig(image_size=256, calibration_fraction=0.0))
    detector.fit([s.path for s in ds.train])
    loaded, failures = load_many([s.path for s in test])
    assert not failures
    preds = detector.predict([im.pixels for im in loaded])
    labels = np.array([s.label for s in test])
    assert image_metrics(labels, np.array([p.score for p in preds])).auroc > 0.7
    from PIL import Image

    masks = np.stack(
        [
            np.asarray(Image.open(s.mask_path).convert("L").resize((256, 256))) > 127
            if s.mask_path
            else np.zeros((256, 256), bool)
            for s in test
        ]
    )
    assert pixel_auroc(masks, np.stack([p.anomaly_map for p in preds])) > 0.6
    detector.save(tmp_path / "m")
    again = load_detector(tmp_path / "m").predict([loaded[0].pixels])[0]
    assert again.score == pytest.approx(preds[0].score, rel=1e-5)


def test_elpv_subset_with_calibrated_threshold() -> None:
    ds = load_elpv("mono", n_train=200)
    detector = PatchCore(PatchCoreConfig(image_size=160))
    report = detector.fit([s.path for s in ds.train[:60]])
    assert detector.threshold is not None and report.details["threshold"] == detector.threshold
    test = [s for s in ds.test if s.label == 0][:20] + [s for s in ds.test if s.label == 1][:20]
    loaded, _ = load_many([s.path for s in test])
    scores = np.array([p.score for p in detector.predict([im.pixels for im in loaded])])
    labels = np.array([s.label for s in test])
    assert image_metrics(labels, scores).auroc > 0.7
