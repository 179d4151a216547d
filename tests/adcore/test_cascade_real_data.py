"""The decision cascade on real magnetic-tile parts (slow): screen, then triage model.

A PatchCore fitted on 20 good tiles (small input) screens 80 test tiles (goods and every defect
type) at a threshold that flags most defects and some goods; the triage model is trained on
the flagged parts with a 30% budget (11 labelled flagged defects suffice). Only the rules are
checked (the budget when the gate passes, the threshold a probability, the cascade's verdicts),
never quality numbers that depend on which tiles were drawn; those live in bench/.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_parts import MAGNETIC_TILE

from adcore.audit import AUTO_ACCEPTED, SENT_TO_HUMAN, decision_region
from adcore.datasets import load_mvtec
from adcore.detectors.base import load_many
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.feedback_scorer.triage import (
    AUTO_ACCEPT_RULE,
    NO_AUTO_ACCEPT_RULE,
    min_defects,
    train_triage_model,
)
from adcore.verdicts import DEFECT, GOOD, is_flagged, verdict_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="../shared/datasets not present"),
]

BUDGET = 0.3
MIN_FLAGGED_GOODS = 12
"""The screen flags at least this many goods, so every fold has goods to train on."""


@pytest.fixture(scope="module")
def screened() -> dict[str, np.ndarray | float]:
    """Scores and vectors of 80 test tiles, and a screen threshold that flags most defects."""
    dataset = load_mvtec(MAGNETIC_TILE, max_train=20)
    goods = [sample for sample in dataset.test if sample.label == 0]
    defects = [sample for sample in dataset.test if sample.label == 1]
    test = goods[::5][:40] + defects[::10][:40]  # every defect type, in sorted order
    detector = PatchCore(PatchCoreConfig(image_size=128, calibration_fraction=0.0), device="cpu")
    detector.fit([sample.path for sample in dataset.train])
    loaded, failures = load_many([sample.path for sample in test])
    assert not failures
    predictions = detector.predict([image.pixels for image in loaded])
    scores = np.array([p.score for p in predictions])
    labels = np.array([sample.label for sample in test])
    defect_scores = np.sort(scores[labels == 1])
    good_scores = np.sort(scores[labels == 0])
    screen = float(min(defect_scores[len(defect_scores) // 10], good_scores[-MIN_FLAGGED_GOODS]))
    return {
        "scores": scores,
        "vectors": np.stack([p.embedding for p in predictions]),
        "labels": labels,
        "screen": screen,
    }


def flagged_parts(screened: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores, screen = screened["scores"], screened["screen"]
    flagged = np.array([is_flagged(score, screen) for score in scores])
    return scores[flagged], screened["vectors"][flagged], screened["labels"][flagged]


def test_the_screen_flags_most_defects_and_some_goods(screened: dict) -> None:
    _, _, labels = flagged_parts(screened)
    all_defects = int(screened["labels"].sum())
    assert labels.sum() >= 0.9 * all_defects
    assert (labels == 0).sum() >= MIN_FLAGGED_GOODS
    assert labels.sum() >= min_defects(BUDGET) == 11  # enough for the 30% budget


@pytest.mark.parametrize("audited_weight", [1.0, 5.0])
def test_the_triage_model_keeps_its_budget_and_the_cascade_rule(
    screened: dict, audited_weight: float
) -> None:
    scores, vectors, labels = flagged_parts(screened)
    # Every fourth flagged good was an audit of an auto-accepted part drawn with odds 1/5.
    weights = np.where((labels == 0) & (np.arange(labels.size) % 4 == 0), audited_weight, 1.0)
    model, report, evidence = train_triage_model(scores, vectors, labels, weights, budget=BUDGET)

    assert report.n_train == labels.size
    assert (evidence.n_goods, evidence.n_defects) == (int((labels == 0).sum()), int(labels.sum()))
    assert evidence.budget == BUDGET and evidence.defects_needed == 0
    assert evidence.accepted_defects_share <= evidence.defect_upper <= 1.0
    if evidence.passed:
        assert evidence.accepted_defects_share <= BUDGET
        assert evidence.accepted_goods > 0
    else:
        assert evidence.reasons()
    assert 0.0 <= model.threshold < 1.0
    rule = AUTO_ACCEPT_RULE if model.threshold > 0 else NO_AUTO_ACCEPT_RULE
    assert report.threshold_rule == rule

    # The cascade on every test tile: the screen first, the triage model on flagged parts only.
    all_scores, screen = screened["scores"], screened["screen"]
    p = model.predict_proba(all_scores, screened["vectors"])
    assert np.all((p >= 0.0) & (p <= 1.0))
    for score, probability in zip(all_scores, p, strict=True):
        flagged = is_flagged(score, screen)
        accepted = flagged and verdict_for(probability, model.threshold) == GOOD
        region = decision_region(score, screen, auto_accepted=accepted, near_band=0.0)
        verdict = DEFECT if flagged and not accepted else GOOD
        if accepted:
            assert probability < model.threshold and region == AUTO_ACCEPTED
        elif flagged:
            assert probability >= model.threshold
            assert region == SENT_TO_HUMAN and verdict == DEFECT
        else:
            assert verdict == GOOD and region not in {AUTO_ACCEPTED, SENT_TO_HUMAN}
