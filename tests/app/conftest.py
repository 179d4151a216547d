"""Fixtures for the headless workbench tests (``streamlit.testing.v1.AppTest``).

Each test gets its own data directory, database and models directory; the demo project is not
seeded. ``st.cache_resource`` is process-wide, so it is cleared around every test. A tiny
PatchCore (64 px inputs, fitted once per session on synthetic parts) scores a few uploads, so
the pages have real predictions and anomaly maps to show.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
import torch
from apptest_support import (
    ADMIN,
    ADMIN_PASSWORD,
    INSPECTOR,
    MANAGER,
    ORIGINAL_PAGES_MANAGER_INIT,
    PASSWORD,
    Workbench,
    make_part,
    png_bytes,
)
from streamlit.runtime.pages_manager import PagesManager

import db


@pytest.fixture(autouse=True)
def navigation_steady_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every AppTest run the way a server runs after its first run.

    Streamlit treats a ``pages/`` folder next to the main script as legacy multipage pages
    until ``st.navigation`` has run once in the process; a server then remembers that, but
    ``AppTest`` forgets it before every run, so each rerun would execute the last page file
    on its own instead of ``app.py``. (``test_app_login`` checks the first-run case.)
    """

    def init(self: PagesManager, *args: object, **kwargs: object) -> None:
        ORIGINAL_PAGES_MANAGER_INIT(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PatchCore fitted on 8 synthetic good parts, saved once per test session."""
    from adcore.detectors.patchcore import PatchCore, PatchCoreConfig

    torch.set_num_threads(1)  # the machine is shared: keep the tests light
    # The pages need fixed verdicts on the synthetic parts (goods pass, scratches are flagged);
    # at 64 px the Lite0 / re-weighted-max model gives them, the Lite2 default flags a good one
    # (detector quality is measured in tests/adcore and bench/, not here).
    config = PatchCoreConfig(
        image_size=64,
        coreset_ratio=0.1,
        calibration_fraction=0.25,
        backbone="efficientnet_lite0",
        image_score="reweighted_max",
    )
    detector = PatchCore(config, device="cpu")
    detector.fit([make_part(i) for i in range(8)])
    directory = tmp_path_factory.mktemp("tiny-model") / "widgets" / "v1"
    assert detector.threshold is not None
    detector.save(directory)
    return directory


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Private data and models directories, no demo, a known admin password, fresh caches."""
    data = tmp_path / "data"
    monkeypatch.setenv("LOUPE_DATA_DIR", str(data))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    monkeypatch.setenv("LOUPE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("LOUPE_SKIP_DEMO", "1")
    monkeypatch.setenv("LOUPE_NO_WORKER", "1")  # tests run jobs in process, never a worker
    monkeypatch.setenv("LOUPE_WARM_UP", "0")  # language models load on first use in tests
    monkeypatch.setenv("LOUPE_BACKGROUND_DELAY", "0")  # a started worker is checked at once
    # No background instant updates unless a test asks for them (test_app_instant_learning).
    monkeypatch.setenv("LOUPE_INSTANT_LEARNING", "0")
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    st.cache_resource.clear()
    yield data
    st.cache_resource.clear()


@pytest.fixture
def workbench(app_env: Path, tiny_model_dir: Path) -> Iterator[Workbench]:
    """Users (admin, inspector, manager), a project with an active tiny model, six predictions.

    Three good and three scratched parts are scored through ``inspect_uploads``; nothing is
    reviewed yet, and no part is drawn for audit (seeded draws; tests mark audit samples).
    """
    from adcore.detectors.registry import load_detector
    from db.projects import activate_model_version, create_project, register_model_version
    from services.inspection import InspectionRequest, inspect_uploads
    from services.scoring.predictor import Predictor

    engine = db.init_db()
    factory = db.make_session_factory(engine)
    detector = load_detector(tiny_model_dir, device="cpu")
    with factory() as session, session.begin():
        db.ensure_admin(session, ADMIN_PASSWORD)
        users = {
            INSPECTOR: db.create_user(session, INSPECTOR, PASSWORD, "inspector").id,
            MANAGER: db.create_user(session, MANAGER, PASSWORD, "manager").id,
        }
        users[ADMIN] = session.query(db.User).filter_by(name=ADMIN).one().id
        project = create_project(
            session, name="widgets", object_name="widget", defect_types=["scratch"]
        )
        version = register_model_version(
            session,
            project_id=project.id,
            kind="patchcore",
            artifact_path=str(tiny_model_dir),
            metrics={"n_train": 8},
            threshold=detector.threshold,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        project_id, version_id = project.id, version.id
    uploads = [(f"good-{i}.png", png_bytes(make_part(100 + i))) for i in range(3)]
    uploads += [(f"scratch-{i}.png", png_bytes(make_part(200 + i, defect=True))) for i in range(3)]
    predictor = Predictor.load(
        factory,
        project_id=project_id,
        model_version_id=version_id,
        detector=detector,
        audit_rng=random.Random(0),  # its first draws are all above 2%: no audit sample
    )
    results = inspect_uploads(factory, InspectionRequest(predictor), uploads)
    assert all(r.error is None for r in results), [r.error for r in results]
    assert not any(r.audit for r in results)
    yield Workbench(
        factory=factory,
        project_id=project_id,
        version_id=version_id,
        model_dir=tiny_model_dir,
        users=users,
        image_ids={r.name: r.image_id for r in results},
    )
    engine.dispose()
