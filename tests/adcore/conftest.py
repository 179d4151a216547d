"""Shared fixtures: tiny synthetic parts, a tiny MVTec-layout tree, the real data location."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from db import Project, init_db, make_session_factory, register_model_version


@pytest.fixture
def session_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[sessionmaker[Session]]:
    """A fresh SQLite database (and data directory) in the test's temporary folder."""
    monkeypatch.setenv("LOUPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LOUPE_RAY_ADDRESS", raising=False)
    engine = init_db()
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The same as ``session_factory``, under the shorter name some tests use."""
    return session_factory


@pytest.fixture
def project_and_version(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    """A project and a version without its own threshold (the detector's is used)."""
    with session_factory() as session, session.begin():
        project = Project(name="widgets")
        session.add(project)
        session.flush()
        version = register_model_version(
            session,
            project_id=project.id,
            kind="patchcore",
            artifact_path="models/widgets/v1",
            metrics={},
            threshold=None,
            training_snapshot={},
        )
        return project.id, version.id


@pytest.fixture
def mvtec_tree(tmp_path: Path) -> Path:
    """A small MVTec AD tree: 12 good train parts, 4 good + 4 scratched test parts, masks."""
    root = tmp_path / "widget"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "good").mkdir(parents=True)
    (root / "test" / "scratch").mkdir(parents=True)
    (root / "ground_truth" / "scratch").mkdir(parents=True)
    for i in range(12):
        Image.fromarray(make_part(i)).save(root / "train" / "good" / f"{i:03d}.png")
    for i in range(4):
        Image.fromarray(make_part(100 + i)).save(root / "test" / "good" / f"{i:03d}.png")
        Image.fromarray(make_part(200 + i, defect=True)).save(
            root / "test" / "scratch" / f"{i:03d}.png"
        )
        mask = np.zeros((64, 64), np.uint8)
        mask[64 // 3 : 64 // 3 + 4, 16:48] = 255
        Image.fromarray(mask).save(root / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return root
