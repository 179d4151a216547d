"""Audit sampling at inspection, the per-project share and the dashboard's miss-rate report.

A stand-in detector (:mod:`stand_in_detector`) scores a flat grey part by its grey level
(score = level / 100, threshold 1.0), so which parts pass is known in advance and the tests
stay fast.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stand_in_detector import GreyLevelDetector, grey_part

from adcore.audit import DEFAULT_AUDIT_SHARE, draw_audit, miss_rate_estimate
from db import PermissionDenied, Prediction, Project, User
from db.review_queue import record_review
from services.audit_sampling import audit_sampler, miss_rate_report
from services.inspection import (
    InspectionRequest,
    InspectionResult,
    inspect_uploads,
    rescore_images,
)
from services.project_settings import AUDIT_KEY, audit_setting, set_audit_share
from services.scoring.predictor import Predictor

PASSED_LEVELS = range(0, 60)  # score 0.00 .. 0.59: pass
FLAGGED_LEVELS = range(150, 170)  # score 1.50 .. 1.69: flagged


def part(level: int) -> tuple[str, bytes]:
    return f"grey-{level:03d}.png", grey_part(level)


def set_share(factory: sessionmaker[Session], project_id: int, share: float) -> None:
    with factory() as session, session.begin():
        project = session.get(Project, project_id)
        project.settings = {**(project.settings or {}), AUDIT_KEY: {"share": share}}


def inspect(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    levels: Sequence[int],
    rng: random.Random | None,
) -> list[InspectionResult]:
    project_id, version_id = project_and_version
    predictor = Predictor.load(
        factory,
        project_id=project_id,
        model_version_id=version_id,
        detector=GreyLevelDetector(),
        audit_rng=rng,
    )
    results = inspect_uploads(
        factory, InspectionRequest(predictor), [part(level) for level in levels]
    )
    assert all(result.ok for result in results), [result.error for result in results]
    return results


def stored_flags(factory: sessionmaker[Session], results: Sequence[InspectionResult]) -> list:
    with factory() as session:
        return [session.get(Prediction, result.prediction_id).audit for result in results]


def test_share_zero_draws_no_part(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    set_share(session_factory, project_and_version[0], 0.0)
    results = inspect(session_factory, project_and_version, PASSED_LEVELS, random.Random(3))
    assert not any(result.audit for result in results)
    assert not any(stored_flags(session_factory, results))


def test_half_of_the_passed_parts_are_drawn_and_never_a_flagged_one(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    set_share(session_factory, project_and_version[0], 0.5)
    mixed = [level for pair in zip(PASSED_LEVELS, FLAGGED_LEVELS, strict=False) for level in pair]
    mixed += list(PASSED_LEVELS[len(FLAGGED_LEVELS) :])
    results = inspect(session_factory, project_and_version, mixed, random.Random(11))

    passed = [result for result in results if result.verdict == "good"]
    flagged = [result for result in results if result.verdict == "defect"]
    assert (len(passed), len(flagged)) == (len(PASSED_LEVELS), len(FLAGGED_LEVELS))
    assert not any(result.audit for result in flagged)
    assert 0.3 < sum(result.audit for result in passed) / len(passed) < 0.7
    assert stored_flags(session_factory, results) == [result.audit for result in results]
    # The generator is consulted once per passed part, in order: the draws are reproducible.
    replay = random.Random(11)
    assert [result.audit for result in passed] == [draw_audit(0.5, replay) for _ in passed]


def test_rescoring_and_uploading_again_never_draw_but_keep_the_flag(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    project_id, version_id = project_and_version
    set_share(session_factory, project_id, 0.5)
    first = inspect(session_factory, project_and_version, PASSED_LEVELS, random.Random(5))
    drawn = {result.image_id: result.audit for result in first}
    assert any(drawn.values()) and not all(drawn.values())

    again = rescore_images(
        session_factory,
        project_id=project_id,
        detector=GreyLevelDetector(),
        model_version_id=version_id,
        image_ids=list(drawn),
    )
    assert {result.image_id: result.audit for result in again} == drawn
    assert stored_flags(session_factory, again) == [drawn[r.image_id] for r in again]

    set_share(session_factory, project_id, 0.0)  # even with no share, a drawn part stays drawn
    uploaded = inspect(session_factory, project_and_version, PASSED_LEVELS, random.Random(6))
    assert {result.image_id: result.audit for result in uploaded} == drawn


def test_the_audit_share_defaults_to_two_percent_and_only_managers_change_it(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    inspector, manager = make_user("ines"), make_user("mona", "manager")
    with session_factory() as session:
        assert audit_setting(session.get(Project, project_id)) == DEFAULT_AUDIT_SHARE
        assert audit_sampler(session, project_id).share == DEFAULT_AUDIT_SHARE

    with session_factory() as session, session.begin():
        assert set_audit_share(session, project_id, 0.05, user=session.get(User, manager)) == 0.05
    refused = pytest.raises(PermissionDenied, match="Only managers can change the audit share")
    with refused, session_factory() as session, session.begin():
        set_audit_share(session, project_id, 0.3, user=session.get(User, inspector))
    for bad in (-0.1, 0.9, float("nan"), "0.1", None, True):
        with pytest.raises(ValueError, match="audit share"), session_factory() as session:
            set_audit_share(session, project_id, bad, user=session.get(User, manager))
    with pytest.raises(LookupError), session_factory() as session:
        set_audit_share(session, project_id + 99, 0.1, user=session.get(User, manager))
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert audit_setting(project) == 0.05  # every refusal changed nothing
        assert project.settings[AUDIT_KEY] == {"share": 0.05}


def test_a_broken_stored_share_falls_back_to_the_default(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    for stored in ({"share": 7}, {"share": "lots"}, {}, None):
        with session_factory() as session, session.begin():
            session.get(Project, project_id).settings = {AUDIT_KEY: stored}
        with session_factory() as session:
            assert audit_setting(session.get(Project, project_id)) == DEFAULT_AUDIT_SHARE


def test_the_report_estimates_the_miss_rate_from_the_labelled_audits(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
) -> None:
    project_id = project_and_version[0]
    ines, mona = make_user("ines"), make_user("mona", "manager")
    with session_factory() as session:
        empty = miss_rate_report(session, project_id, "week")
    assert empty.overall.rate is None and empty.points == [] and empty.n_waiting == 0
    assert empty.share == DEFAULT_AUDIT_SHARE

    set_share(session_factory, project_id, 0.5)
    results = inspect(session_factory, project_and_version, PASSED_LEVELS, random.Random(2))
    audited = [result.image_id for result in results if result.audit]
    assert len(audited) >= 4
    with session_factory() as session, session.begin():
        users = session.get(User, ines), session.get(User, mona)
        record_review(session, image_id=audited[0], user=users[0], label="defect")
        record_review(session, image_id=audited[0], user=users[1], label="defect")  # 2nd reviewer
        for image_id in audited[1:3]:
            record_review(session, image_id=image_id, user=users[0], label="good")

    with session_factory() as session:
        report = miss_rate_report(session, project_id, "day")
    assert report.share == 0.5
    assert report.overall == miss_rate_estimate(1, 3)
    assert report.n_waiting == len(audited) - 3
    assert [point.estimate for point in report.points] == [miss_rate_estimate(1, 3)]
    assert isinstance(report.points[0].period_start, date)
    with pytest.raises(LookupError), session_factory() as session:
        miss_rate_report(session, project_id + 99)


def test_every_part_is_drawn_in_the_store_it_was_inspected_in(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    """The flag is written in the same transaction as the prediction: no half-written row."""
    set_share(session_factory, project_and_version[0], 0.5)
    results = inspect(session_factory, project_and_version, PASSED_LEVELS[:10], random.Random(1))
    with session_factory() as session:
        rows = session.execute(select(Prediction.id, Prediction.audit)).all()
    assert dict(rows) == {result.prediction_id: result.audit for result in results}
