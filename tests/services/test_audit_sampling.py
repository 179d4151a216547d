"""Audit sampling at inspection, the per-project odds and the dashboard's miss-rate report.

A stand-in detector (:mod:`stand_in_detector`) scores a flat grey part by its grey level
(score = level / 100, threshold 1.0), so which parts pass is known in advance and the tests
stay fast. With the default near band (10%), levels 90..99 are near passes and lower levels
deep passes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stand_in_detector import GreyLevelDetector, grey_part
from stored_rows import image_row

from adcore.audit import (
    AUTO_ACCEPTED,
    DEEP_PASS,
    DEFAULT_AUDIT_SHARE,
    NEAR_PASS,
    SENT_TO_HUMAN,
    AuditOdds,
    draw_audit,
)
from db import PermissionDenied, Prediction, Project, User
from services.audit_sampling import AuditDraw, AuditSampler, audit_sampler
from services.inspection import (
    InspectionRequest,
    InspectionResult,
    inspect_uploads,
    rescore_images,
)
from services.project_settings import (
    AUDIT_KEY,
    audit_odds,
    audit_setting,
    set_audit_odds,
    set_audit_share,
)
from services.scoring.predictor import Predictor

PASSED_LEVELS = range(0, 60)  # score 0.00 .. 0.59: pass, deep below the threshold
NEAR_LEVELS = range(91, 100)  # score 0.91 .. 0.99: pass, within the near band
FLAGGED_LEVELS = range(150, 170)  # score 1.50 .. 1.69: flagged (sent to a human)


class FlagsMoreDetector(GreyLevelDetector):
    """The stand-in at threshold 0.3: most parts the first one passed, it flags."""

    threshold = 0.3


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


def stored_decisions(
    factory: sessionmaker[Session], results: Sequence[InspectionResult]
) -> list[tuple[str | None, float | None, bool]]:
    """``(decision_region, audit_probability, audit)`` of each result's stored prediction."""
    with factory() as session:
        rows = [session.get(Prediction, result.prediction_id) for result in results]
        return [(row.decision_region, row.audit_probability, row.audit) for row in rows]


def as_manager(
    factory: sessionmaker[Session], project_id: int, manager: int, **changes: float
) -> AuditOdds:
    with factory() as session, session.begin():
        return set_audit_odds(session, project_id, user=session.get(User, manager), **changes)


