"""Engine set-up: URL resolution, SQLite pragmas, UTC timestamps, session behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from db import Job, data_dir, database_url, utcnow
from db.engine import is_sqlite


@pytest.mark.sqlite_only("the default URL is a SQLite file in the data directory")
def test_default_url_is_loupe_db_in_the_data_dir(data_dir: Path, engine: Engine) -> None:
    assert engine.url.get_backend_name() == "sqlite"
    assert Path(engine.url.database) == data_dir / "loupe.db"
    assert (data_dir / "loupe.db").is_file()


def test_data_dir_defaults_to_dot_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOUPE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_dir() == tmp_path.resolve() / "data"


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOUPE_DATABASE_URL", "postgresql://loupe@db.example/loupe")
    assert database_url() == "postgresql://loupe@db.example/loupe"


@pytest.mark.sqlite_only("WAL and foreign-key enforcement are SQLite pragmas")
def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_url_from_the_environment_picks_the_backend(
    engine: Engine, database_backend: str
) -> None:
    assert engine.url.get_backend_name() == database_backend
    with engine.connect() as connection:
        assert connection.dialect.name == database_backend


def test_sqlite_is_recognised_by_url() -> None:
    assert is_sqlite("sqlite:////tmp/x.db")
    assert not is_sqlite("postgresql://loupe@localhost/loupe")


def test_timestamps_come_back_as_aware_utc(session_factory: sessionmaker[Session]) -> None:
    paris = timezone(timedelta(hours=2))
    started = datetime(2025, 6, 1, 14, 0, tzinfo=paris)
    with session_factory() as session, session.begin():
        session.add(Job(kind="train", started_at=started))
    with session_factory() as session:
        job = session.scalars(select(Job)).one()
        assert job.created_at.tzinfo is not None
        assert job.created_at.utcoffset() == timedelta(0)
        assert job.created_at.tzinfo == UTC
        assert abs(utcnow() - job.created_at) < timedelta(minutes=1)
        assert job.started_at == started
        assert job.started_at.tzinfo == UTC


def test_naive_timestamps_are_refused(session_factory: sessionmaker[Session]) -> None:
    with (
        pytest.raises(StatementError, match="naive datetime"),
        session_factory() as session,
        session.begin(),
    ):
        session.add(Job(kind="train", started_at=datetime(2025, 6, 1, 14, 0)))
