"""Inspector agreement (Cohen's kappa from scikit-learn) and the score drift alarm (scipy KS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from services.dashboard_stats import pairwise_agreement, score_drift

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def scored(values: np.ndarray) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=i), float(v)) for i, v in enumerate(values)]


def test_drift_is_raised_when_recent_good_scores_move_up() -> None:
    rng = np.random.default_rng(0)
    steady = rng.normal(1.0, 0.1, 400)
    shifted = np.concatenate([steady[:200], rng.normal(1.15, 0.1, 200)])  # 1.5 sigma later on
    check = score_drift(scored(shifted))
    assert check.tested and check.alarm
    assert check.statistic > 0.4 and check.p_value < 1e-6
    assert check.median_shift == pytest.approx(0.15, abs=0.04)
    assert (check.n_reference, check.n_recent) == (200, 200)
    assert check.reference_span == (T0, T0 + timedelta(minutes=199))
    assert "p < 0.01" in check.rule

    quiet = score_drift(scored(steady))
    assert quiet.tested and not quiet.alarm


def test_a_tiny_but_significant_shift_on_a_long_history_is_no_alarm() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(1.0, 0.1, 5000), rng.normal(1.02, 0.1, 5000)])
    check = score_drift(scored(values), window=5000)
    assert check.p_value < 0.01 and check.statistic < 0.2 and not check.alarm


def test_too_few_good_parts_are_not_tested_and_say_why() -> None:
    check = score_drift(scored(np.ones(60)))
    assert not check.tested and not check.alarm and check.statistic is None
    assert "60 good parts" in check.reason and "needs 100" in check.reason


def test_pairwise_agreement_counts_shared_parts_and_matches_sklearns_kappa() -> None:
    opinions = {
        1: {"ines": "defect", "mona": "defect", "omar": "defect"},
        2: {"ines": "good", "mona": "defect"},
        3: {"ines": "good", "mona": "good"},
        4: {"ines": "good", "mona": "good"},
        5: {"mona": "good", "omar": "good"},
    }
    pairs = {p.reviewers: p for p in pairwise_agreement(opinions)}
    ines_mona = pairs[("ines", "mona")]
    assert (ines_mona.agreement.count, ines_mona.agreement.n) == (3, 4)
    ines = ["defect", "good", "good", "good"]  # parts 1-4
    mona = ["defect", "defect", "good", "good"]
    assert ines_mona.kappa == pytest.approx(cohen_kappa_score(ines, mona))
    assert ines_mona.agreement.low < 0.75 < ines_mona.agreement.high
    mona_omar = pairs[("mona", "omar")]
    assert (mona_omar.agreement.count, mona_omar.agreement.n) == (2, 2)
    assert mona_omar.kappa == pytest.approx(1.0)
    assert pairs[("ines", "omar")].kappa is None  # one shared part, one label: undefined
    assert next(iter(pairwise_agreement(opinions))).reviewers == ("ines", "mona")
