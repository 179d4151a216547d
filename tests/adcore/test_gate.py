"""The promotion gate's decision rule, on hand-made rates."""

from __future__ import annotations

from adcore.gate import Rates, decide, gate_record


def rates(fn: int, tp: int, fp: int, tn: int, threshold: float = 1.0) -> Rates:
    """Rates from a confusion matrix."""
    return Rates(threshold, fn / (fn + tp), fp / (fp + tn), tp=tp, fp=fp, tn=tn, fn=fn)


ACTIVE = rates(fn=2, tp=8, fp=10, tn=90)  # misses 20% of the defects, 10% false alarms


def test_more_false_alarms_are_refused_without_a_miss_rate_target() -> None:
    lower_threshold = rates(fn=0, tp=10, fp=40, tn=60)
    decision = decide(lower_threshold, ACTIVE, fpr_margin=0.02)
    assert not decision.passed and "false alarms" in decision.reasons[0]


def test_missed_defects_come_first_when_the_active_model_misses_more_than_the_target() -> None:
    lower_threshold = rates(fn=0, tp=10, fp=40, tn=60)
    decision = decide(lower_threshold, ACTIVE, fpr_margin=0.02, target_fnr=0.05)
    assert decision.passed
    assert any("Missed defects first" in note for note in decision.notes)


def test_the_exception_needs_fewer_misses_and_an_active_model_above_target() -> None:
    same_misses = rates(fn=2, tp=8, fp=40, tn=60)
    assert not decide(same_misses, ACTIVE, fpr_margin=0.02, target_fnr=0.05).passed
    within_target = rates(fn=0, tp=10, fp=10, tn=90)
    fewer_misses = rates(fn=0, tp=10, fp=40, tn=60)
    assert not decide(fewer_misses, within_target, fpr_margin=0.02, target_fnr=0.05).passed
    more_misses = rates(fn=3, tp=7, fp=0, tn=100)
    refused = decide(more_misses, ACTIVE, fpr_margin=0.02, target_fnr=0.05)
    assert not refused.passed and "misses more defects" in refused.reasons[0]


def test_the_record_keeps_the_target_it_was_decided_with() -> None:
    record = gate_record(
        candidate=rates(fn=0, tp=10, fp=40, tn=60),
        active=ACTIVE,
        active_version_id=1,
        active_version=1,
        heldout={"n_good": 100, "n_defect": 10},
        target_fnr=0.05,
    )
    assert record["target_fnr"] == 0.05 and record["decision"]["passed"]
