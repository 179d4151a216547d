"""The line's FNR and FPR from censored reviews: exact plug-in figures and honest intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adcore.audit import DEEP_PASS, NEAR_PASS, SENT_TO_HUMAN
from adcore.loop_estimate import (
    LEGACY_FLAGGED,
    LEGACY_PASSED,
    LoopEstimate,
    RateInterval,
    Stratum,
    estimate_loop_rates,
)

PARTS = tuple[str | None, float | None, bool, int, str]
"""One part: (region, probability, audited, label, verdict)."""


def estimate(parts: list[PARTS], **options: object) -> LoopEstimate:
    regions, probabilities, audited, labels, verdicts = (
        zip(*parts, strict=True) if parts else [()] * 5
    )
    return estimate_loop_rates(regions, probabilities, audited, labels, verdicts, **options)


def sent(label: int) -> PARTS:
    return (SENT_TO_HUMAN, 1.0, False, label, "defect")


def passed(region: str, probability: float, audited: bool = False, label: int = -1) -> PARTS:
    return (region, probability, audited, label, "good")


def test_everything_sent_to_a_human_and_labelled_misses_nothing_and_alarms_on_every_good() -> None:
    result = estimate([sent(1)] * 3 + [sent(0)] * 2)

    assert result.n_parts == 5
    assert result.n_labelled_defects == 3
    assert (result.est_defects, result.est_missed) == (3.0, 0.0)
    assert (result.est_goods, result.est_goods_to_human) == (2.0, 2.0)
    assert result.fnr == RateInterval(0.0, 0.0, 0.0)
    assert result.fpr == RateInterval(1.0, 1.0, 1.0)
    assert result.strata == (Stratum(SENT_TO_HUMAN, 5, 5, 0.6),)
    assert result.notes == ()


def test_one_defect_among_ten_audits_at_one_in_ten_stands_for_ten_missed_parts() -> None:
    deep = [passed(DEEP_PASS, 0.1, True, 1)] + [passed(DEEP_PASS, 0.1, True, 0)] * 9
    deep += [passed(DEEP_PASS, 0.1)] * 90
    result = estimate([sent(1)] * 5 + [sent(0)] * 5 + deep)

    assert result.est_missed == pytest.approx(10.0)
    assert result.est_defects == pytest.approx(15.0)
    assert result.est_goods == pytest.approx(95.0)
    assert result.est_goods_to_human == pytest.approx(5.0)
    assert result.fnr.rate == pytest.approx(10 / 15)
    assert result.fpr.rate == pytest.approx(5 / 95)
    assert result.fnr.low < 10 / 15 < result.fnr.high
    assert result.fpr.low < 5 / 95 < result.fpr.high
    assert result.strata[1] == Stratum(DEEP_PASS, 100, 10, pytest.approx(0.1))


def test_each_audited_label_weighs_one_over_its_probability() -> None:
    near = [passed(NEAR_PASS, 0.5, True, 1), passed(NEAR_PASS, 0.25, True, 0)]
    near += [passed(NEAR_PASS, 0.5), passed(NEAR_PASS, 0.25, False, 1)]  # not audited: unused
    result = estimate([sent(1), *near])

    assert result.strata[1] == Stratum(NEAR_PASS, 4, 2, pytest.approx(2 / 6))
    assert result.est_missed == pytest.approx(4 / 3)
    assert result.fnr.rate == pytest.approx((4 / 3) / (1 + 4 / 3))
    assert result.n_labelled_defects == 2


def test_unlabelled_parts_sent_to_a_human_count_at_their_stratum_share() -> None:
    result = estimate([sent(1), sent(0), sent(-1), sent(-1)])

    assert result.strata == (Stratum(SENT_TO_HUMAN, 4, 2, 0.5),)
    assert (result.est_defects, result.est_goods) == (2.0, 2.0)


def test_parts_decided_before_regions_form_two_legacy_strata() -> None:
    flagged = [(None, None, False, label, "defect") for label in (1, 0, -1)]
    passed_ = [(None, None, True, label, "good") for label in (1, 0, 0, 0)]
    passed_ += [(None, None, False, 1, "good")]  # labelled but not audited: unused
    passed_ += [(None, None, False, -1, "good")] * 15
    result = estimate(flagged + passed_)

    assert result.strata == (
        Stratum(LEGACY_FLAGGED, 3, 2, 0.5),
        Stratum(LEGACY_PASSED, 20, 4, 0.25),
    )
    assert result.est_missed == pytest.approx(5.0)
    assert result.est_defects == pytest.approx(6.5)
    assert result.fnr.rate == pytest.approx(5 / 6.5)
    assert result.est_goods_to_human == pytest.approx(1.5)


def test_a_stratum_without_usable_labels_leaves_the_rates_open_but_gives_intervals() -> None:
    deep = [passed(DEEP_PASS, 0.02, False, 1)] + [passed(DEEP_PASS, 0.02)] * 49
    result = estimate([sent(1), sent(0), *deep])

    assert "no audited deep_pass part is labelled yet" in result.notes
    assert result.strata[1] == Stratum(DEEP_PASS, 50, 0, None)
    assert (result.fnr.rate, result.fpr.rate) == (None, None)
    assert (result.est_defects, result.est_missed, result.est_goods) == (None, None, None)
    assert result.est_goods_to_human == 1.0
    assert 0.0 < result.fnr.low < result.fnr.high < 1.0
    assert result.fpr.low is not None and result.fpr.high is not None


def test_no_miss_among_three_audits_still_leaves_room_for_misses() -> None:
    deep = [passed(DEEP_PASS, 0.1, True, 0)] * 3 + [passed(DEEP_PASS, 0.1)] * 27
    result = estimate([sent(1)] * 5 + deep)

    assert result.fnr.rate == 0.0
    assert result.fnr.low == 0.0
    assert result.fnr.high > 0.5  # 30 passed parts, 3 seen: many defects could hide there


def test_no_parts_give_no_rates() -> None:
    result = estimate([])

    assert result.fnr == result.fpr == RateInterval(None, None, None)
    assert (result.n_parts, result.strata, result.notes) == (0, (), ("no parts",))


def test_the_same_seed_gives_the_same_interval_and_the_estimate_is_json_ready() -> None:
    parts = [sent(1), sent(0), passed(NEAR_PASS, 0.2, True, 1), passed(NEAR_PASS, 0.2)]

    first, again = estimate(parts, seed=3), estimate(parts, seed=3)

    assert first == again
    data = json.loads(json.dumps(first.to_json()))
    assert data["fnr"] == {"rate": first.fnr.rate, "low": first.fnr.low, "high": first.fnr.high}
    assert data["strata"][1] == {
        "region": NEAR_PASS,
        "n_parts": 2,
        "n_labelled": 1,
        "weighted_defect_share": 1.0,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (([SENT_TO_HUMAN], [1.0], [False], [1, 0], ["defect"]), "one entry per part"),
        ((["far_pass"], [1.0], [False], [1], ["good"]), "Unknown decision region"),
        (([DEEP_PASS], [0.0], [True], [1], ["good"]), "probability in \\(0, 1\\]"),
        (([DEEP_PASS], [None], [True], [1], ["good"]), "probability in \\(0, 1\\]"),
        (([NEAR_PASS], [1.5], [True], [-1], ["good"]), "probability in \\(0, 1\\]"),
        (([SENT_TO_HUMAN], [1.0], [False], [2], ["defect"]), "Labels must be"),
        (([None], [None], [False], [1], ["maybe"]), "verdict must be"),
    ],
)
def test_bad_inputs_are_refused(arguments: tuple[list[object], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_loop_rates(*arguments)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_a_confidence_outside_zero_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        estimate([sent(1)], confidence=confidence)


def test_the_interval_covers_the_true_miss_rate_of_simulated_streams() -> None:
    """200 seeded streams: the 95% FNR interval holds the stream's own FNR at least 85% of times.

    Each stream has 60 parts sent to a human (60% defects, 90% labelled), 200 near-pass parts
    (5% defects; audit odds 0.2 for half of them, 0.1 for the rest) and 1000 deep-pass parts
    (0.5% defects, audit odds 0.05).
    """
    rng = np.random.default_rng(20250301)
    sizes, defect_shares = np.array([60, 200, 1000]), np.array([0.6, 0.05, 0.005])
    regions = np.repeat([SENT_TO_HUMAN, NEAR_PASS, DEEP_PASS], sizes).tolist()
    odds = np.concatenate([np.ones(60), np.repeat([0.2, 0.1], 100), np.full(1000, 0.05)])
    sent_mask = np.arange(sizes.sum()) < 60
    covered = 0
    for stream in range(200):
        truth = (rng.random(sizes.sum()) < np.repeat(defect_shares, sizes)).astype(int)
        audited = ~sent_mask & (rng.random(sizes.sum()) < odds)
        seen = np.where(sent_mask, rng.random(sizes.sum()) < 0.9, audited)
        labels = np.where(seen, truth, -1)
        true_fnr = truth[~sent_mask].sum() / max(truth.sum(), 1)
        result = estimate_loop_rates(
            regions,
            odds.tolist(),
            audited.tolist(),
            labels.tolist(),
            ["good"] * len(regions),
            seed=stream,
        )
        covered += result.fnr.low <= true_fnr <= result.fnr.high

    assert covered / 200 >= 0.85


def test_counted_entries_give_the_estimate_of_the_parts_repeated() -> None:
    rows = [
        ("sent_to_human", 1.0, False, 1, "defect", 7),
        ("sent_to_human", 1.0, False, 0, "defect", 3),
        ("sent_to_human", 1.0, False, -1, "defect", 2),
        ("deep_pass", 0.02, True, 1, "good", 1),
        ("deep_pass", 0.02, True, 0, "good", 4),
        ("deep_pass", 0.02, False, -1, "good", 240),
        ("near_pass", 0.2, True, 0, "good", 5),
        ("near_pass", 0.2, False, -1, "good", 20),
        (None, None, True, 1, "good", 2),
        (None, None, False, -1, "good", 30),
    ]
    columns = list(zip(*rows, strict=True))
    counted = estimate_loop_rates(*columns[:5], counts=columns[5])
    repeated = estimate_loop_rates(
        *(
            [value for value, n in zip(column, columns[5], strict=True) for _ in range(n)]
            for column in columns[:5]
        )
    )

    assert counted == repeated
    assert counted.n_parts == 314 and counted.n_labelled_defects == 10


def test_counts_must_be_whole_numbers_of_at_least_one() -> None:
    for bad in ([0], [1.5]):
        with pytest.raises(ValueError, match="counts"):
            estimate_loop_rates(["sent_to_human"], [1.0], [False], [1], ["defect"], counts=bad)