def new_images(factory: sessionmaker[Session], project_id: int, count: int) -> list[int]:
    """``count`` stored images without predictions (nothing decided about them yet)."""
    with factory() as session, session.begin():
        rows = [image_row(project_id, 1000 + n) for n in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_zero_odds_are_refused_and_an_old_zero_share_falls_back_to_the_default(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
) -> None:
    project_id = project_and_version[0]
    manager = make_user("mona", "manager")
    with session_factory() as session:
        user = session.get(User, manager)
        with pytest.raises(ValueError, match="never zero"):
            set_audit_share(session, project_id, 0.0, user=user)
        for region in ("deep_pass", "near_pass", "auto_accepted"):
            with pytest.raises(ValueError, match="never zero"):
                set_audit_odds(session, project_id, user=user, **{region: 0})
    with session_factory() as session:
        assert session.get(Project, project_id).settings.get(AUDIT_KEY) is None  # unchanged

    set_share(session_factory, project_id, 0.0)  # "no audit" stored before odds were nonzero
    with session_factory() as session:
        assert audit_sampler(session, project_id).odds == AuditOdds()
    results = inspect(session_factory, project_and_version, PASSED_LEVELS, random.Random(3))
    assert {(r.region, r.audit_probability) for r in results} == {(DEEP_PASS, DEFAULT_AUDIT_SHARE)}
    replay = random.Random(3)
    assert [r.audit for r in results] == [draw_audit(DEFAULT_AUDIT_SHARE, replay) for _ in results]


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

    set_share(session_factory, project_id, 1.0)  # now every new deep pass would be drawn ...
    uploaded = inspect(session_factory, project_and_version, PASSED_LEVELS, random.Random(6))
    assert {result.image_id: result.audit for result in uploaded} == drawn  # ... not these
    assert {result.audit_probability for result in uploaded} == {0.5}  # their first odds


def test_the_audit_share_defaults_to_two_percent_and_only_managers_change_it(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    inspector, manager = make_user("ines"), make_user("mona", "manager")
    with session_factory() as session:
        assert audit_setting(session.get(Project, project_id)) == DEFAULT_AUDIT_SHARE
        assert audit_sampler(session, project_id).odds == AuditOdds()

    with session_factory() as session, session.begin():
        assert set_audit_share(session, project_id, 0.05, user=session.get(User, manager)) == 0.05
    refused = pytest.raises(PermissionDenied, match="Only managers can change the audit odds")
    with refused, session_factory() as session, session.begin():
        set_audit_share(session, project_id, 0.3, user=session.get(User, inspector))
    for bad in (-0.1, 0.0, 1.5, float("nan"), "0.1", None, True):
        with pytest.raises(ValueError, match="audit odds of deep pass"), session_factory() as s:
            set_audit_share(s, project_id, bad, user=s.get(User, manager))
    with pytest.raises(LookupError), session_factory() as session:
        set_audit_share(session, project_id + 99, 0.1, user=session.get(User, manager))
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert audit_setting(project) == 0.05  # every refusal changed nothing
        assert project.settings[AUDIT_KEY] == AuditOdds(deep_pass=0.05).to_json()


def test_set_audit_odds_changes_what_is_named_and_refuses_the_rest(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> None:
    inspector, manager = make_user("ines"), make_user("mona", "manager")
    changed = as_manager(session_factory, project_id, manager, near_pass=0.5, near_band=0.2)
    assert changed == AuditOdds(near_pass=0.5, near_band=0.2)
    changed = as_manager(session_factory, project_id, manager, auto_accepted=1.0)
    assert changed == AuditOdds(near_pass=0.5, near_band=0.2, auto_accepted=1.0)  # kept the rest

    refusals: list[tuple[dict, str]] = [
        ({"share": 0.1}, "Unknown audit setting"),
        ({"sent_to_human": 0.5}, "Unknown audit setting"),
        ({"near_pass": 0.3, "typo": 0.1}, "Unknown audit setting"),
        ({"near_pass": 0.0}, "audit odds of near pass"),
        ({"auto_accepted": -0.1}, "audit odds of auto accepted"),
        ({"deep_pass": 1.01}, "audit odds of deep pass"),
        ({"deep_pass": "0.1"}, "audit odds of deep pass"),
        ({"deep_pass": True}, "audit odds of deep pass"),
        ({"near_band": 1.5}, "near band"),
        ({"near_band": -0.1}, "near band"),
        ({"near_pass": 0.3, "deep_pass": 0.0}, "audit odds of deep pass"),  # all or nothing
    ]
    for changes, message in refusals:
        with pytest.raises(ValueError, match=message), session_factory() as session:
            set_audit_odds(session, project_id, user=session.get(User, manager), **changes)
    refused = pytest.raises(PermissionDenied, match="Only managers can change the audit odds")
    with refused, session_factory() as session, session.begin():
        set_audit_odds(session, project_id, user=session.get(User, inspector), near_pass=0.9)
    with pytest.raises(LookupError), session_factory() as session:
        set_audit_odds(session, project_id + 99, user=session.get(User, manager), near_pass=0.3)
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert audit_odds(project) == changed  # every refusal changed nothing
        assert project.settings[AUDIT_KEY] == changed.to_json()


def test_a_broken_stored_share_falls_back_to_the_default(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    for stored in ({"share": 7}, {"share": "lots"}, {"share": 0}, {}, None):
        with session_factory() as session, session.begin():
            session.get(Project, project_id).settings = {AUDIT_KEY: stored}
        with session_factory() as session:
            assert audit_setting(session.get(Project, project_id)) == DEFAULT_AUDIT_SHARE
            assert audit_odds(session.get(Project, project_id)) == AuditOdds()


def test_an_old_share_is_read_as_the_deep_pass_odds_and_broken_odds_fall_back_one_by_one(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    cases: list[tuple[dict, AuditOdds]] = [
        ({"share": 0.05}, AuditOdds(deep_pass=0.05)),
        ({"share": 0.05, "deep_pass": 0.3}, AuditOdds(deep_pass=0.3)),  # the newer name wins
        (
            {"deep_pass": 0.05, "near_pass": "x", "auto_accepted": 0, "near_band": 2},
            AuditOdds(deep_pass=0.05),
        ),
        ({"near_pass": 0.4, "near_band": 0.0}, AuditOdds(near_pass=0.4, near_band=0.0)),
    ]
    for stored, odds in cases:
        with session_factory() as session, session.begin():
            session.get(Project, project_id).settings = {AUDIT_KEY: stored}
        with session_factory() as session:
            assert audit_odds(session.get(Project, project_id)) == odds, stored
            assert audit_sampler(session, project_id).odds == odds


def test_each_region_is_drawn_with_its_own_odds(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    odds = AuditOdds(deep_pass=0.05, near_pass=0.5, auto_accepted=0.3)
    regions = [DEEP_PASS, NEAR_PASS, AUTO_ACCEPTED] * 300
    images = new_images(session_factory, project_id, len(regions))
    with session_factory() as session:
        sampler = AuditSampler(odds, random.Random(4))
        draws = [sampler.decide(session, i, r) for i, r in zip(images, regions, strict=True)]
    assert [draw.region for draw in draws] == regions
    assert [draw.probability for draw in draws] == [odds.probability(r) for r in regions]
    replay = random.Random(4)  # one draw per part, in order, with its region's odds
    assert [draw.audit for draw in draws] == [
        draw_audit(odds.probability(r), replay) for r in regions
    ]
    for region, low, high in (
        (DEEP_PASS, 0.0, 0.15),
        (NEAR_PASS, 0.4, 0.6),
        (AUTO_ACCEPTED, 0.2, 0.4),
    ):
        drawn = [draw.audit for draw in draws if draw.region == region]
        assert low <= sum(drawn) / len(drawn) <= high, region


def test_a_part_sent_to_a_human_is_certain_and_never_drawn(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    rng = random.Random(8)
    state = rng.getstate()
    images = new_images(session_factory, project_id, 50)
    with session_factory() as session:
        sampler = AuditSampler(AuditOdds(deep_pass=1.0, near_pass=1.0, auto_accepted=1.0), rng)
        draws = {sampler.decide(session, image_id, SENT_TO_HUMAN) for image_id in images}
    assert draws == {AuditDraw(SENT_TO_HUMAN, 1.0, False)}
    assert rng.getstate() == state  # no randomness spent on a certain look


def test_a_part_scored_again_keeps_its_first_region_odds_and_flag(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
) -> None:
    project_id, version_id = project_and_version
    manager = make_user("mona", "manager")
    as_manager(session_factory, project_id, manager, deep_pass=0.5, near_pass=0.5)
    levels = [*PASSED_LEVELS[20:50], *NEAR_LEVELS, *FLAGGED_LEVELS[:5]]  # 0.20 .. 0.49 deep
    first = inspect(session_factory, project_and_version, levels, random.Random(9))
    decided = {r.image_id: (r.region, r.audit_probability, r.audit) for r in first}
    expected_regions = [DEEP_PASS] * 30 + [NEAR_PASS] * len(NEAR_LEVELS) + [SENT_TO_HUMAN] * 5
    assert [r.region for r in first] == expected_regions
    assert any(r.audit for r in first) and not all(r.audit for r in first[:-5])

    # New odds, a detector that flags most of these parts: the line decided them already.
    as_manager(session_factory, project_id, manager, deep_pass=1.0, near_pass=1.0)
    again = rescore_images(
        session_factory,
        project_id=project_id,
        detector=FlagsMoreDetector(),
        model_version_id=version_id,
        image_ids=list(decided),
    )
    assert [r.verdict for r in again].count("defect") == 20 + len(NEAR_LEVELS) + 5  # >= 0.30
    assert {r.image_id: (r.region, r.audit_probability, r.audit) for r in again} == decided
    assert stored_decisions(session_factory, again) == [decided[r.image_id] for r in again]
    with session_factory() as session:  # asked directly, whatever region it would be in now
        sampler = AuditSampler(AuditOdds(), random.Random(0))
        for image_id, (region, probability, audit) in decided.items():
            assert sampler.decide(session, image_id, SENT_TO_HUMAN) == AuditDraw(
                region, probability, audit
            )


def test_changing_the_odds_does_not_rewrite_the_odds_stored_with_parts(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
) -> None:
    project_id = project_and_version[0]
    manager = make_user("mona", "manager")
    as_manager(session_factory, project_id, manager, deep_pass=0.5)
    before = inspect(session_factory, project_and_version, PASSED_LEVELS[:20], random.Random(1))
    stored_before = stored_decisions(session_factory, before)
    assert {(region, p) for region, p, _ in stored_before} == {(DEEP_PASS, 0.5)}

    as_manager(session_factory, project_id, manager, deep_pass=0.01)
    after = inspect(session_factory, project_and_version, PASSED_LEVELS[20:40], random.Random(1))
    assert stored_decisions(session_factory, before) == stored_before  # untouched
    assert {(r.region, r.audit_probability) for r in after} == {(DEEP_PASS, 0.01)}
    assert {(region, p) for region, p, _ in stored_decisions(session_factory, after)} == {
        (DEEP_PASS, 0.01)
    }


def test_a_part_decided_before_regions_keeps_its_flag_and_takes_its_region_now(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    set_share(session_factory, project_and_version[0], 0.5)
    (result,) = inspect(session_factory, project_and_version, [95], random.Random(2))
    with session_factory() as session, session.begin():  # as stored before the cascade
        row = session.get(Prediction, result.prediction_id)
        row.decision_region, row.audit_probability, row.audit = None, None, True
    odds = AuditOdds(near_pass=0.25)
    with session_factory() as session:
        draw = AuditSampler(odds, random.Random(0)).decide(session, result.image_id, NEAR_PASS)
    assert draw == AuditDraw(NEAR_PASS, 0.25, True)


def test_every_part_is_drawn_in_the_store_it_was_inspected_in(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int]
) -> None:
    """The flag is written in the same transaction as the prediction: no half-written row."""
    set_share(session_factory, project_and_version[0], 0.5)
    results = inspect(session_factory, project_and_version, PASSED_LEVELS[:10], random.Random(1))
    with session_factory() as session:
        rows = session.execute(select(Prediction.id, Prediction.audit)).all()
    assert dict(rows) == {result.prediction_id: result.audit for result in results}
