"""The feedback scorer: learns a defect direction in detector vectors, calibrated, saved safely."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adcore.errors import DatasetError, ModelFileError
from adcore.feedback_scorer import (
    DetectorIdentity,
    FeedbackScorer,
    ScorerConfig,
    train_feedback_scorer,
)

DIM = 16
IDENTITY = DetectorIdentity(version_id=7, version=3, kind="patchcore", vector_dim=DIM)


def synthetic(n: int, seed: int, *, shift: float = 3.0) -> tuple[np.ndarray, ...]:
    """(N,) scores that barely separate, (N, D) vectors whose dimension 0 does, (N,) labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    vectors = rng.normal(size=(n, DIM))
    vectors[:, 0] += shift * labels
    scores = 1.0 + 0.2 * labels + rng.normal(scale=1.0, size=n)
    return scores, vectors, labels


def test_the_scorer_learns_the_defect_direction_and_beats_the_score_alone() -> None:
    scores, vectors, labels = synthetic(400, seed=0)
    scorer, report = train_feedback_scorer(scores, vectors, labels, detector=IDENTITY)
    assert report.cv_auroc > 0.95 > 0.7 > report.score_auroc
    assert np.argmax(np.abs(scorer.coef)) == 2  # [score, norm, v0, ...]: v0 carries the signal
    test_scores, test_vectors, test_labels = synthetic(400, seed=1)
    p = scorer.predict_proba(test_scores, test_vectors)
    assert p.shape == (400,) and ((p >= 0) & (p <= 1)).all()
    flagged = scorer.predict(test_scores, test_vectors)
    assert flagged[test_labels == 1].mean() > 0.9  # FNR-first threshold keeps misses low
    assert flagged[test_labels == 0].mean() < 0.5
    assert report.n_train == 400 and report.vector_dim == DIM and report.folds == 5
    assert report.threshold == pytest.approx(scorer.threshold)


def test_probabilities_are_roughly_calibrated() -> None:
    scores, vectors, labels = synthetic(600, seed=2, shift=1.5)  # overlapping classes
    scorer, _ = train_feedback_scorer(scores, vectors, labels)
    test_scores, test_vectors, test_labels = synthetic(3000, seed=3, shift=1.5)
    p = scorer.predict_proba(test_scores, test_vectors)
    assert abs(p.mean() - test_labels.mean()) < 0.05  # balanced weights are undone by Platt
    for low, high in ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0)):
        chosen = (p >= low) & (p < high)
        assert chosen.sum() > 50
        assert abs(test_labels[chosen].mean() - p[chosen].mean()) < 0.1


def test_save_and_load_give_identical_outputs(tmp_path: Path) -> None:
    scores, vectors, labels = synthetic(120, seed=4)
    digests = [f"{i:064x}" for i in range(120)]
    scorer, _ = train_feedback_scorer(scores, vectors, labels, detector=IDENTITY, digests=digests)
    scorer.save(tmp_path / "v9")
    loaded = FeedbackScorer.load(tmp_path / "v9")
    assert loaded.kind == "feedback_scorer" and loaded.detector == IDENTITY
    assert loaded.threshold == scorer.threshold
    assert loaded.training_digests == digests
    np.testing.assert_array_equal(
        loaded.predict_proba(scores, vectors), scorer.predict_proba(scores, vectors)
    )
    assert sorted(p.name for p in (tmp_path / "v9").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_a_tampered_config_is_refused(tmp_path: Path) -> None:
    scores, vectors, labels = synthetic(60, seed=5)
    scorer, _ = train_feedback_scorer(scores, vectors, labels)
    scorer.save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    document = json.loads(config.read_text())
    document["config"]["platt_b"] += 1.0
    config.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="changed"):
        FeedbackScorer.load(tmp_path / "m")


def test_too_few_labels_of_a_class_are_refused_with_the_counts() -> None:
    scores, vectors, labels = synthetic(40, seed=6)
    labels[:] = 0
    labels[:4] = 1
    with pytest.raises(DatasetError, match="at least 5 labelled defects .* there are 4 defects"):
        train_feedback_scorer(scores, vectors, labels)


def test_missing_or_ragged_vectors_are_refused() -> None:
    scores, vectors, labels = synthetic(40, seed=7)
    rows: list[np.ndarray | None] = list(vectors)
    rows[3] = None
    with pytest.raises(DatasetError, match="1 of 40 parts have no detector vector"):
        train_feedback_scorer(scores, rows, labels)
    rows[3] = np.zeros(DIM + 1)
    with pytest.raises(DatasetError, match="different lengths"):
        train_feedback_scorer(scores, rows, labels)


def test_vectors_of_another_detector_are_refused_when_scoring() -> None:
    scores, vectors, labels = synthetic(60, seed=8)
    scorer, _ = train_feedback_scorer(scores, vectors, labels, detector=IDENTITY)
    with pytest.raises(DatasetError, match="trained on vectors of length 16"):
        scorer.predict_proba(scores, np.zeros((60, 8)))


def test_the_config_comes_from_job_parameters() -> None:
    config = ScorerConfig.from_dict({"target_fnr": 0.05, "c_values": [0.5], "holdout": 0.2})
    assert config.target_fnr == 0.05 and config.c_values == (0.5,)
    with pytest.raises(ValueError, match="target_fnr"):
        ScorerConfig.from_dict({"target_fnr": 1.0})
