"""Fixtures every test folder shares: a private data directory and a migrated store.

The helper modules in ``tests/support`` (synthetic parts, tiny models, job scaffolding) are on
``sys.path`` through pytest's ``pythonpath`` setting, so tests import them by plain name.

Database backends: in ``tests/db`` and ``tests/services``, a test that uses the store (or asks
for ``database_backend``) runs once per backend, as ``test_x[sqlite]`` and
``test_x[postgresql]``; ``@pytest.mark.sqlite_only("why")`` keeps a test about a SQLite-only
feature to the first. ``postgres_database_url`` is a fresh, empty PostgreSQL database per test,
dropped afterwards. The server is
``$LOUPE_TEST_POSTGRES_URL`` when set (its role needs CREATEDB), else a throwaway cluster started
once per session (``tests/postgres_cluster.py``; ``make postgres`` installs Debian's
``postgresql``). Without PostgreSQL the ``[postgresql]`` tests are skipped, except in CI (``CI``
set), where they fail: there PostgreSQL must run.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mqtt_broker import MqttBroker, find_mosquitto, start_broker
from PIL import Image
from postgres_cluster import PostgresServer, external_server, find_postgres_bin_dir, start_cluster
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from db import Project, Role, User, init_db, make_session_factory, register_model_version

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the machine's cores: one thread each (read by torch and
    # onnxruntime when first imported, and inherited by the servers a test starts).
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data directory; the database URL falls back to ``<data dir>/loupe.db``."""
    directory = tmp_path / "data"
    monkeypatch.setenv("LOUPE_DATA_DIR", str(directory))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LOUPE_RAY_ADDRESS", raising=False)
    return directory


@pytest.fixture
def engine(
    data_dir: Path,
    database_backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Engine]:
    """A migrated database: SQLite in the data directory, or a fresh PostgreSQL database.

    PostgreSQL is reached through ``LOUPE_DATABASE_URL``, as a deployment points Loupe at it.
    Tests in :data:`EVERY_BACKEND_FOLDERS` run on both backends; the others on SQLite.
    """
    if database_backend == "postgresql":
        monkeypatch.setenv("LOUPE_DATABASE_URL", request.getfixturevalue("postgres_database_url"))
    migrated = init_db()
    yield migrated
    migrated.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """The application's session factory on the test database."""
    return make_session_factory(engine)


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The same as ``session_factory``, under the shorter name some tests use."""
    return session_factory


@pytest.fixture
def make_user(session_factory: sessionmaker[Session]) -> Callable[..., int]:
    """Create a user without hashing cost (the hash is a placeholder); return its id."""

    def create(name: str, role: str = Role.INSPECTOR) -> int:
        with session_factory() as session, session.begin():
            user = User(name=name, role=role, password_hash="not-a-real-hash")
            session.add(user)
            session.flush()
            return user.id

    return create


@pytest.fixture
def project_id(session_factory: sessionmaker[Session]) -> int:
    """A project ("cells", solar cell, two defect types)."""
    with session_factory() as session, session.begin():
        project = Project(name="cells", object_name="solar cell", defect_types=["crack", "dark"])
        session.add(project)
        session.flush()
        return project.id


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


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer Qwen2-VL with its processor, saved to a folder (built once)."""
    from tiny_language_model import build_tiny_vision_language_model

    return build_tiny_vision_language_model(tmp_path_factory.mktemp("tiny_vlm"))


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


# --- database backends: SQLite and PostgreSQL -------------------------------------------------

