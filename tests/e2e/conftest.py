"""Fixtures for the end-to-end tests: a seeded workbench served by ``streamlit run``.

The database is prepared before the server starts: an admin, an inspector, and a project whose
active model is a tiny PatchCore fitted on synthetic parts (64 px), so an upload is scored in
well under a second and the test does not wait for the ELPV demo to be fitted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_seed import ADMIN_PASSWORD, Served, seed_workbench
from live_app import LiveApp


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    """The seeded workbench, served on a free loopback port for the module's tests.

    A test module may set ``SERVER_ENV`` (a dict) for its server's extra environment, e.g. a
    short sign-in lock.
    """
    root = tmp_path_factory.mktemp("e2e")
    data_dir, models_dir = root / "data", root / "models"
    data_dir.mkdir()
    url, project_id = seed_workbench(data_dir, models_dir)
    app = LiveApp(
        data_dir,
        models_dir,
        env={
            "LOUPE_SKIP_DEMO": "1",
            "LOUPE_NO_WORKER": "1",
            "LOUPE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            **getattr(request.module, "SERVER_ENV", {}),
        },
        log_path=root / "server.log",
    )
    app.start()
    try:
        yield Served(app=app, database_url=url, project_id=project_id)
    finally:
        app.stop()
