"""Migrations: up, down, up again; the migrated schema equals the models."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from db import Base, current_revision, downgrade, init_db, upgrade
from db.migrate import alembic_config

TABLES = {
    "users",
    "projects",
    "model_versions",
    "images",
    "predictions",
    "reviews",
    "jobs",
    "workers",
}


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def _sqlite_objects(engine: Engine, kind: str) -> set[str]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = ?", (kind,)
        ).all()
    return {name for (name,) in rows}


def test_upgrade_head_creates_every_table(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(engine) == "0002"


def test_downgrade_base_drops_everything_and_upgrade_works_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert not _sqlite_objects(engine, "trigger")
    assert current_revision(engine) is None

    upgrade(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert _schema_differences(engine) == []


def test_init_db_twice_is_a_no_op(data_dir: Path, engine: Engine) -> None:
    again = init_db()
    try:
        assert current_revision(again) == "0002"
    finally:
        again.dispose()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert _schema_differences(engine) == []


def test_schema_comparison_does_detect_a_difference(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_jobs_status_created_at")
    differences = _schema_differences(engine)
    assert [difference[0] for difference in differences] == ["add_index"]


def test_check_constraints_match_the_models(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = {
            constraint.name: " ".join(str(constraint.sqltext).split())
            for constraint in table.constraints
            if constraint.__class__.__name__ == "CheckConstraint"
        }
        reflected = {
            check["name"]: " ".join(check["sqltext"].split())
            for check in inspector.get_check_constraints(table.name)
        }
        assert reflected == expected, table.name


def test_append_only_triggers_exist(engine: Engine) -> None:
    assert _sqlite_objects(engine, "trigger") == {
        "reviews_append_only_update",
        "reviews_append_only_delete",
    }


def test_postgresql_upgrade_sql_renders_offline() -> None:
    output = io.StringIO()
    config = alembic_config(url="postgresql://loupe@localhost/loupe", output=output)
    command.upgrade(config, "head", sql=True)
    sql = output.getvalue()
    assert "CREATE TABLE reviews" in sql
    assert "ALTER TABLE projects ADD CONSTRAINT fk_projects_active_model_version_id" in sql
    assert "CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews" in sql
    assert "RAISE(ABORT" not in sql  # nothing SQLite-only


def test_command_line_upgrades_and_checks(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from db.__main__ import main

    url = f"sqlite:///{data_dir / 'cli.db'}"
    assert main(["--url", url, "upgrade"]) == 0
    assert main(["--url", url, "check"]) == 0  # raises if the models and migrations differ
    assert main(["--url", url, "current"]) == 0
    assert "0002 (head)" in capsys.readouterr().out
