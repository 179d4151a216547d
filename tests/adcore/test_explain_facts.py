"""Grounded explanations: facts measured from synthetic parts whose true facts are known."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from synthetic_parts import make_part

from adcore.explain import ExplanationFacts, explain, measure_facts, render
from adcore.explain.fact_check import NUMBER, check_text
from adcore.explain.neighbours import SimilarDefects

SIZE = 128


def flat_part(grey: int = 128, seed: int = 0) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 full-frame part: flat grey with mild noise."""
    rng = np.random.default_rng(seed)
    base = np.clip(grey + rng.normal(0, 3, (SIZE, SIZE)), 0, 255).astype(np.uint8)
    return np.repeat(base[..., None], 3, axis=2)


def disc(cy: float, cx: float, radius: float, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def heat(mask: np.ndarray, low: float = 0.2, high: float = 3.0) -> np.ndarray:
    """An anomaly map: ``high`` on the mask, ``low`` elsewhere."""
    return np.where(mask, high, low).astype(np.float32)


def test_thin_bright_bar_upper_left_is_elongated_and_brighter() -> None:
    image = flat_part()
    bar = np.zeros((SIZE, SIZE), dtype=bool)
    bar[20:24, 16:46] = True
    image[bar] = 220

    facts = measure_facts(image, heat(bar), score=3.0, threshold=1.0)

    assert facts.verdict == "defect"
    assert facts.part_is_whole_image
    assert facts.n_regions == 1
    assert facts.location == "upper-left"
    assert not facts.at_rim
    assert facts.shape == "elongated"
    assert facts.axis_ratio is not None and facts.axis_ratio >= 5
    assert facts.intensity == "brighter"
    assert facts.area_percent == pytest.approx(100 * 4 * 30 / SIZE**2, rel=0.01)
    text = render(facts)
    assert text.startswith("Flagged: score 3.00 is 200% above the threshold 1.00.")
    assert "elongated, brighter region (scratch- or crack-like) in the upper-left area" in text


def test_dark_round_blob_at_centre_from_a_low_resolution_map() -> None:
    image = flat_part(160)
    blob = disc(64, 64, 12)
    image[blob] = 40
    small_map = heat(disc(15.5, 15.5, 3, size=32))

    facts = measure_facts(image, small_map, score=3.0, threshold=1.0)

    assert (facts.n_regions, facts.location, facts.shape, facts.intensity) == (
        1,
        "centre",
        "compact",
        "darker",
    )
    assert not facts.at_rim
    assert facts.axis_ratio is not None and facts.axis_ratio < 1.5
    assert facts.grey_difference is not None and facts.grey_difference < -60
    # The bilinear upsampled disc of radius 3 px at 32 px is about radius 12 px at 128 px.
    assert facts.area_percent == pytest.approx(100 * np.pi * 12**2 / SIZE**2, rel=0.3)
    assert "One compact, darker region (spot-, hole- or contamination-like) in the centre" in (
        render(facts)
    )


def test_two_separate_blobs_are_two_regions() -> None:
    image = flat_part()
    blobs = disc(30, 30, 6) | disc(96, 90, 9)
    image[blobs] = 60

    facts = measure_facts(image, heat(blobs), score=3.0, threshold=1.0)

    assert facts.n_regions == 2
    expected = 100 * blobs.sum() / SIZE**2
    assert facts.area_percent == pytest.approx(expected, rel=0.01)
    assert facts.largest_area_percent == pytest.approx(100 * disc(96, 90, 9).sum() / SIZE**2)
    assert facts.location == "lower-right"
    assert render(facts).split(". ")[1].startswith("2 separate regions cover")


def test_location_is_relative_to_the_part_on_a_dark_background() -> None:
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    image[40:120, 60:124] = 180  # the part: rows 40-119, columns 60-123
    spot = disc(52, 72, 4)  # upper-left of the part, well right of the image centre
    image[spot] = 90
    rim_bar = np.zeros((SIZE, SIZE), dtype=bool)
    rim_bar[70:90, 120:123] = True  # vertical crack along the part's right edge

    facts = measure_facts(image, heat(spot), score=3.0, threshold=1.0)
    rim = measure_facts(image, heat(rim_bar), score=3.0, threshold=1.0)

    assert not facts.part_is_whole_image
    assert facts.part_box == (40, 60, 120, 124)
    assert facts.location == "upper-left"
    assert facts.area_percent == pytest.approx(100 * spot.sum() / (80 * 64), rel=0.05)
    assert (rim.location, rim.at_rim, rim.shape) == ("right", True, "elongated")
    assert "at the right rim" in render(rim)


def test_region_pixels_must_pass_the_threshold_too() -> None:
    image = flat_part()
    blob = disc(64, 64, 10)
    ring = disc(64, 64, 20) & ~blob
    anomaly_map = np.full((SIZE, SIZE), 0.2, dtype=np.float32)
    anomaly_map[ring] = 2.0  # above half-prominence (1.6) but below the threshold
    anomaly_map[blob] = 3.0

    facts = measure_facts(image, anomaly_map, score=3.0, threshold=2.5)

    assert facts.region_level == pytest.approx(2.5)
    assert facts.area_percent == pytest.approx(100 * blob.sum() / SIZE**2)


def test_good_part_passes_without_a_region() -> None:
    facts = measure_facts(make_part(1), np.full((64, 64), 5.0), score=12.0, threshold=29.4)

    assert facts.verdict == "good"
    assert (facts.n_regions, facts.location, facts.shape, facts.intensity) == (0, None, None, None)
    assert render(facts) == "Passed: score 12.0 is 59% below the threshold 29.4."


def test_scratched_synthetic_part_reads_as_a_dark_scratch() -> None:
    part = make_part(200, defect=True)  # dark bar: rows 21-24, columns 16-47 of 64
    scratch = np.zeros((64, 64), dtype=bool)
    scratch[21:25, 16:48] = True
    anomaly_map = heat(scratch, low=5.0, high=40.0)

    facts = measure_facts(part, anomaly_map, score=41.2, threshold=29.4)

    assert (facts.shape, facts.intensity, facts.location) == ("elongated", "darker", "centre")
    assert render(facts).startswith("Flagged: score 41.2 is 40% above the threshold 29.4.")


def test_json_round_trip() -> None:
    image = flat_part()
    blobs = disc(30, 30, 6) | disc(96, 90, 9)
    facts = measure_facts(image, heat(blobs), score=3.0, threshold=1.0)
    facts = ExplanationFacts(
        **{
            **facts.__dict__,
            "similar_defect_type": "scratch",
            "similar_count": 3,
            "similar_k": 4,
        }
    )

    stored = json.dumps(facts.to_json())

    assert ExplanationFacts.from_json(stored) == facts
    assert ExplanationFacts.from_json(json.loads(stored)) == facts


def assert_numbers_grounded(text: str, facts: ExplanationFacts) -> None:
    check = check_text(text, facts)
    assert check.passed, check.problems


@pytest.mark.parametrize(
    ("score", "threshold", "centres"),
    [
        (41.23, 29.4, [(20, 20)]),
        (0.0312, 0.0251, [(30, 30), (100, 40), (64, 100)]),
        (1234.5, 1000.0, [(64, 64)]),
        (29.41, 29.4, [(100, 100)]),
        (3.0, 0.0, [(20, 100)]),
        (7.5, 29.4, []),
    ],
)
def test_every_number_in_the_text_comes_from_the_facts(
    score: float, threshold: float, centres: list[tuple[int, int]]
) -> None:
    image = flat_part(seed=3)
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for index, (cy, cx) in enumerate(centres):
        mask |= disc(cy, cx, 3 + 2 * index)
    image[mask] = 30

    explanation = explain(
        image, heat(mask, low=0.05 * abs(score), high=1.1 * abs(score)), score, threshold
    )
    facts = ExplanationFacts.from_json(explanation["facts"])

    assert 1 <= len(re.split(r"(?<=\.) ", explanation["text"])) <= 3
    assert NUMBER.findall(explanation["text"])  # the check below has numbers to check
    assert_numbers_grounded(explanation["text"], facts)


def test_the_grounding_check_can_fail() -> None:
    facts = measure_facts(flat_part(), heat(disc(64, 64, 8)), score=3.0, threshold=1.0)

    with pytest.raises(AssertionError, match="not one of the measured facts"):
        assert_numbers_grounded(render(facts) + " It is 17.3 mm long.", facts)


# --- similar confirmed defects ----------------------------------------------------------------

CRACKS = SimilarDefects(defect_type="crack", count=3, k=5, best_similarity=0.9)


def test_facts_stored_before_the_similarity_fields_still_load() -> None:
    facts = measure_facts(flat_part(), heat(disc(64, 64, 8)), score=3.0, threshold=1.0)
    old = facts.to_json()
    for key in ("similar_defect_type", "similar_count", "similar_k"):
        del old[key]
    old["nearest_defect_types"] = []  # a field of the first version, gone since

    loaded = ExplanationFacts.from_json(json.dumps(old))

    assert loaded == facts
    assert (loaded.similar_defect_type, loaded.similar_count, loaded.similar_k) == (None, 0, 0)


def test_similar_defects_are_kept_for_a_flagged_part_only() -> None:
    image, hot = flat_part(), heat(disc(64, 64, 8))

    flagged = measure_facts(image, hot, score=3.0, threshold=1.0, similar=CRACKS)
    passed = measure_facts(image, hot, score=0.5, threshold=1.0, similar=CRACKS)

    assert (flagged.similar_defect_type, flagged.similar_count, flagged.similar_k) == (
        "crack",
        3,
        5,
    )
    assert (passed.similar_defect_type, passed.similar_count) == (None, 0)
    assert "resembles" not in render(passed)


def test_the_text_says_which_confirmed_defects_the_part_resembles() -> None:
    explanation = explain(flat_part(), heat(disc(64, 64, 8)), 3.0, 1.0, similar=CRACKS)
    facts = ExplanationFacts.from_json(explanation["facts"])

    assert explanation["text"].endswith(" It resembles 3 confirmed 'crack' parts.")
    assert_numbers_grounded(explanation["text"], facts)


def test_one_similar_part_is_singular() -> None:
    one = SimilarDefects(defect_type="dent", count=1, k=1, best_similarity=0.6)
    facts = measure_facts(flat_part(), heat(disc(64, 64, 8)), 3.0, 1.0, similar=one)

    assert render(facts).endswith(" It resembles 1 confirmed 'dent' part.")


def test_the_resemblance_joins_the_last_sentence_when_there_are_already_three() -> None:
    blobs = disc(30, 30, 6) | disc(96, 90, 9)
    facts = measure_facts(flat_part(), heat(blobs), 3.0, 1.0, similar=CRACKS)

    text = render(facts)

    assert facts.n_regions == 2
    assert len(re.split(r"(?<=\.) ", text)) == 3
    assert text.endswith("; it resembles 3 confirmed 'crack' parts.")
    assert_numbers_grounded(text, facts)
