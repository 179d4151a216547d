"""After a Good on a flagged part: the review queues an instant update, the job worker runs it.

A tiny PatchCore (64 px) is the active model; the jobs run in process through the product's
worker (:class:`workers.worker.JobWorker`, ``run(once=True)``), as the replay benchmark runs
them. Two worker processes on one project: ``tests/workers/test_instant_update_job.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.detectors.base import FitReport
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from db import Job, ModelVersion, Prediction, Project, User
from db.instant_updates import learning_turn
from db.predictions import pending_images
from services.inspection import InspectionRequest, inspect_uploads
from services.model_management import save_and_register
from services.reviewing import label_part, undo_last
from services.scoring.predictor import Predictor
from services.training.instant_learning import WAITING_MESSAGE
from services.training.job_kinds import JobKind
from workers.worker import JobWorker

SMALL = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, batch_size=8)
STAMPED = ("stamped-a.png", "stamped-b.png", "stamped-c.png")


def stamped(seed: int) -> np.ndarray:
    """A good part with a bright stamp no training part has: (64, 64, 3) uint8."""
    part = make_part(seed).copy()
    part[40:56, 40:56] = 235
    part[44:52, 44:52] = 60
    return part


@pytest.fixture(scope="module")
def fitted() -> tuple[PatchCore, FitReport]:
    """The tiny PatchCore, fitted once for the module (each test saves its own copy)."""
    detector = PatchCore(SMALL, device="cpu")
    return detector, detector.fit([make_part(i) for i in range(12)])


@pytest.fixture
def scored(
    factory: sessionmaker[Session], tmp_path: Path, fitted: tuple[PatchCore, FitReport]
) -> dict:
    """Active PatchCore v1 and four scored, unreviewed parts: three stamped goods, one scratch."""
    with factory() as session, session.begin():
        inspector = User(name="ines", role="inspector", password_hash="x")
        project = Project(name="Widgets")
        session.add_all([inspector, project])
        session.flush()
        ids = {"inspector": inspector.id, "project": project.id, "models": tmp_path / "models"}
    detector, fit = fitted
    version = save_and_register(
        factory,
        project_id=ids["project"],
        detector=detector,
        fit=fit,
        models_root=ids["models"],
        user=None,
        system=True,
    )
    uploads = [(name, png(stamped(300 + i))) for i, name in enumerate(STAMPED)]
    predictor = Predictor.load(
        factory, project_id=ids["project"], model_version_id=version.id, detector=detector
    )
    results = inspect_uploads(
        factory,
        InspectionRequest(predictor),
        [*uploads, ("scratch.png", png(make_part(310, defect=True)))],
    )
    ids["parent"] = version.id
    ids["images"] = {r.name: r.image_id for r in results}
    ids["verdicts"] = {r.name: r.verdict for r in results}
    ids["worker"] = JobWorker(
        factory, data_dir=tmp_path / "data", models_root=ids["models"], device="cpu"
    )
    assert all(ids["verdicts"][name] == "defect" for name in STAMPED), "the stand-ins start flagged"
    return ids


def good(factory: sessionmaker[Session], scored: dict, name: str) -> int | None:
    """Label a part Good as the inspector; return the instant-update job it joined."""
    saved = label_part(
        factory, user_id=scored["inspector"], image_id=scored["images"][name], label="good"
    )
    return saved.learning_job_id


def job_row(factory: sessionmaker[Session], job_id: int) -> Job:
    with factory() as session:
        return session.get(Job, job_id)


def test_a_confirmed_good_part_updates_the_model_and_the_waiting_parts_are_rescored(
    factory: sessionmaker[Session], scored: dict
) -> None:
    job_id = good(factory, scored, "stamped-a.png")
    assert job_id is not None
    assert job_row(factory, job_id).kind == JobKind.INSTANT_UPDATE

    assert scored["worker"].run(once=True) == 1

    job = job_row(factory, job_id)
    assert job.status == "succeeded", job.message
    assert job.message.startswith("v1.1 learned 1 part(s)")
    assert "Re-scored 3 waiting part(s) with the new version" in job.message
    assert job.result_model_version_id is None  # active at once: not a candidate
    with factory() as session:
        new_version = session.get(Project, scored["project"]).active_model_version_id
        assert new_version != scored["parent"]
        assert session.get(ModelVersion, scored["parent"]).status == "retired"
        rescored = {
            p.image_id: p.verdict
            for p in session.scalars(
                select(Prediction).where(Prediction.model_version_id == new_version)
            )
        }
    names = ("stamped-b.png", "stamped-c.png", "scratch.png")
    waiting = {scored["images"][name] for name in names}
    assert set(rescored) == waiting  # the reviewed part itself is not re-scored
    assert rescored[scored["images"]["scratch.png"]] == "defect"  # a real defect stays flagged
    cleared = sum(1 for name in names if rescored[scored["images"][name]] == "good")
    assert f": {cleared} no longer flagged." in job.message
    with factory() as session:
        assert {i for i, _ in pending_images(session, scored["project"], new_version, 10)} == (
            waiting
        )


def test_a_part_undone_before_its_update_runs_is_not_learned(
    factory: sessionmaker[Session], scored: dict
) -> None:
    job_id = good(factory, scored, "stamped-b.png")
    assert undo_last(factory, user_id=scored["inspector"]) is not None

    assert scored["worker"].run(once=True) == 1

    job = job_row(factory, job_id)
    assert job.status == "succeeded"
    assert job.message == "Not learned: the part has no current Good label."
    with factory() as session:
        assert session.get(Project, scored["project"]).active_model_version_id == scored["parent"]


def test_goods_confirmed_during_an_update_are_learned_together_in_the_next_one(
    factory: sessionmaker[Session], scored: dict
) -> None:
    first = good(factory, scored, "stamped-a.png")
    with learning_turn(factory, scored["project"]):  # another process's update is running
        runner = threading.Thread(target=scored["worker"].run, kwargs={"once": True})
        runner.start()
        deadline = time.monotonic() + 30
        while (job := job_row(factory, first)).message != WAITING_MESSAGE:
            assert time.monotonic() < deadline, f"the first job never waited: {job.message}"
            time.sleep(0.02)
        assert job.status == "running"
        later = [good(factory, scored, name) for name in ("stamped-b.png", "stamped-c.png")]
    runner.join(120)
    assert scored["worker"].run(once=True) == 1

    assert later[0] == later[1] != first, "the Goods confirmed meanwhile share the next job"
    assert [job_row(factory, j).status for j in (first, later[0])] == ["succeeded"] * 2
    with factory() as session:
        versions = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == scored["project"])
            .order_by(ModelVersion.version)
        ).all()
        learned = [
            entry["image_ids"]
            for version in versions
            for entry in (version.metrics or {}).get("instant_updates", [])[-1:]
        ]
    assert len(versions) == 3, "the parent and two updates, not one version per Good"
    images = scored["images"]
    assert learned == [
        [images["stamped-a.png"]],
        [images["stamped-b.png"], images["stamped-c.png"]],
    ]
