"""The Dashboard's headline: periods, sparse periods merged, lineages and the load (pure parts)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import User
from db.loop_parts import LoopPart
from db.model_metrics import SAME_MODEL_AS_KEY
from db.model_versions import activate_model_version, register_model_version
from db.review_queue import record_review
from services.line_trends import (
    LINE,
    line_trends,
    load_over_time,
    period_of,
    rates_over_time,
)
from services.loop_rates import estimate_parts

MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday, early shift
DAY = timedelta(days=1)


def part(
    n: int,
    at: datetime,
    region: str,
    label: str | None = None,
    *,
    audited: bool = False,
    odds: float = 1.0,
    version: int = 1,
) -> LoopPart:
    verdict = "defect" if region in ("sent_to_human", "auto_accepted") else "good"
    return LoopPart(n, at, region, odds, audited, verdict, label, version)


def line(_part: LoopPart) -> str:
    return LINE


def test_periods_are_utc_days_iso_weeks_and_the_three_shifts() -> None:
    night = datetime(2026, 11, 4, 3, 30, tzinfo=UTC)  # Wednesday 03:30: Tuesday's night shift

    assert period_of(night, "day")[2] == "2026-11-04"
    assert period_of(night, "week")[0] == datetime(2026, 11, 2, tzinfo=UTC)
    assert period_of(night, "week")[2] == "week of 2026-11-02"
    start, end, label = period_of(night, "shift")
    assert (start, end, label) == (
        datetime(2026, 11, 3, 22, tzinfo=UTC),
        datetime(2026, 11, 4, 6, tzinfo=UTC),
        "2026-11-03 night",
    )
    assert period_of(datetime(2026, 11, 4, 14, tzinfo=UTC), "shift")[2] == "2026-11-04 late"
    assert period_of(datetime(2026, 11, 4, 13, 59, tzinfo=UTC), "shift")[2] == "2026-11-04 early"
    with pytest.raises(ValueError, match="timezone"):
        period_of(datetime(2026, 11, 4), "day")
    with pytest.raises(ValueError, match="period"):
        period_of(night, "month")  # type: ignore[arg-type]


def test_a_period_without_audited_passes_is_merged_with_the_next_one() -> None:
    # Day 1: 3 flagged parts labelled, 50 deep passes, none audited: no miss estimate alone.
    # Day 2: 3 flagged labelled, 50 deep passes, 3 audited (one missed defect among them).
    parts = [part(i, MONDAY, "sent_to_human", "defect") for i in range(3)]
    parts += [part(10 + i, MONDAY, "deep_pass", odds=0.1) for i in range(50)]
    parts += [part(100 + i, MONDAY + DAY, "sent_to_human", "defect") for i in range(2)]
    parts += [part(102, MONDAY + DAY, "sent_to_human", "good")]
    parts += [
        part(200 + i, MONDAY + DAY, "deep_pass", "good", audited=True, odds=0.1) for i in range(2)
    ]
    parts += [part(202, MONDAY + DAY, "deep_pass", "defect", audited=True, odds=0.1)]
    parts += [part(300 + i, MONDAY + DAY, "deep_pass", odds=0.1) for i in range(47)]

    groups = rates_over_time(parts, "day", line)

    assert len(groups) == 1
    group = groups[0]
    assert (group.label, group.n_periods, group.enough) == ("2026-11-02 to 2026-11-03", 2, True)
    assert (group.start, group.end) == (
        datetime(2026, 11, 2, tzinfo=UTC),
        datetime(2026, 11, 4, tzinfo=UTC),
    )
    # Exact counts: 6 flagged (5 defects), 100 deep passes with a defect share of 1/3 among
    # the audited (equal weights): 33.3 missed defects of 38.3; goods to a human 1 of 66.7.
    estimate = group.estimate
    assert estimate.est_missed == pytest.approx(100 / 3)
    assert estimate.est_defects == pytest.approx(5 + 100 / 3)
    assert estimate.fnr.rate == pytest.approx((100 / 3) / (5 + 100 / 3))
    assert estimate.fpr.rate == pytest.approx(1 / (1 + 200 / 3))
    assert estimate.fnr.low < estimate.fnr.rate < estimate.fnr.high
    assert estimate == estimate_parts(parts)


def test_merging_reads_how_many_labels_there_are_never_what_they_say() -> None:
    def week(labels: list[str]) -> list[LoopPart]:
        parts = []
        for day in range(4):
            at = MONDAY + day * DAY
            parts += [part(100 * day + i, at, "sent_to_human", labels[i % 2]) for i in range(4)]
            audit = part(100 * day + 50, at, "deep_pass", labels[day % 2], audited=True, odds=0.1)
            parts += [audit] + [
                part(100 * day + 60 + i, at, "deep_pass", odds=0.1) for i in range(20)
            ]
        return parts

    spans = [
        [(g.label, g.n_periods) for g in rates_over_time(week(labels), "day", line)]
        for labels in (["good", "good"], ["defect", "defect"], ["good", "defect"])
    ]

    assert spans[0] == spans[1] == spans[2]
    # 21 deep passes a day at 10% odds promise 2.1 audits a day: 3 days make 3 audits (as many
    # as asked), and the short tail (one day) joins the group before it.
    assert spans[0] == [("2026-11-02 to 2026-11-05", 4)]


def test_a_region_is_asked_for_as_many_labels_as_its_odds_promise_at_least_one() -> None:
    flagged = [part(i, MONDAY, "sent_to_human", "defect") for i in range(3)]
    # 20 deep passes at 2% promise 0.4 audits: one labelled audit is enough ...
    few = [part(10 + i, MONDAY, "deep_pass", odds=0.02) for i in range(19)]
    one_audit = [part(9, MONDAY, "deep_pass", "good", audited=True, odds=0.02)]
    # ... 200 promise 4, so 3 are asked for: one is not enough.
    many = [part(100 + i, MONDAY, "deep_pass", odds=0.02) for i in range(199)]

    [small] = rates_over_time(flagged + few + one_audit, "day", line)
    [large] = rates_over_time(flagged + many + one_audit, "day", line)

    assert small.enough and small.estimate.fnr.rate == 0.0
    assert not large.enough


def test_a_series_that_never_has_enough_labels_says_so() -> None:
    parts = [part(1, MONDAY, "sent_to_human", "defect"), part(2, MONDAY, "deep_pass")]

    [group] = rates_over_time(parts, "week", line)

    assert not group.enough
    assert group.estimate.fnr.rate is None  # never a 0% point
    assert any("deep_pass" in note for note in group.estimate.notes)


def test_each_lineage_is_its_own_series_in_model_order() -> None:
    parts = [
        part(i, MONDAY + i * DAY, "sent_to_human", "defect", version=version)
        for i, version in enumerate([10, 10, 2, 2])
    ]
    names = {10: "v10", 2: "v2"}

    groups = rates_over_time(parts, "day", lambda p: names[p.model_version_id])

    assert [(g.series, g.label) for g in groups] == [
        ("v2", "2026-11-04"),
        ("v2", "2026-11-05"),
        ("v10", "2026-11-02"),
        ("v10", "2026-11-03"),
    ]
    assert all(g.enough and g.estimate.fnr.rate == 0.0 for g in groups)


def test_the_load_counts_decisions_audits_and_the_goods_sent_to_a_human() -> None:
    parts = [
        part(1, MONDAY, "sent_to_human", "defect"),
        part(2, MONDAY, "sent_to_human", "good"),
        part(3, MONDAY, "sent_to_human", "good"),
        part(4, MONDAY, "sent_to_human"),  # waiting in the queue
        part(5, MONDAY, "auto_accepted", "good", audited=True, odds=0.1),
        part(6, MONDAY, "auto_accepted"),
        part(7, MONDAY, "deep_pass", audited=True, odds=0.02),  # drawn, not labelled yet
        part(8, MONDAY, "near_pass"),
        part(9, MONDAY + 7 * DAY, "deep_pass"),
    ]

    first, second = load_over_time(parts, "week")

    assert (first.label, first.n_parts, first.n_sent_to_human) == ("week of 2026-11-02", 8, 4)
    assert first.share_sent_to_human == pytest.approx(0.5)
    assert first.est_goods_to_human == pytest.approx(4 * 2 / 3)
    assert (first.n_auto_accepted, first.n_audits_drawn, first.n_audits_done) == (2, 2, 1)
    assert (second.n_parts, second.n_sent_to_human, second.est_goods_to_human) == (1, 0, None)
    assert second.share_sent_to_human == 0.0


def test_min_labels_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_labels"):
        rates_over_time([], "day", line, min_labels=0)


# ---- from the store ------------------------------------------------------------------------


def revision_of(factory: sessionmaker[Session], project_id: int, parent_id: int) -> int:
    """Register and activate a recalibration of ``parent_id`` (a revision of its model)."""
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="models/cells/v",
            metrics={SAME_MODEL_AS_KEY: [parent_id]},
            threshold=1.0,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def test_the_store_groups_parts_by_model_with_all_its_revisions(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    ines = make_user("ines")
    first = add_version(session_factory, project_id)  # v1.0
    revised = revision_of(session_factory, project_id, first)  # v1.1
    refit = add_version(session_factory, project_id)  # v2.0, active
    monday = datetime(2026, 11, 2, 9, tzinfo=UTC)
    decided = [(first, 3.0), (revised, 3.0), (revised, 0.2), (refit, 3.0), (refit, 0.2)]
    images = []
    for n, (version, score) in enumerate(decided):
        image = add_image(session_factory, project_id, n)
        sends = score >= 1.0
        add_prediction(
            session_factory,
            image,
            version,
            score,
            at=monday + n * DAY,
            decision_region="sent_to_human" if sends else "deep_pass",
            audit_probability=1.0 if sends else 0.5,
            audit=not sends,
        )
        images.append(image)
    with session_factory() as session, session.begin():
        user = session.get(User, ines)
        for image, value in zip(
            images, ["defect", "good", "defect", "defect", "good"], strict=True
        ):
            record_review(session, image_id=image, user=user, label=value)

    with session_factory() as session:
        trends = line_trends(session, project_id, "week")

    assert trends.active_model == "v2"
    assert [(g.series, g.estimate.n_parts) for g in trends.rates] == [("v1", 3), ("v2", 2)]
    v1 = trends.rates[0].estimate
    # v1 (both revisions): one flagged defect, one flagged good, one audited missed defect.
    assert v1.fnr.rate == pytest.approx(0.5)
    assert trends.active_estimate is not None and trends.active_estimate.n_parts == 2
    assert trends.active_estimate.fnr.rate == 0.0
    assert trends.overall.n_parts == 5
    assert [row.n_parts for row in trends.load] == [5]


def test_an_empty_project_and_an_unknown_one(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session:
        empty = line_trends(session, project_id, "shift")
        with pytest.raises(LookupError):
            line_trends(session, project_id + 99)
        with pytest.raises(ValueError, match="period"):
            line_trends(session, project_id, "month")  # type: ignore[arg-type]

    assert empty.rates == [] and empty.load == [] and empty.active_model is None
    assert empty.overall.n_parts == 0 and empty.overall.fnr.rate is None
