"""The one verdict rule: flagged when the score reaches the threshold, everywhere it is used."""

from __future__ import annotations

import numpy as np

from adcore.detectors.base import ScoredImage
from adcore.explain.facts import measure_facts
from adcore.verdicts import DEFECT, GOOD, is_flagged, verdict_for


def test_a_score_at_the_threshold_is_flagged_and_just_under_it_passes() -> None:
    assert (verdict_for(1.0, 1.0), verdict_for(0.999, 1.0), verdict_for(-1.0, -2.0)) == (
        DEFECT,
        GOOD,
        DEFECT,
    )
    assert is_flagged(2.0, 1.0) and not is_flagged(0.5, 1.0)


def test_the_detectors_and_the_explanations_use_the_same_rule() -> None:
    image, heat = np.full((32, 32, 3), 128, np.uint8), np.zeros((8, 8), np.float32)
    for score in (0.99, 1.0, 1.01):
        assert ScoredImage(score, heat, threshold=1.0).is_defect == is_flagged(score, 1.0)
        assert measure_facts(image, heat, score, 1.0).verdict == verdict_for(score, 1.0)
    assert ScoredImage(5.0, heat).is_defect is None  # no threshold, no verdict
