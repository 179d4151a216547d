"""The embedded ELPV demo: the sample it inspects, and (slow) seeding it end to end."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adcore.datasets import load_elpv, load_mvtec
from adcore.detectors import registry
from adcore.detectors.registry import build_detector
from adcore.explain.language_model import language_model_unavailable
from db import Project, get_project, init_db, list_model_versions, make_session_factory
from db.review_queue import review_queue
from services import demo
from services.demo import (
    DEMO_PROJECT,
    demo_sample,
    enable_smollm2_once,
    seed_demo,
    store_demo_audit_odds_once,
)
from services.demo_history_plan import DEMO_AUDIT_ODDS
from services.project_settings import (
    SMOLLM2_SOURCE,
    LanguageModelSetting,
    audit_odds,
    language_model_setting,
)


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


def test_seed_demo_flow_on_a_tiny_stand_in(
    session_factory: sessionmaker[Session],
    mvtec_tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole flow with a tiny dataset and model in place of ELPV and the 256 px model."""
    monkeypatch.setattr(demo, "load_elpv", lambda _cell_type: load_mvtec(mvtec_tree))
    monkeypatch.setattr(
        registry,  # seed_demo imports it lazily (it pulls in torch)
        "build_detector",
        partial(build_detector, image_size=64, coreset_ratio=0.1, device="cpu"),
    )
    models = tmp_path / "models"
    # Without the simulated history (tests/services/test_demo_history.py seeds it).
    first = seed_demo(session_factory, models_root=models, n_test=0, history=False)  # no cells
    assert first["created"] and first["n_inspected"] == 0
    assert (models / "elpv-solar-cells-demo" / "v1" / "config.json").is_file()
    second = seed_demo(session_factory, models_root=models, n_test=4, device="cpu", history=False)
    assert second["created"] and second["n_inspected"] == 4
    assert second["model_version_id"] == first["model_version_id"]
    third = seed_demo(session_factory, models_root=models, n_test=4, history=False)
    assert not third["created"] and third["threshold"] == second["threshold"] is not None
    with session_factory() as session:
        project = get_project(session, DEMO_PROJECT)
        versions = list_model_versions(session, project.id)
        assert [(v.version, v.status, v.created_by_id) for v in versions] == [(1, "active", None)]
        assert audit_odds(project) == DEMO_AUDIT_ODDS  # today's inspections draw with them
        assert len(review_queue(session, project.id, near_margin=1.0)) == 4
        installed = language_model_unavailable(SMOLLM2_SOURCE) is None
        assert language_model_setting(project).enabled == installed


def test_smollm2_is_turned_on_once_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import adcore.explain.language_model as language_model

    monkeypatch.setattr(language_model, "language_model_unavailable", lambda source: None)
    project = Project(name="demo")
    assert enable_smollm2_once(project)
    assert language_model_setting(project) == LanguageModelSetting(True, SMOLLM2_SOURCE)

    project.settings = {"language_model": {"enabled": False, "source": SMOLLM2_SOURCE}}
    assert not enable_smollm2_once(project)  # a manager turned it off: it stays off
    assert not language_model_setting(project).enabled

    monkeypatch.setattr(language_model, "language_model_unavailable", lambda source: "missing")
    absent = Project(name="demo without smollm2")
    assert not enable_smollm2_once(absent)
    assert not language_model_setting(absent).enabled


def test_the_demo_audit_odds_are_stored_once_and_a_managers_odds_are_kept() -> None:
    project = Project(name="demo")
    assert audit_odds(project) != DEMO_AUDIT_ODDS  # the live defaults differ
    assert store_demo_audit_odds_once(project)
    assert audit_odds(project) == DEMO_AUDIT_ODDS
    managed = Project(name="demo", settings={"audit": {"deep_pass": 0.3}})
    assert not store_demo_audit_odds_once(managed)
    assert audit_odds(managed).deep_pass == 0.3


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
