"""The learning loop's safety and its scorer on real magnetic-tile parts (slow).

Loose sanity bounds only; the loop's quality targets live in bench/RESULTS_replay.md and
bench/RESULTS_scorer.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_parts import MAGNETIC_TILE

from adcore.audit import miss_rate_estimate
from adcore.datasets import load_mvtec
from adcore.detectors.base import load_many
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.feedback_scorer import FeedbackScorer, train_feedback_scorer
from adcore.metrics import image_metrics, rates_at_threshold
from adcore.thresholds import cap_censored_raise, select_threshold

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="../shared/datasets not present"),
]


@pytest.fixture(scope="module")
def scored() -> dict:
    """PatchCore fitted on 60 good tiles; scores and vectors of every 3rd test tile."""
    dataset = load_mvtec(MAGNETIC_TILE, max_train=60)
    detector = PatchCore(PatchCoreConfig(image_size=160), device="cpu")
    detector.fit([sample.path for sample in dataset.train])
    test = list(dataset.test[::3])
    loaded, failures = load_many([sample.path for sample in test])
    assert not failures
    predictions = detector.predict([image.pixels for image in loaded])
    return {
        "calibrated": detector.calibrated_threshold,
        "scores": np.array([p.score for p in predictions]),
        "vectors": np.stack([p.embedding for p in predictions]),
        "labels": np.array([sample.label for sample in test]),
    }


def test_thresholds_chosen_on_censored_real_reviews_never_exceed_the_calibrated_one(
    scored: dict,
) -> None:
    scores, labels, calibrated = scored["scores"], scored["labels"], scored["calibrated"]
    stream = np.random.default_rng(0).permutation(len(labels))
    reviewed = [i for i in stream if scores[i] >= 0.9 * calibrated]  # what the queue shows
    assert labels[reviewed].sum() > 0 and (labels[reviewed] == 0).sum() > 0
    for n_reviews in (5, 20, len(reviewed)):  # as reviews accumulate
        seen = np.array(reviewed[:n_reviews])
        if labels[seen].sum() == 0:
            continue
        chosen = select_threshold(scores[seen], labels[seen], target_fnr=0.01).value
        decision = cap_censored_raise(chosen, calibrated, miss_rate_estimate(0, 0), 0.01)
        assert decision.value == min(chosen, calibrated)
        safe = rates_at_threshold(labels, scores, decision.value)
        assert safe.fnr <= rates_at_threshold(labels, scores, calibrated).fnr


def test_the_feedback_scorer_learns_from_labelled_real_parts(scored: dict, tmp_path) -> None:
    scores, vectors, labels = scored["scores"], scored["vectors"], scored["labels"]
    train = np.arange(len(labels)) % 2 == 0
    scorer, report = train_feedback_scorer(scores[train], vectors[train], labels[train])
    held_out = scorer.predict_proba(scores[~train], vectors[~train])
    assert np.all((held_out >= 0) & (held_out <= 1))
    assert image_metrics(labels[~train], held_out).auroc > 0.7  # a broken scorer is near 0.5
    scorer.save(tmp_path / "scorer")
    again = FeedbackScorer.load(tmp_path / "scorer")
    np.testing.assert_allclose(again.predict_proba(scores[~train], vectors[~train]), held_out)
