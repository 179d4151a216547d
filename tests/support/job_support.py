"""Scaffolding of the job-kind tests.

A project with a manager, an inspector and a worker; one queued job run through the worker;
labelled synthetic parts; a reporter that stops training.

Imported as ``from job_support import ...`` by the tests in ``tests/adcore`` (pytest puts this
folder on ``sys.path``); the database comes from the ``session_factory`` fixture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from db import Job, Project, User
from db.images import get_or_create_image
from db.jobs import enqueue_job
from db.review_queue import record_review
from services.training.context import JobContext
from workers.worker import JobWorker


def job_lab(factory: sessionmaker[Session], tmp_path: Path, **project_fields: object) -> dict:
    """A project with a manager and an inspector, and a worker on the CPU.

    Args:
        factory: The ``session_factory`` fixture (its data directory is ``tmp_path / "data"``).
        tmp_path: The test's temporary folder; models are saved under ``tmp_path / "models"``.
        **project_fields: The project's columns, e.g. ``name="widgets"``.

    Returns:
        ``factory``, ``project_id``, ``manager`` and ``inspector`` (detached users), their
        ``manager_id`` and ``inspector_id``, ``data_dir``, ``models_root`` and ``worker``.
    """
    with factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        inspector = User(name="inspector-1", role="inspector", password_hash="x")
        project = Project(**project_fields)
        session.add_all([manager, inspector, project])
        session.flush()
        project_id = project.id
    data_dir, models_root = tmp_path / "data", tmp_path / "models"
    return {
        "factory": factory,
        "project_id": project_id,
        "manager": manager,
        "inspector": inspector,
        "manager_id": manager.id,
        "inspector_id": inspector.id,
        "data_dir": data_dir,
        "models_root": models_root,
        "worker": JobWorker(factory, data_dir=data_dir, models_root=models_root, device="cpu"),
    }


def run_job(lab: dict, kind: str, parameters: dict | None = None) -> Job:
    """Queue a ``kind`` job as the lab's manager, run it through the worker, return its row."""
    factory: sessionmaker[Session] = lab["factory"]
    with factory() as session, session.begin():
        job_id = enqueue_job(
            session,
            kind=kind,
            parameters=parameters or {},
            project_id=lab["project_id"],
            user=session.get(User, lab["manager_id"]),
        ).id
    assert lab["worker"].run(once=True) == 1
    with factory() as session:
        return session.get(Job, job_id)


def label_parts(
    lab: dict, defects: Sequence[bool], *, first_seed: int, size: int = 64
) -> dict[str, str]:
    """Store synthetic parts ``part-{i}.png`` and the lab inspector's label for each.

    Part ``i`` is ``make_part(first_seed + i, size)``, scratched and labelled ``"defect"`` with
    the defect type ``"scratch"`` where ``defects[i]``, else labelled ``"good"``.

    Returns:
        Each image's sha256 -> its label.
    """
    digests: dict[str, str] = {}
    with lab["factory"]() as session, session.begin():
        inspector = session.get(User, lab["inspector_id"])
        for i, defect in enumerate(defects):
            image, _ = get_or_create_image(
                session,
                data=png(make_part(first_seed + i, size=size, defect=defect)),
                original_name=f"part-{i}.png",
                project_id=lab["project_id"],
                source="upload",
                width=size,
                height=size,
            )
            label = "defect" if defect else "good"
            record_review(
                session,
                image_id=image.id,
                user=inspector,
                label=label,
                defect_type="scratch" if defect else None,
            )
            digests[image.sha256] = label
    return digests


class StopDuringTraining:
    """A reporter that asks the job to stop once the first training epoch has reported."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def progress(self, fraction: float, message: str) -> None:
        """Remember the message (the fraction is ignored)."""
        self.messages.append(message)

    def log(self, line: str) -> None:
        """Ignore the log line."""
        pass

    def should_stop(self) -> bool:
        """True once an ``Epoch`` progress message has been reported."""
        return any(message.startswith("Epoch") for message in self.messages)


def job_context(lab: dict, kind: str, parameters: dict, reporter: StopDuringTraining) -> JobContext:
    """The context a job function gets, for calling it directly (not through the worker).

    The job id is 99, which no queued job of these tests has.
    """
    return JobContext(
        job_id=99,
        kind=kind,
        parameters=parameters,
        project_id=lab["project_id"],
        created_by_id=lab["manager_id"],
        session_factory=lab["factory"],
        data_dir=lab["data_dir"],
        models_root=lab["models_root"],
        device="cpu",
        reporter=reporter,
    )
