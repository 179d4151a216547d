"""The fact-checker: rewritten explanations must keep the verdict and the measured numbers."""

from __future__ import annotations

import pytest
from synthetic_parts import FLAGGED_FACTS

from adcore.explain import ExplanationFacts, render
from adcore.explain.fact_check import check_text

FLAGGED = FLAGGED_FACTS
PASSED = ExplanationFacts(
    verdict="good",
    score=12.0,
    threshold=29.4,
    margin=-17.4,
    relative_margin=-17.4 / 29.4,
    image_height=300,
    image_width=300,
    part_box=(0, 0, 300, 300),
    part_is_whole_image=True,
)


@pytest.mark.parametrize("facts", [FLAGGED, PASSED])
def test_the_grounded_text_passes(facts: ExplanationFacts) -> None:
    check = check_text(render(facts), facts)
    assert check.passed, check.problems


def test_a_faithful_rewrite_passes() -> None:
    text = "Rejected: a thin dark crack at the upper-left edge, 3.1% of the cell, score 41.2."
    assert check_text(text, FLAGGED).passed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("This cell looks good: score 41.2.", "calls the part 'good'"),
        ("The cell is fine, score 41.2 against 29.4.", "does not say the part was 'defect'"),
        ("Flagged: a crack covering 12% of the cell.", "The number 12 is not one"),
        ("Flagged: score 41.2 is 55% above the threshold 29.4.", "The number 55 is not one"),
    ],
)
def test_a_contradicting_text_is_rejected(text: str, problem: str) -> None:
    check = check_text(text, FLAGGED)
    assert not check.passed
    assert any(problem in p for p in check.problems), check.problems


def test_a_passed_part_called_defective_is_rejected_but_a_negation_is_not() -> None:
    assert not check_text("Defective cell, score 12.0.", PASSED).passed
    assert check_text("Passed: no defect found, score 12.0 below 29.4.", PASSED).passed
