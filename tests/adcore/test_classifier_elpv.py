"""The supervised classifier on real ELPV solar cells (a small subset, small resolution)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from adcore.classifier import Classifier, ClassifierConfig, LabelledImage, train_classifier
from adcore.datasets import load_elpv
from adcore.detectors.base import load_many
from adcore.gradcam import defect_heatmaps


@pytest.mark.slow
def test_beats_chance_on_held_out_elpv_cells(tmp_path) -> None:
    """Lite0 on 100 certain mono cells (112 px, 4 epochs) ranks 40 unseen cells well."""
    dataset = load_elpv("mono", n_train=1)
    good = [s for s in dataset.train + dataset.test if s.label == 0]
    defect = [s for s in dataset.test if s.label == 1]
    rng = random.Random(7)
    rng.shuffle(good)
    rng.shuffle(defect)
    train = [LabelledImage(s.path, "good") for s in good[:60]]
    train += [LabelledImage(s.path, "defect") for s in defect[:40]]
    held_out = good[60:80] + defect[40:60]
    config = ClassifierConfig(image_size=112, batch_size=16, max_epochs=4, patience=4)

    classifier, report = train_classifier(train, config, device="cpu")
    assert report.n_train + report.n_validation == 100 and not report.skipped
    assert (
        report.class_counts["train"]["defect"] + report.class_counts["validation"]["defect"] == 40
    )

    loaded, failures = load_many([s.path for s in held_out])
    assert not failures
    labels = np.array([s.label for s in held_out])
    scores, _ = classifier.predict_proba([im.pixels for im in loaded])
    auroc = roc_auc_score(labels, scores)
    assert auroc >= 0.7, f"held-out AUROC {auroc:.3f}"
    flagged = scores >= classifier.threshold
    assert flagged[labels == 1].mean() > flagged[labels == 0].mean()

    classifier.save(tmp_path / "elpv")
    again = Classifier.load(tmp_path / "elpv", device="cpu")
    assert np.array_equal(again.predict_proba([im.pixels for im in loaded])[0], scores)
    heatmap = defect_heatmaps(again, [loaded[-1].pixels])[0]
    assert heatmap.shape == (112, 112) and 0.0 <= heatmap.min() <= heatmap.max() <= 1.0
