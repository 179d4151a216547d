"""The line's FNR and FPR through the store: exact plug-in figures, overall and per period.

The project holds (audit odds: deep_pass 0.1, near_pass 0.5):

    decided             region          parts   labels
    week of Mon 3 Mar   sent_to_human   4       defect, defect, good, none
                        deep_pass       10      2 audited: defect, good; 1 unaudited defect
    week of Mon 10 Mar  sent_to_human   1       defect
                        near_pass       5       1 audited: good

Week 1: 8/3 defects and 4/3 goods sent to a human, 5 missed defects and 5 goods in deep_pass:
FNR 5 / (8/3 + 5) = 15/23, FPR (4/3) / (4/3 + 5) = 4/19. Week 2: FNR 0, FPR 0. Overall the
sent_to_human share is 3/4: 3.75 + 5 defects, FNR 5 / 8.75, FPR 1.25 / 11.25 = 1/9.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from adcore.loop_estimate import LoopEstimate
from db import User
from db.loop_parts import loop_parts
from db.review_queue import record_review
from services.line_trends import LINE, line_trends, rates_over_time
from services.loop_rates import loop_rates

WEEK_1 = datetime(2025, 3, 3, 9, tzinfo=UTC)
WEEK_2 = datetime(2025, 3, 10, 9, tzinfo=UTC)
ODDS = {"sent_to_human": 1.0, "deep_pass": 0.1, "near_pass": 0.5}
PARTS = [  # (decided, region, audited, label)
    (WEEK_1, "sent_to_human", False, "defect"),
    (WEEK_1, "sent_to_human", False, "defect"),
    (WEEK_1, "sent_to_human", False, "good"),
    (WEEK_1, "sent_to_human", False, None),
    (WEEK_1, "deep_pass", True, "defect"),
    (WEEK_1, "deep_pass", True, "good"),
    (WEEK_1, "deep_pass", False, "defect"),  # looked at without being drawn: not usable
    *[(WEEK_1, "deep_pass", False, None)] * 7,
    (WEEK_2, "sent_to_human", False, "defect"),
    (WEEK_2, "near_pass", True, "good"),
    *[(WEEK_2, "near_pass", False, None)] * 4,
]


@pytest.fixture
def decided(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    """The project in the module docstring."""
    ines = make_user("ines")
    version = add_version(session_factory, project_id)
    for n, (at, region, audited, label) in enumerate(PARTS):
        image_id = add_image(session_factory, project_id, n)
        score = 2.0 if region == "sent_to_human" else 0.5
        add_prediction(
            session_factory,
            image_id,
            version,
            score,
            at=at + timedelta(minutes=n),
            decision_region=region,
            audit_probability=ODDS[region],
            audit=audited,
        )
        if label is not None:
            with session_factory() as session, session.begin():
                user = session.get(User, ines)
                record_review(session, image_id=image_id, user=user, label=label)


def test_the_rates_weigh_audits_by_their_odds(
    session_factory: sessionmaker[Session], project_id: int, decided: None
) -> None:
    with session_factory() as session:
        result = loop_rates(session, project_id)

    assert result.n_parts == 20
    assert result.n_labelled_defects == 4
    assert result.est_defects == pytest.approx(8.75)
    assert result.est_missed == pytest.approx(5.0)
    assert result.fnr.rate == pytest.approx(5 / 8.75)
    assert result.fpr.rate == pytest.approx(1 / 9)
    assert [(s.region, s.n_parts, s.n_labelled) for s in result.strata] == [
        ("sent_to_human", 5, 4),
        ("near_pass", 5, 1),
        ("deep_pass", 10, 2),
    ]
    assert result.fnr.low < result.fnr.rate < result.fnr.high


def test_since_keeps_the_parts_decided_from_then_on(
    session_factory: sessionmaker[Session], project_id: int, decided: None
) -> None:
    with session_factory() as session:
        result = loop_rates(session, project_id, since=WEEK_2 - timedelta(hours=1))

    assert result.n_parts == 6
    assert (result.fnr.rate, result.fpr.rate) == (0.0, 0.0)
    assert result.fnr.high > 0.0  # one audit of five passed parts proves little


def per_period(session: Session, project_id: int, period: str) -> list[tuple[date, LoopEstimate]]:
    """The Dashboard's per-period estimate (one label per region is enough: no merging here)."""
    groups = rates_over_time(loop_parts(session, project_id), period, lambda _p: LINE, min_labels=1)
    return [(group.start.date(), group.estimate) for group in groups]


def test_the_rates_come_per_week_in_which_the_line_decided_the_parts(
    session_factory: sessionmaker[Session], project_id: int, decided: None
) -> None:
    with session_factory() as session:
        weeks = per_period(session, project_id, "week")
        days = per_period(session, project_id, "day")

    assert [start for start, _ in weeks] == [date(2025, 3, 3), date(2025, 3, 10)]
    assert weeks[0][1].n_parts == 14
    assert weeks[0][1].fnr.rate == pytest.approx(15 / 23)
    assert weeks[0][1].fpr.rate == pytest.approx(4 / 19)
    assert (weeks[1][1].n_parts, weeks[1][1].fnr.rate) == (6, 0.0)
    assert [start for start, _ in days] == [date(2025, 3, 3), date(2025, 3, 10)]


def test_a_project_without_parts_has_no_rates(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session:
        assert loop_rates(session, project_id).fnr.rate is None
        assert per_period(session, project_id, "week") == []


def test_a_missing_project_or_period_is_refused(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session:
        with pytest.raises(LookupError, match="No project"):
            loop_rates(session, project_id + 1)
        with pytest.raises(LookupError, match="No project"):
            line_trends(session, project_id + 1)
        with pytest.raises(ValueError, match="period"):
            line_trends(session, project_id, "month")  # type: ignore[arg-type]
