"""The demo's simulated history: the plan (pure) and seeding it with a tiny stand-in model."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PilImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adcore.audit import REGIONS, SENT_TO_HUMAN, AuditOdds, decision_region, miss_rate_estimate
from adcore.datasets import Sample, load_mvtec
from adcore.detectors import registry
from adcore.detectors.registry import build_detector
from db import (
    Image,
    ModelVersion,
    Prediction,
    Project,
    Review,
    User,
    absolute_image_path,
    get_project,
    init_db,
    list_model_versions,
    make_session_factory,
)
from db.dashboard import error_rates_over_time, throughput
from db.model_metrics import SAME_MODEL_AS_KEY
from services import demo, demo_history
from services.demo import DEMO_PROJECT, seed_demo
from services.demo_history import seed_history, tagged_png, true_labels
from services.demo_history_plan import (
    DEMO_AUDIT_ODDS,
    HISTORY_DAYS,
    SHIFTS,
    ScoredCell,
    history_marker,
    plan_history,
    recalibration_note,
    simulated_before,
)
from services.loop_rates import loop_rates
from services.project_settings import audit_odds

TODAY = date(2026, 3, 16)


@pytest.fixture
def session_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker]:
    monkeypatch.setenv("LOUPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    engine = init_db()
    yield make_session_factory(engine)
    engine.dispose()


def synthetic_cells(n_good: int = 40, n_defect: int = 20, seed: int = 0) -> list[ScoredCell]:
    """Cells with known labels: good scores around 0, defects around 2 (overlapping)."""
    rng = random.Random(seed)
    return [
        ScoredCell(
            Sample(Path(f"/cells/{label}-{i}.png"), label, "defect" if label else "good"),
            rng.gauss(2.0 if label else 0.0, 1.0),
            f"maps/{label}-{i}.npy",
            None,
        )
        for label, n in ((0, n_good), (1, n_defect))
        for i in range(n)
    ]


def test_the_plan_spans_weeks_of_shifts_and_promotes_v2_two_thirds_through() -> None:
    plan = plan_history(
        synthetic_cells(), threshold_v1=1.5, target_fnr=0.01, today=TODAY, parts_per_day=30
    )
    midnight = datetime.combine(TODAY, datetime.min.time(), UTC)
    assert len(plan.parts) == HISTORY_DAYS * 30
    assert len({part.at.date() for part in plan.parts}) >= HISTORY_DAYS
    assert all(plan.start <= part.at and part.at < midnight for part in plan.parts)
    assert all(r.at < midnight for part in plan.parts for r in part.reviews)
    assert {part.at.hour for part in plan.parts} >= {6, 14, 22}  # all three shifts work
    share_before = sum(part.at < plan.switch_at for part in plan.parts) / len(plan.parts)
    assert 0.6 < share_before < 0.7
    assert all((part.version == 1) == (part.at < plan.switch_at) for part in plan.parts)
    assert {part.threshold for part in plan.parts if part.version == 1} == {1.5}
    assert {part.threshold for part in plan.parts if part.version == 2} == {plan.threshold_v2}
    # Audits of passed parts found misses (defects score from about 2 down), so the FNR-first
    # recalibration lowers the threshold: v2 flags more parts.
    assert plan.threshold_v2 < plan.threshold_v1
    for part in plan.parts:
        assert part.verdict == ("defect" if part.cell.score >= part.threshold else "good")
        assert bool(part.reviews) == (part.verdict == "defect" or part.audit)
        assert not (part.audit and part.verdict == "defect")


def test_each_part_stores_its_region_and_the_odds_it_was_drawn_with() -> None:
    plan = plan_history(
        synthetic_cells(), threshold_v1=1.5, target_fnr=0.01, today=TODAY, parts_per_day=30
    )
    assert plan.odds == DEMO_AUDIT_ODDS
    for part in plan.parts:
        region = decision_region(
            part.cell.score,
            part.threshold,
            auto_accepted=False,
            near_band=DEMO_AUDIT_ODDS.near_band,
        )
        assert part.region == region
        assert part.audit_probability == DEMO_AUDIT_ODDS.probability(region)
        assert (part.verdict == "defect") == (region == SENT_TO_HUMAN)
        assert not (part.audit and region == SENT_TO_HUMAN)  # reviewed anyway, never drawn
    regions = {part.region for part in plan.parts}
    assert regions == {"sent_to_human", "near_pass", "deep_pass"}  # no triage: none accepted


def test_audits_are_drawn_with_each_regions_odds_and_the_seed() -> None:
    odds = AuditOdds(deep_pass=0.05, near_pass=0.5, near_band=0.5)
    kwargs = {"threshold_v1": 1.5, "target_fnr": 0.01, "today": TODAY, "parts_per_day": 150}
    plan = plan_history(synthetic_cells(), odds=odds, **kwargs)
    for region, share in (("near_pass", 0.5), ("deep_pass", 0.05)):
        parts = [part for part in plan.parts if part.region == region]
        drawn = sum(part.audit for part in parts)
        spread = 4 * (len(parts) * share * (1 - share)) ** 0.5  # binomial, 4 standard deviations
        assert len(parts) > 300 and abs(drawn - len(parts) * share) < spread, region
    audits = [part.audit for part in plan.parts]
    again = plan_history(synthetic_cells(), odds=odds, **kwargs)
    assert audits == [part.audit for part in again.parts]
    other_seed = plan_history(synthetic_cells(), odds=odds, seed=15, **kwargs)
    assert audits != [part.audit for part in other_seed.parts]


def test_the_recalibration_note_gives_the_evidence_and_what_to_expect() -> None:
    plan = plan_history(
        synthetic_cells(), threshold_v1=1.5, target_fnr=0.01, today=TODAY, parts_per_day=30
    )
    audited = [p for p in plan.parts if p.audit and p.at < plan.switch_at]
    missed = sum(part.cell.sample.label for part in audited)
    assert (plan.audit_before.n_audited, plan.audit_before.n_missed) == (len(audited), missed)
    assert plan.switch_day == 19 and plan.switch_at.date() == date(2026, 3, 5)
    assert plan.recalibration_note == (
        f"Recalibrated on day 19 (2026-03-05): audits of passed parts found {missed} missed "
        f"defects of {len(audited)} audited; the threshold was lowered from 1.5 to "
        f"{plan.threshold_v2:.4g} to put missed defects first (FNR first); expect more good "
        "parts sent to a human."
    )
    day = date(2026, 3, 3)
    raised = recalibration_note(4, day, miss_rate_estimate(1, 40), 1.0, 1.25)
    assert raised.startswith("Recalibrated on day 4 (2026-03-03): audits of passed parts found 1 ")
    assert "1 missed defect of 40 audited; the threshold was raised from 1 to 1.25" in raised
    assert "expect fewer good parts sent to a human" in raised
    same = recalibration_note(4, day, miss_rate_estimate(0, 0), 1.0, 1.0)
    assert "no passed part had been audited yet; the threshold stays at 1;" in same


def test_reviews_follow_the_ground_truth_with_a_few_corrected_first_looks() -> None:
    plan = plan_history(
        synthetic_cells(), threshold_v1=1.5, target_fnr=0.01, today=TODAY, parts_per_day=30
    )
    reviewed = [part for part in plan.parts if part.reviews]
    truth = {0: "good", 1: "defect"}
    assert all(part.reviews[-1].label == truth[part.cell.sample.label] for part in reviewed)
    second_looks = [part for part in reviewed if len(part.reviews) == 2]
    corrected = [p for p in second_looks if p.reviews[0].label != p.reviews[1].label]
    assert corrected and len(corrected) < len(second_looks) < 0.2 * len(reviewed)
    for part in second_looks:
        first, second = part.reviews
        assert first.shift == part.shift and second.shift == (part.shift + 1) % len(SHIFTS)
        assert part.at < first.at < second.at
    defect_share = sum(part.cell.sample.label for part in plan.parts) / len(plan.parts)
    assert 0.15 < defect_share < 0.25


def test_the_plan_is_reproducible_and_refuses_an_empty_history() -> None:
    cells = synthetic_cells()
    first = plan_history(cells, threshold_v1=1.5, target_fnr=0.01, today=TODAY, parts_per_day=5)
    again = plan_history(cells, threshold_v1=1.5, target_fnr=0.01, today=TODAY, parts_per_day=5)
    assert first == again
    with pytest.raises(ValueError, match="needs cells"):
        plan_history([], threshold_v1=1.5, target_fnr=0.01, today=TODAY)


def test_a_tagged_png_is_a_new_file_with_the_same_pixels() -> None:
    buffer = io.BytesIO()
    pixels = np.arange(64 * 48, dtype=np.uint8).reshape(48, 64)
    PilImage.fromarray(pixels).save(buffer, format="PNG")
    data = buffer.getvalue()
    tagged = tagged_png(data, "Loupe demo part 2 of cell.png")
    assert tagged != data
    with PilImage.open(io.BytesIO(tagged)) as image:
        assert np.array_equal(np.asarray(image), pixels)
        assert image.text == {"Comment": "Loupe demo part 2 of cell.png"}
    with pytest.raises(ValueError, match="PNG"):
        tagged_png(b"GIF89a....", "part")


@pytest.fixture
def seeded(
    session_factory: sessionmaker[Session],
    mvtec_tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict:
    """The demo seeded on a tiny stand-in (8 test parts, a 64 px model, 6 parts a day)."""
    monkeypatch.setattr(demo, "load_elpv", lambda _cell_type: load_mvtec(mvtec_tree))
    monkeypatch.setattr(
        registry,  # seed_demo imports it lazily (it pulls in torch)
        "build_detector",
        partial(build_detector, image_size=64, coreset_ratio=0.1, device="cpu"),
    )
    monkeypatch.setattr(demo_history, "PARTS_PER_DAY", 6)
    summary = seed_demo(session_factory, models_root=tmp_path / "models", n_test=2, device="cpu")
    return {**summary, "tree": mvtec_tree, "models": tmp_path / "models"}


def test_seeding_stores_weeks_of_reviews_two_versions_and_several_inspectors(
    session_factory: sessionmaker[Session], seeded: dict
) -> None:
    assert seeded["created"] and seeded["n_inspected"] == 2
    today = datetime.now(UTC).date()
    with session_factory() as session:
        project = get_project(session, DEMO_PROJECT)
        v1, v2 = sorted(list_model_versions(session, project.id), key=lambda v: v.version)
        assert (v1.version, v1.status, v2.version, v2.status) == (1, "retired", 2, "active")
        assert project.active_model_version_id == v2.id == seeded["model_version_id"]
        assert v2.metrics[SAME_MODEL_AS_KEY] == [v1.id]  # a revision of v1's model: "v1.1"
        assert (v1.model_number, v1.revision, v2.model_number, v2.revision) == (1, 0, 1, 1)
        # Its notes say why, with the history's numbers (the audits before the switch).
        marker = history_marker(project)
        counts = v2.metrics["audit"]
        audit = miss_rate_estimate(counts["n_missed"], counts["n_audited"])
        switched = datetime.fromisoformat(marker["switch_at"]).date()
        why = recalibration_note(19, switched, audit, v1.threshold, v2.threshold)
        assert marker["recalibration"] == why
        assert v2.notes == f"{why} (Demo: simulated history.)"
        assert Path(v2.artifact_path, "config.json").is_file()

        reviews = session.execute(
            select(Review.created_at, Review.reviewer_id, Review.label, Image.original_name)
            .join(Image, Image.id == Review.image_id)
            .where(Image.project_id == project.id)
        ).all()
        review_days = {created_at.date() for created_at, *_ in reviews}
        assert len(review_days) >= 20 and max(review_days) < today
        assert (max(review_days) - min(review_days)).days >= 21
        reviewers = session.scalars(
            select(User).where(User.id.in_({reviewer for _, reviewer, _, _ in reviews}))
        ).all()
        assert len(reviewers) == 3 and {user.role for user in reviewers} == {"inspector"}

        predictions = session.execute(
            select(Prediction.created_at, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
            .where(ModelVersion.project_id == project.id)
        ).all()
        switch_at = datetime.fromisoformat(history_marker(project)["switch_at"])
        past = [(at, version) for at, version in predictions if at.date() < today]
        assert {version for _, version in past} == {1, 2}
        assert all((version == 1) == (at < switch_at) for at, version in past)
        assert 0.55 < sum(at < switch_at for at, _ in past) / len(past) < 0.75
        # Today's cells are inspected by the active version.
        assert {version for at, version in predictions if at.date() >= today} == {2}

        assert simulated_before(project) == today
        assert audit_odds(project) == DEMO_AUDIT_ODDS
        # Every prediction carries its region and odds (no legacy strata), as the line decides.
        decided = session.execute(
            select(
                Prediction.score,
                Prediction.threshold,
                Prediction.decision_region,
                Prediction.audit_probability,
            )
            .join(Image, Image.id == Prediction.image_id)
            .where(Image.project_id == project.id)
        ).all()
        assert len(decided) == len(predictions)
        for score, threshold, region, probability in decided:
            near_band = DEMO_AUDIT_ODDS.near_band
            assert region == decision_region(
                score, threshold, auto_accepted=False, near_band=near_band
            )
            assert probability == DEMO_AUDIT_ODDS.probability(region)
        history = loop_rates(session, project.id, until=switch_at)
        assert {stratum.region for stratum in history.strata} <= set(REGIONS)
        rates = error_rates_over_time(session, project.id, period="week")
        assert {point.model for point in rates} == {"v1"}  # v2 recalibrates v1: it is v1.1
        assert len({row["reviewer"] for row in throughput(session, project.id)}) == 3
        # Every current label is the ground truth of the cell the part shows (by its pixels:
        # good and scratched stand-in cells share file names).
        truth = {
            _pixels(path.read_bytes()): "good" if path.parent.name == "good" else "defect"
            for path in (seeded["tree"] / "test").rglob("*.png")
        }
        current = session.execute(
            select(Image.stored_path, Review.label)
            .join(Review, Review.id == Image.current_review_id)
            .where(Image.project_id == project.id)
        ).all()
        assert len(current) > 20
        for stored_path, label in current:
            assert label == truth[_pixels(absolute_image_path(stored_path).read_bytes())]
        # The truth of every simulated part, labelled or not, for the rates bench.
        truth_of = true_labels(session, project.id)
        assert len(truth_of) == history_marker(project)["n_parts"]
        assert set(truth_of.values()) == {0, 1}
        stored = session.execute(select(Image.id, Image.stored_path).where(Image.id.in_(truth_of)))
        for image_id, stored_path in stored:
            pixels = _pixels(absolute_image_path(stored_path).read_bytes())
            assert truth_of[image_id] == (truth[pixels] == "defect")


def _pixels(data: bytes) -> bytes:
    with PilImage.open(io.BytesIO(data)) as image:
        return np.asarray(image).tobytes()


def test_seeding_is_idempotent(session_factory: sessionmaker[Session], seeded: dict) -> None:
    def counts() -> tuple[int, ...]:
        with session_factory() as session:
            return tuple(
                session.scalar(select(func.count(model.id)))
                for model in (Image, Prediction, Review, User, ModelVersion)
            )

    before = counts()
    again = seed_demo(session_factory, models_root=seeded["models"], n_test=2)
    assert not again["created"] and counts() == before
    with session_factory() as session:
        project_id = get_project(session, DEMO_PROJECT).id
    assert (
        seed_history(
            session_factory,
            project_id=project_id,
            detector=None,  # never used: the project has its history
            version_id=seeded["model_version_id"],
            samples=[Sample(Path("/x.png"), 0, "good")],
            models_root=seeded["models"],
        )
        is None
    )
    assert counts() == before


def test_the_marker_says_which_days_are_simulated() -> None:
    assert simulated_before(Project(name="plain", settings={})) is None
    marked = Project(name="demo", settings={"demo_history": {"simulated_before": "2026-03-16"}})
    assert simulated_before(marked) == TODAY
    broken = Project(name="demo", settings={"demo_history": {"simulated_before": "soon"}})
    assert simulated_before(broken) is None
