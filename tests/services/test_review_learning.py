"""After a Good click on a flagged part: instant update, then the waiting parts are re-scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from db import Prediction, Project, User
from db.review_queue import record_review
from services.inspection import inspect_uploads
from services.model_management import save_and_register
from services.review_learning import learn_from_good_review, pending_images

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
