"""The fact-checker: rewritten explanations must keep the verdict and the measured numbers."""

from __future__ import annotations

import dataclasses

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


RESEMBLING = dataclasses.replace(
    FLAGGED, similar_defect_type="crack 2", similar_count=3, similar_k=5
)


def test_the_count_of_similar_confirmed_defects_is_a_fact() -> None:
    grounded = render(RESEMBLING)

    assert grounded.endswith("It resembles 3 confirmed 'crack 2' parts.")
    assert check_text(grounded, RESEMBLING).passed
    assert check_text(
        "Flagged: 3 of its 5 nearest confirmed defects are cracks.", RESEMBLING
    ).passed


RESEMBLING_7 = dataclasses.replace(RESEMBLING, similar_count=7, similar_k=7)


def test_a_wrong_count_of_similar_defects_is_rejected() -> None:
    check = check_text("Flagged: it resembles 4 confirmed 'crack 2' parts.", RESEMBLING)

    assert not check.passed
    assert any("The number 4 is not one" in p for p in check.problems), check.problems


def test_without_similar_defects_their_count_is_no_fact() -> None:
    assert check_text("Flagged: it resembles 7 confirmed cracks.", RESEMBLING_7).passed
    assert not check_text("Flagged: it resembles 7 confirmed cracks.", FLAGGED).passed


def test_a_defect_type_named_like_a_verdict_is_not_read_as_one() -> None:
    odd = dataclasses.replace(FLAGGED, similar_defect_type="good", similar_count=2, similar_k=2)

    assert check_text(render(odd), odd).passed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Rejected: a bright crack at the upper-left rim.", "calls the region brighter"),
        ("Rejected: a dark spot at the upper-left rim.", "calls the region compact"),
        ("Rejected: a dark crack at the lower-left rim.", "places the region lower"),
        ("Rejected: a dark crack at the upper-right rim.", "places the region right"),
    ],
)
def test_a_description_that_contradicts_the_measured_region_is_rejected(
    text: str, problem: str
) -> None:
    check = check_text(text, FLAGGED)
    assert not check.passed
    assert any(problem in p for p in check.problems), check.problems


def test_negated_or_matching_descriptions_pass() -> None:
    assert check_text("Rejected: a dark, not bright, crack at the top left.", FLAGGED).passed
    centred = dataclasses.replace(FLAGGED, location="centre", shape="compact", intensity="similar")
    assert check_text(render(centred), centred).passed
    assert not check_text("Rejected: a spot in the upper centre.", centred).passed
    assert not check_text("Rejected: a dark spot in the centre.", centred).passed


def test_describing_a_region_that_was_not_measured_is_rejected() -> None:
    check = check_text("Passed as good despite a faint dark spot.", PASSED)
    assert not check.passed
    assert any("none was measured" in p for p in check.problems)