BACKENDS = ("sqlite", "postgresql")
EVERY_BACKEND_FOLDERS = ("db", "services")
"""Test folders (under ``tests/``, sub-folders included) whose store tests run on every backend."""
TESTS = Path(__file__).resolve().parent
POSTGRES_URL_ENV = "LOUPE_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``sqlite_only`` marker."""
    config.addinivalue_line(
        "markers", "sqlite_only(reason): runs on SQLite only (about a SQLite-only feature)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``database_backend`` over the backends in :data:`EVERY_BACKEND_FOLDERS`.

    It is asked for directly or through ``engine`` (and so ``session_factory``); elsewhere it
    stays SQLite.
    """
    if "database_backend" not in metafunc.fixturenames:
        return
    folder = Path(metafunc.definition.path).resolve().parent
    if not any(folder.is_relative_to(TESTS / name) for name in EVERY_BACKEND_FOLDERS):
        return
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only")
    if sqlite_only is not None and not (sqlite_only.args or sqlite_only.kwargs.get("reason")):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only needs a reason")
    backends = BACKENDS[:1] if sqlite_only is not None else BACKENDS
    metafunc.parametrize("database_backend", backends, indirect=True)


@pytest.fixture
def database_backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"`` (skips, or fails in CI, when PostgreSQL is missing)."""
    backend = getattr(request, "param", BACKENDS[0])
    if backend == "postgresql":
        request.getfixturevalue("postgres_server")
    return backend


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """This session's PostgreSQL server: ``$LOUPE_TEST_POSTGRES_URL`` or a throwaway cluster."""
    configured = os.environ.get(POSTGRES_URL_ENV)
    if configured:
        yield external_server(configured)
        return
    bin_dir = find_postgres_bin_dir()
    if bin_dir is None:
        reason = (
            "PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin): "
            f"run `make postgres` or set {POSTGRES_URL_ENV}"
        )
        missing_service("PostgreSQL", reason)
    server = start_cluster(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards): its URL."""
    name, url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


def missing_service(name: str, reason: str) -> None:
    """Skip the test for a missing local service, or fail it in CI (which runs every test)."""
    if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"CI must run the {name} tests, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[MqttBroker]:
    """This session's Mosquitto broker on a loopback port (skips, or fails in CI, without it)."""
    binary = find_mosquitto()
    if binary is None:
        missing_service("MQTT", "Mosquitto is not installed (no /usr/sbin/mosquitto): `make mqtt`")
    broker = start_broker(binary)
    try:
        yield broker
    finally:
        broker.stop()


# --- running in parallel: `make test` uses pytest-xdist (`-n 3`) -------------------------------

RUN_FIRST = (
    "test_demo.py",
    "test_runtime.py",
    "test_onnx_export.py",
    "test_worker_process.py",
    "test_real_data.py",
    "test_onnx_parity_real.py",
    "test_gradcam.py",
    "test_demo_history.py",
    "test_ray_backend.py",
    "test_detector_jobs.py",
    "test_loupe_line_commands.py",
    "test_classifier_elpv.py",
    "test_api_fuzz.py",
    "test_explain_language_model.py",
)
"""Test files measured slowest (``pytest -n 3 --durations=60``), started first."""

SHARED_FIXTURE = re.compile(r"""scope=["'](module|class|package)["']""")
"""How a test file declares a fixture its tests share."""


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Hand the tests out one by one, except those that share a fixture of their file.

    A file under ``tests/e2e`` (a served workbench per file) or one that defines a module-,
    class- or package-scoped fixture (a model fitted once for the file) goes to one process
    whole, so that the fixture is built once. (pytest-xdist's own ``loadgroup`` cannot be used:
    its group suffix on node ids has no effect with pytest 9.2.)
    """
    from xdist.scheduler import LoadScopeScheduling

    root = Path(str(config.rootpath))

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if _shares_fixtures(root / path) else nodeid

    return SharedFixtureScheduling(config, log)


@functools.cache
def _shares_fixtures(path: Path) -> bool:
    """Whether a test file needs its tests in one process (see the scheduler above)."""
    if path.parent.name == "e2e":
        return True
    try:
        return SHARED_FIXTURE.search(path.read_text(encoding="utf-8")) is not None
    except OSError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the slow files (:data:`RUN_FIRST`), then the end-to-end and slow tests.

    In a parallel run no process is then left running one of them alone at the end.
    """

    def first(item: pytest.Item) -> int:
        path = Path(str(item.path))
        if path.name in RUN_FIRST:
            return 0
        return 1 if path.parent.name == "e2e" or item.get_closest_marker("slow") else 2

    items.sort(key=first)
