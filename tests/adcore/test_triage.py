"""The triage model (stage 2 of the cascade): its auto-accept threshold, bound and evidence.

Tiny synthetic readings: a vector whose first dimension carries the defect signal (or none),
and a detector score that tells little. Exact binomial intervals come from scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binomtest

from adcore.errors import DatasetError
from adcore.feedback_scorer import ScorerConfig, features, train_feedback_scorer
from adcore.feedback_scorer.training import cross_validate
from adcore.feedback_scorer.triage import (
    AUTO_ACCEPT_RULE,
    NO_AUTO_ACCEPT,
    NO_AUTO_ACCEPT_RULE,
    TriageEvidence,
    choose_auto_accept_threshold,
    defect_share_upper,
    min_defects,
    nested_defects_needed,
    train_triage_model,
    triage_evidence,
)

FAST = ScorerConfig(folds=3, c_values=(0.1, 1.0))
"""Fewer folds and strengths than the default: the same code paths, a third of the fits."""


def exact_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """The exact two-sided Clopper-Pearson upper end of k of n (scipy)."""
    return float(binomtest(k, n).proportion_ci(confidence, method="exact").high)


def readings(
    n_good: int, n_defect: int, *, signal: float, seed: int = 0, dim: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, (N, dim) vectors and labels; dimension 0 of a defect's vector is ``signal`` up."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_good, np.int64), np.ones(n_defect, np.int64)]
    vectors = rng.normal(size=(labels.size, dim))
    vectors[:, 0] += signal * labels
    scores = 1.0 + rng.normal(scale=0.3, size=labels.size)  # the screen flagged them all
    return scores, vectors, labels


def separated_probabilities(n_good: int, n_defect: int) -> tuple[np.ndarray, np.ndarray]:
    """Goods at p in [0.01, 0.30], defects at p in [0.60, 0.99]: a clean cut exists."""
    p = np.r_[np.linspace(0.01, 0.30, n_good), np.linspace(0.60, 0.99, n_defect)]
    return p, np.r_[np.zeros(n_good, np.int64), np.ones(n_defect, np.int64)]


# --- min_defects -------------------------------------------------------------------------


def test_min_defects_of_the_usual_budgets() -> None:
    assert min_defects(0.02) == 183
    assert min_defects(0.05) == 72
    assert min_defects(0.3) == 11


@pytest.mark.parametrize("budget", [0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 0.5])
def test_zero_of_min_defects_meets_the_budget_and_one_fewer_does_not(budget: float) -> None:
    n = min_defects(budget)
    assert exact_upper(0, n) <= budget
    assert exact_upper(0, n - 1) > budget


def test_a_higher_confidence_needs_more_defects() -> None:
    assert min_defects(0.05, confidence=0.99) > min_defects(0.05) > min_defects(0.05, 0.8)


@pytest.mark.parametrize(
    ("budget", "confidence"),
    [(0.0, 0.95), (1.0, 0.95), (-0.1, 0.95), (1.5, 0.95), (0.05, 0.0), (0.05, 1.0)],
)
def test_a_budget_or_confidence_outside_zero_one_is_refused(
    budget: float, confidence: float
) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        min_defects(budget, confidence)
    p, labels = separated_probabilities(5, 5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        choose_auto_accept_threshold(p, labels, np.ones(10), budget=budget, confidence=confidence)


# --- defect_share_upper --------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 30, 183])
def test_with_unit_weights_the_bound_is_scipys_exact_clopper_pearson(n: int) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        got = defect_share_upper(float(k), np.ones(n))
        assert got == pytest.approx(exact_upper(k, n), rel=1e-9, abs=1e-12), (k, n)
    assert defect_share_upper(0.0, np.ones(n), confidence=0.8) == pytest.approx(
        exact_upper(0, n, 0.8)
    )


def test_the_bound_uses_kishs_effective_number_with_weights() -> None:
    unit = defect_share_upper(3.0, np.ones(20))
    # Equal weights: the same effective number, the same bound.
    assert defect_share_upper(12.0, np.full(20, 4.0)) == pytest.approx(unit)
    # Unequal weights: n_eff = (sum w)^2 / sum w^2, x = n_eff * accepted share.
    weights = np.r_[np.ones(16), np.full(4, 5.0)]
    n_eff = weights.sum() ** 2 / (weights**2).sum()
    assert n_eff == pytest.approx(1296 / 116)
    accepted = 5.0 + 1.0  # one heavy and one light defect accepted
    x = n_eff * accepted / weights.sum()
    want = beta.ppf(0.975, x + 1, n_eff - x)
    assert defect_share_upper(accepted, weights) == pytest.approx(want)
    # Fewer effective defects: a wider bound than the same share of 20 unit-weight defects.
    assert defect_share_upper(accepted, weights) > defect_share_upper(
        20 * accepted / weights.sum(), np.ones(20)
    )


def test_without_defects_or_with_all_accepted_the_bound_is_one() -> None:
    assert defect_share_upper(0.0, np.array([])) == 1.0
    assert defect_share_upper(6.0, np.array([1.0, 5.0])) == 1.0


# --- choose_auto_accept_threshold ---------------------------------------------------------


def test_with_too_few_defects_nothing_is_accepted_and_the_shortfall_is_said() -> None:
    p, labels = separated_probabilities(30, 10)  # a clean cut, but 10 < 183 defects
    choice = choose_auto_accept_threshold(p, labels, np.ones(40), budget=0.02)
    assert choice.threshold == NO_AUTO_ACCEPT and choice.rule == NO_AUTO_ACCEPT_RULE
    assert choice.accepted_goods_share == 0.0 and choice.accepted_defects == 0
    assert choice.defects_needed == 183 - 10
    assert choice.defect_upper == pytest.approx(exact_upper(0, 10))


def test_well_separated_goods_below_the_lowest_defect_are_all_accepted() -> None:
    p, labels = separated_probabilities(30, 40)  # 40 >= min_defects(0.1) == 36
    choice = choose_auto_accept_threshold(p, labels, np.ones(70), budget=0.1)
    assert choice.rule == AUTO_ACCEPT_RULE and choice.defects_needed == 0
    assert p[labels == 0].max() < choice.threshold <= p[labels == 1].min()
    assert choice.accepted_goods_share == 1.0 and choice.accepted_defects == 0
    assert choice.defect_upper == pytest.approx(exact_upper(0, 40))
    assert 0.0 < choice.threshold < 1.0


def test_a_defect_among_the_goods_is_accepted_only_while_the_bound_allows() -> None:
    p, labels = separated_probabilities(30, 40)
    p[30] = 0.055  # one defect looks good: accepting the goods above it accepts it too
    assert exact_upper(0, 40) <= 0.1 < exact_upper(1, 40) <= 0.15 < exact_upper(2, 40)
    tight = choose_auto_accept_threshold(p, labels, np.ones(70), budget=0.1)
    assert 0.05 < tight.threshold <= 0.055 and tight.accepted_defects == 0
    assert tight.accepted_goods_share == pytest.approx(5 / 30)  # p = 0.01 ... 0.05
    loose = choose_auto_accept_threshold(p, labels, np.ones(70), budget=0.15)
    assert loose.accepted_defects == 1 and loose.accepted_goods_share == 1.0
    assert 0.30 < loose.threshold <= 0.60  # every good, no second defect
    assert loose.defect_upper == pytest.approx(exact_upper(1, 40))


@pytest.mark.parametrize("seed", range(6))
def test_the_threshold_is_the_highest_whose_bound_stays_within_the_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(120) < 0.5).astype(np.int64)
    p = np.clip(rng.normal(0.3 + 0.3 * labels, 0.2), 0.0, 1.0).round(2)  # ties included
    weights = np.where(rng.random(120) < 0.2, 4.0, 1.0)
    budget = 0.2
    choice = choose_auto_accept_threshold(p, labels, weights, budget=budget)
    accepted = p < choice.threshold
    defect = labels == 1
    upper = defect_share_upper(weights[accepted & defect].sum(), weights[defect])
    assert upper <= budget
    assert choice.defect_upper == pytest.approx(upper)
    assert choice.accepted_defects == int((accepted & defect).sum())
    share = weights[accepted & ~defect].sum() / weights[~defect].sum()
    assert choice.accepted_goods_share == pytest.approx(share)
    # Taking the next value of p in too would break the bound.
    next_value = p[p >= choice.threshold].min()
    more = p <= next_value
    assert defect_share_upper(weights[more & defect].sum(), weights[defect]) > budget


def test_audit_weights_change_what_may_be_accepted() -> None:
    p, labels = separated_probabilities(30, 40)
    p[30] = 0.055  # a defect among the goods
    unit = choose_auto_accept_threshold(p, labels, np.ones(70), budget=0.15)
    assert unit.accepted_defects == 1
    heavy = np.ones(70)
    heavy[30] = 3.0  # that defect was an audit drawn with odds 1/3: it stands for 3
    weighted = choose_auto_accept_threshold(p, labels, heavy, budget=0.15)
    assert weighted.accepted_defects == 0 and 0.05 < weighted.threshold <= 0.055
    # Weights on goods change the accepted share of goods.
    goods_weights = np.ones(70)
    goods_weights[:5] = 10.0  # the five lowest goods stand for ten each
    cut = choose_auto_accept_threshold(p, labels, goods_weights, budget=0.1)
    assert cut.accepted_goods_share == pytest.approx(50 / 75)  # goods up to p = 0.05 only


# --- triage_evidence and TriageEvidence ---------------------------------------------------


def test_nested_evidence_passes_on_separable_parts() -> None:
    scores, vectors, labels = readings(40, 30, signal=6.0)
    evidence = triage_evidence(scores, vectors, labels, np.ones(70), budget=0.3, config=FAST)
    assert evidence.passed and evidence.reasons() == []
    assert (evidence.folds, evidence.n_goods, evidence.n_defects) == (3, 40, 30)
    assert evidence.accepted_goods_share > 0.5
    assert evidence.accepted_defects_share <= evidence.budget == 0.3
    assert evidence.defect_upper == pytest.approx(exact_upper(evidence.accepted_defects, 30))


def test_without_signal_few_or_no_goods_are_accepted() -> None:
    scores, vectors, labels = readings(40, 40, signal=0.0, seed=3)
    weights = np.ones(80)
    blind = triage_evidence(scores, vectors, labels, weights, budget=0.3, config=FAST)
    assert blind.accepted_defects_share <= 0.3 or not blind.passed
    assert blind.accepted_goods_share <= 0.2 or not blind.passed, blind
    _, signal_vectors, _ = readings(40, 40, signal=6.0, seed=3)
    sighted = triage_evidence(scores, signal_vectors, labels, weights, budget=0.3, config=FAST)
    assert sighted.passed
    assert sighted.accepted_goods_share > blind.accepted_goods_share + 0.5


def test_the_nested_check_needs_the_bound_in_each_training() -> None:
    assert nested_defects_needed(0, 0.02, 5) == 229  # 183 in each training of 4 folds of 5
    assert nested_defects_needed(229, 0.02, 5) == 0
    assert nested_defects_needed(0, 0.02, 2) == 366


def test_too_few_defects_accept_nothing_and_say_how_many_more() -> None:
    scores, vectors, labels = readings(40, 5, signal=6.0)  # 11 per training at 30%: 14 in all
    evidence = triage_evidence(
        scores, vectors, labels, np.ones(45), budget=0.3, config=ScorerConfig()
    )
    assert not evidence.passed
    assert evidence.accepted_goods == evidence.accepted_defects == 0
    assert evidence.defects_needed == 14 - 5  # each of the 5 trainings sees 4 folds of 5
    reasons = evidence.reasons()
    assert any("needs 9 more labelled flagged defects" in r for r in reasons)
    assert any("no flagged good part" in r for r in reasons)


def test_a_fold_whose_training_parts_are_too_few_accepts_nothing() -> None:
    scores, vectors, labels = readings(40, 12, signal=6.0)
    weights = np.ones(52)
    # Each outer fold trains on 9 or 10 defects (at least min_defects(0.5) == 6).
    fine = triage_evidence(scores, vectors, labels, weights, budget=0.5, config=FAST)
    assert fine.folds == 3 and fine.accepted_goods > 0  # trainable folds: goods accepted
    # The same parts, but fewer than 11 defects per class in every fold: none trains.
    starved_config = ScorerConfig(folds=3, c_values=(0.1, 1.0), min_per_class=11)
    starved = triage_evidence(scores, vectors, labels, weights, budget=0.5, config=starved_config)
    assert starved.folds == 3
    assert starved.accepted_goods == starved.accepted_defects == 0
    assert starved.accepted_goods_share == 0.0 and not starved.passed


def make_evidence(**changes: object) -> TriageEvidence:
    fields: dict[str, object] = {
        "folds": 5,
        "n_goods": 50,
        "n_defects": 61,
        "accepted_goods_share": 0.48,
        "accepted_goods": 24,
        "accepted_defects": 1,
        "accepted_defects_share": 1 / 61,
        "defect_upper": exact_upper(1, 61),
        "budget": 0.1,
        "defects_needed": 0,
    }
    return TriageEvidence(**{**fields, **changes})  # type: ignore[arg-type]


def test_evidence_passes_with_goods_accepted_and_defects_within_the_budget() -> None:
    evidence = make_evidence()
    assert evidence.passed and evidence.reasons() == []
    sentence = evidence.sentence()
    assert "48% of 50 flagged good parts" in sentence
    assert "1 of 61 flagged defects" in sentence and "budget 10.0%" in sentence
    data = evidence.to_json()
    assert data["passed"] is True and data["reasons"] == [] and data["sentence"] == sentence
    assert data["n_defects"] == 61 and data["accepted_goods"] == 24


def test_evidence_fails_without_accepted_goods_or_over_the_budget() -> None:
    idle = make_evidence(accepted_goods=0, accepted_goods_share=0.0)
    assert not idle.passed
    assert [r for r in idle.reasons() if "no flagged good part" in r]
    over = make_evidence(accepted_defects=9, accepted_defects_share=9 / 61)
    assert not over.passed
    (reason,) = over.reasons()
    assert "9 of 61" in reason and "above the budget of 10.0%" in reason
    at_budget = make_evidence(accepted_defects_share=0.1)
    assert at_budget.passed  # within means at most
    short = make_evidence(defects_needed=12, accepted_goods=0, accepted_goods_share=0.0)
    assert short.to_json()["passed"] is False
    assert any("needs 12 more labelled flagged defects" in r for r in short.reasons())


# --- train_triage_model -------------------------------------------------------------------


def test_the_triage_model_threshold_is_the_auto_accept_threshold_out_of_fold() -> None:
    scores, vectors, labels = readings(40, 30, signal=3.0, seed=5)
    weights = np.where(np.arange(70) % 7 == 0, 4.0, 1.0)
    config = FAST
    model, report, evidence = train_triage_model(
        scores, vectors, labels, weights, budget=0.3, config=config
    )
    cv = cross_validate(features(scores, vectors), labels, weights, config, folds=3)
    want = choose_auto_accept_threshold(cv.probabilities, labels, weights, budget=0.3)
    assert want.rule == AUTO_ACCEPT_RULE
    assert model.threshold == pytest.approx(want.threshold)
    assert report.threshold == pytest.approx(want.threshold)
    assert report.threshold_rule == AUTO_ACCEPT_RULE
    assert 0.0 < model.threshold < 1.0
    assert evidence == triage_evidence(scores, vectors, labels, weights, budget=0.3, config=config)


def test_a_triage_model_without_enough_defects_auto_accepts_nothing() -> None:
    scores, vectors, labels = readings(40, 10, signal=2.0)
    model, report, evidence = train_triage_model(scores, vectors, labels, np.ones(50), budget=0.05)
    assert model.threshold == NO_AUTO_ACCEPT and report.threshold_rule == NO_AUTO_ACCEPT_RULE
    assert not (model.predict_proba(scores, vectors) < model.threshold).any()
    assert evidence.defects_needed == 90 - 10 and not evidence.passed  # 72 per training


@pytest.mark.parametrize(("budget", "confidence"), [(0.0, 0.95), (1.0, 0.95), (0.3, 1.2)])
def test_train_triage_model_refuses_a_bad_budget_or_confidence(
    budget: float, confidence: float
) -> None:
    scores, vectors, labels = readings(10, 10, signal=6.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_triage_model(
            scores, vectors, labels, np.ones(20), budget=budget, confidence=confidence
        )


def test_train_triage_model_refuses_vectors_of_another_count() -> None:
    scores, vectors, labels = readings(10, 10, signal=6.0)
    with pytest.raises(DatasetError, match="20 scores"):
        train_triage_model(scores, vectors[:-1], labels, np.ones(20), budget=0.3)


# --- train_feedback_scorer: sample_weight and choose_threshold ----------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(19), "20 labels but 19 sample weights"),
        (np.r_[np.ones(19), 0.0], "positive finite"),
        (np.r_[np.ones(19), -1.0], "positive finite"),
        (np.r_[np.ones(19), np.nan], "positive finite"),
        (np.r_[np.ones(19), np.inf], "positive finite"),
    ],
)
def test_sample_weights_must_be_positive_and_one_per_part(
    weights: np.ndarray, message: str
) -> None:
    scores, vectors, labels = readings(10, 10, signal=6.0)
    with pytest.raises(ValueError, match=message):
        train_feedback_scorer(scores, vectors, labels, sample_weight=weights)


def test_sample_weights_change_the_fit() -> None:
    scores, vectors, labels = readings(20, 20, signal=1.0, seed=2)
    plain, _ = train_feedback_scorer(scores, vectors, labels, config=FAST)
    same, _ = train_feedback_scorer(scores, vectors, labels, config=FAST, sample_weight=np.ones(40))
    weights = np.where(np.arange(40) % 3 == 0, 8.0, 1.0)
    weighted, _ = train_feedback_scorer(scores, vectors, labels, config=FAST, sample_weight=weights)
    p_plain = plain.predict_proba(scores, vectors)
    np.testing.assert_allclose(same.predict_proba(scores, vectors), p_plain)
    assert not np.allclose(weighted.predict_proba(scores, vectors), p_plain, atol=1e-3)


def test_a_custom_threshold_rule_sets_the_threshold_and_names_it() -> None:
    scores, vectors, labels = readings(12, 9, signal=3.0)
    weights = np.linspace(1.0, 3.0, 21)
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def rule(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, str]:
        seen.append((p, y, w))
        return 0.42, "my_rule"

    model, report = train_feedback_scorer(
        scores, vectors, labels, config=FAST, sample_weight=weights, choose_threshold=rule
    )
    assert model.threshold == pytest.approx(0.42) and report.threshold == pytest.approx(0.42)
    assert report.threshold_rule == "my_rule"
    ((p, y, w),) = seen
    assert p.shape == (21,) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(w, weights)
    default, default_report = train_feedback_scorer(scores, vectors, labels, config=FAST)
    assert default_report.threshold_rule != "my_rule"
    assert not math.isclose(default.threshold, 0.42)
