"""After a Good click on a flagged part: instant update, then the waiting parts are re-scored."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from db import ModelVersion, Prediction, Project, User
from db.review_queue import record_review
from services import review_learning
from services.inspection import inspect_uploads
from services.model_management import save_and_register
from services.review_learning import learn_from_good_review, pending_images, waiting_parts

SMALL = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, batch_size=8)


def stamped(seed: int) -> np.ndarray:
    """A good part with a bright stamp no training part has: (64, 64, 3) uint8."""
    part = make_part(seed).copy()
    part[40:56, 40:56] = 235
    part[44:52, 44:52] = 60
    return part


@pytest.fixture
def scored(factory: sessionmaker[Session], tmp_path: Path) -> dict:
    """Active PatchCore v1 and three scored, unreviewed parts: two stamped goods, one scratch."""
    with factory() as session, session.begin():
        inspector = User(name="ines", role="inspector", password_hash="x")
        project = Project(name="Widgets")
        session.add_all([inspector, project])
        session.flush()
        ids = {"inspector": inspector.id, "project": project.id, "models": tmp_path / "models"}
    detector = PatchCore(SMALL, device="cpu")
    fit = detector.fit([make_part(i) for i in range(12)])
    version = save_and_register(
        factory,
        project_id=ids["project"],
        detector=detector,
        fit=fit,
        models_root=ids["models"],
        user=None,
        system=True,
    )
    results = inspect_uploads(
        factory,
        project_id=ids["project"],
        detector=detector,
        model_version_id=version.id,
        uploads=[
            ("stamped-a.png", png(stamped(300))),
            ("stamped-b.png", png(stamped(301))),
            ("scratch.png", png(make_part(302, defect=True))),
        ],
    )
    ids["parent"] = version.id
    ids["images"] = {r.name: r.image_id for r in results}
    ids["verdicts"] = {r.name: r.verdict for r in results}
    return ids


def test_a_confirmed_good_part_updates_the_model_and_the_waiting_parts_are_rescored(
    factory: sessionmaker[Session], scored: dict
) -> None:
    assert scored["verdicts"]["stamped-a.png"] == "defect", "the stand-in must start flagged"
    good = scored["images"]["stamped-a.png"]
    with factory() as session, session.begin():
        record_review(
            session, image_id=good, user=session.get(User, scored["inspector"]), label="good"
        )

    result = learn_from_good_review(
        factory,
        project_id=scored["project"],
        image_id=good,
        user_id=scored["inspector"],
        models_dir=scored["models"],
        device="cpu",
    )

    assert result.update.updated, result.message
    new_version = result.update.version_id
    assert new_version != scored["parent"]
    with factory() as session:
        assert session.get(Project, scored["project"]).active_model_version_id == new_version
        rescored = {
            p.image_id: p.verdict
            for p in session.scalars(
                select(Prediction).where(Prediction.model_version_id == new_version)
            )
        }
    waiting = {scored["images"]["stamped-b.png"], scored["images"]["scratch.png"]}
    assert set(rescored) == waiting  # the reviewed part itself is not re-scored
    assert rescored[scored["images"]["scratch.png"]] == "defect"  # a real defect stays flagged
    assert result.n_rescored == 2 and result.n_failed == 0
    cleared = sum(
        1
        for name in ("stamped-b.png", "scratch.png")
        if scored["verdicts"][name] == "defect" and rescored[scored["images"][name]] == "good"
    )
    assert result.n_cleared == cleared
    assert "Re-scored 2 waiting part(s)" in result.message
    with factory() as session:  # nothing waits on the old version any more than on the new
        assert {i for i, _ in pending_images(session, scored["project"], new_version, 10)} == (
            waiting
        )


def test_a_part_without_a_good_label_is_refused_with_a_message(
    factory: sessionmaker[Session], scored: dict
) -> None:
    result = learn_from_good_review(
        factory,
        project_id=scored["project"],
        image_id=scored["images"]["stamped-b.png"],  # never reviewed
        user_id=scored["inspector"],
        models_dir=scored["models"],
        device="cpu",
    )

    assert not result.update.updated and result.message.startswith("Not learned")
    assert result.n_rescored == 0
    with factory() as session:
        assert session.get(Project, scored["project"]).active_model_version_id == scored["parent"]


def test_goods_confirmed_during_an_update_are_learned_together_in_the_next_one(
    factory: sessionmaker[Session], scored: dict
) -> None:
    names = ("stamped-a.png", "stamped-b.png")
    goods = [scored["images"][name] for name in names]
    with factory() as session, session.begin():
        for good in goods:
            record_review(
                session, image_id=good, user=session.get(User, scored["inspector"]), label="good"
            )
    results: dict[int, object] = {}

    def learn(image_id: int) -> None:
        results[image_id] = learn_from_good_review(
            factory,
            project_id=scored["project"],
            image_id=image_id,
            user_id=scored["inspector"],
            models_dir=scored["models"],
            device="cpu",
        )

    with review_learning._ONE_AT_A_TIME:  # an update is running: both Goods have to wait
        threads = [threading.Thread(target=learn, args=(good,)) for good in goods]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(waiting_parts(scored["project"], scored["inspector"])) < 2:
            assert time.monotonic() < deadline, "the two Goods never queued up"
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=120)

    first, second = results[goods[0]], results[goods[1]]
    assert first is second, "one update answers both calls"
    assert first.update.updated and set(first.update.image_ids) == set(goods)
    with factory() as session:
        versions = session.scalars(
            select(ModelVersion.id).where(ModelVersion.project_id == scored["project"])
        ).all()
    assert len(versions) == 2, "the parent and one update, not one version per Good"
    assert waiting_parts(scored["project"], scored["inspector"]) == ()
