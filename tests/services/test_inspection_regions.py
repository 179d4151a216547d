"""Inspection stores where the decision cascade put each part and its known audit probability.

A stand-in detector (:mod:`stand_in_detector`) scores a flat grey part by its grey level
(score = level / 100, threshold 1.0), so each part's region is known in advance. Parts the
triage model auto-accepts are covered with a real scorer in ``scoring/test_feedback.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stand_in_detector import GreyLevelDetector, grey_part

from adcore.audit import DEEP_PASS, NEAR_PASS, SENT_TO_HUMAN, AuditOdds
from db import Prediction, Project
from services.inspection import InspectionRequest, InspectionResult, inspect_uploads
from services.project_settings import AUDIT_KEY
from services.scoring.predictor import Predictor


def use_odds(factory: sessionmaker[Session], project_id: int, odds: AuditOdds) -> None:
    with factory() as session, session.begin():
        project = session.get(Project, project_id)
        project.settings = {**(project.settings or {}), AUDIT_KEY: odds.to_json()}


def inspect(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    uploads: Sequence[tuple[str, bytes]],
    seed: int = 0,
) -> list[InspectionResult]:
    project_id, version_id = project_and_version
    predictor = Predictor.load(
        factory,
        project_id=project_id,
        model_version_id=version_id,
        detector=GreyLevelDetector(),
        audit_rng=random.Random(seed),
    )
    return inspect_uploads(factory, InspectionRequest(predictor), list(uploads))


def grey(level: int) -> tuple[str, bytes]:
    return f"grey-{level:03d}.png", grey_part(level)


def test_every_stored_prediction_carries_its_region_and_audit_probability(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    odds = AuditOdds(deep_pass=0.05, near_pass=0.4, auto_accepted=0.3)
    use_odds(session_factory, project_and_version[0], odds)
    levels = {10: DEEP_PASS, 89: DEEP_PASS, 90: NEAR_PASS, 99: NEAR_PASS, 100: SENT_TO_HUMAN}
    levels |= {150: SENT_TO_HUMAN}  # 1.00 is at the threshold: flagged, sent to a human
    results = inspect(session_factory, project_and_version, [grey(level) for level in levels])
    assert all(result.ok for result in results), [result.error for result in results]

    assert [result.region for result in results] == list(levels.values())
    assert [result.audit_probability for result in results] == [
        odds.probability(region) for region in levels.values()
    ]
    assert [result.verdict for result in results] == ["good"] * 4 + ["defect"] * 2
    sent = [result for result in results if result.region == SENT_TO_HUMAN]
    assert not any(result.audit for result in sent)  # a certain look is no audit sample
    with session_factory() as session:
        rows = {row.id: row for row in session.scalars(select(Prediction))}
    assert len(rows) == len(levels)
    for result in results:
        row = rows[result.prediction_id]
        assert row.decision_region == result.region
        assert row.audit_probability == pytest.approx(result.audit_probability)
        assert row.audit == result.audit
        assert row.defect_probability is None and row.scorer_version_id is None  # no scorer


def test_the_project_near_band_decides_where_near_passes_begin(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    project_id = project_and_version[0]
    use_odds(session_factory, project_id, AuditOdds(near_band=0.3))
    wide = inspect(session_factory, project_and_version, [grey(69), grey(70)])
    assert [result.region for result in wide] == [DEEP_PASS, NEAR_PASS]

    use_odds(session_factory, project_id, AuditOdds(near_band=0.0))
    none = inspect(session_factory, project_and_version, [grey(98), grey(100)])
    assert [result.region for result in none] == [DEEP_PASS, SENT_TO_HUMAN]


def test_a_part_that_could_not_be_read_has_no_region_and_nothing_is_stored_for_it(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    junk, part = inspect(
        session_factory, project_and_version, [("junk.png", b"not an image"), grey(20)]
    )
    assert not junk.ok and (junk.region, junk.audit_probability) == (None, None)
    assert part.ok and (part.region, part.audit_probability) == (DEEP_PASS, AuditOdds().deep_pass)
    with session_factory() as session:
        stored = session.execute(
            select(Prediction.decision_region, Prediction.audit_probability)
        ).all()
    assert [tuple(row) for row in stored] == [(DEEP_PASS, AuditOdds().deep_pass)]
