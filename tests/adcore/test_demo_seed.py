"""The embedded ELPV demo: the sample it inspects, and (slow) seeding it end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adcore.datasets import load_elpv
from adcore.demo import DEMO_PROJECT, demo_sample, seed_demo
from db import get_project, init_db, make_session_factory, review_queue


@pytest.fixture
def session_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker]:
    monkeypatch.setenv("LOUPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    engine = init_db()
    yield make_session_factory(engine)
    engine.dispose()


def test_the_demo_sample_mixes_good_and_defective_cells() -> None:
    test = load_elpv("mono").test
    sample = demo_sample(test, 20)
    assert len(sample) == 20 and sample == demo_sample(test, 20)
    assert 0 < sum(cell.label for cell in sample) < 20
    assert demo_sample(test, 0) == [] and len(demo_sample(test[:5], 20)) == 5


@pytest.mark.slow
def test_seed_demo_fills_the_review_queue_once(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    summary = seed_demo(session_factory, models_root=tmp_path / "models", n_test=20)
    assert summary["created"] and summary["n_inspected"] == 20 and summary["n_errors"] == 0
    with session_factory() as session:
        project = get_project(session, DEMO_PROJECT)
        assert project.active_model_version_id == summary["model_version_id"]
        assert project.defect_types == ["crack", "finger interruption", "dark area", "other"]
        assert review_queue(session, project.id)
    again = seed_demo(session_factory, models_root=tmp_path / "models", n_test=20)
    assert not again["created"] and again["model_version_id"] == summary["model_version_id"]
