"""Migrations: up, down, up again; the migrated schema equals the models."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, func, inspect, select, text
from stored_rows import add_image, add_version

from db import Base, current_revision, downgrade, init_db, upgrade
from db.migrate import alembic_config, head_revision

TABLES = {
    "users",
    "projects",
    "model_versions",
    "images",
    "predictions",
    "reviews",
    "reviewer_labels",
    "api_keys",
    "station_inspections",
    "hot_folder_files",
    "outbound_messages",
    "jobs",
    "workers",
    "explanation_notes",
    "auth_sessions",
    "sign_in_attempts",
}


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def postgresql_upgrade_sql(revisions: str) -> str:
    """The SQL that ``alembic upgrade revisions --sql`` writes for PostgreSQL (no server)."""
    output = io.StringIO()
    config = alembic_config(url="postgresql://loupe@localhost/loupe", output=output)
    command.upgrade(config, revisions, sql=True)
    return output.getvalue()


# The append-only triggers on reviews, per backend (see migration 0001).
APPEND_ONLY_TRIGGERS = {
    "sqlite": {"reviews_append_only_update", "reviews_append_only_delete"},
    "postgresql": {"reviews_append_only", "reviews_append_only_truncate"},
}


def _triggers(engine: Engine) -> set[str]:
    """The names of the database's own triggers (PostgreSQL: not the foreign keys' ones)."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        return set(connection.exec_driver_sql(query).scalars())


def _functions(engine: Engine) -> set[str]:
    """The names of the functions a migration created (PostgreSQL; SQLite has none)."""
    if engine.dialect.name == "sqlite":
        return set()
    with engine.connect() as connection:
        return set(
            connection.exec_driver_sql(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            ).scalars()
        )


def _as_the_database_writes_them(engine: Engine, checks: dict[str, str], table: str):
    """The CHECK expressions as the database reflects them (PostgreSQL rewrites the text).

    On PostgreSQL each expression is added to ``table`` as a probe constraint, read back as
    reflection shows it, and the transaction is rolled back.
    """
    if engine.dialect.name == "sqlite":
        return checks
    with engine.connect() as connection, connection.begin() as probing:
        for name, sqltext in checks.items():
            connection.exec_driver_sql(
                f'ALTER TABLE {table} ADD CONSTRAINT "probe_{name}" CHECK ({sqltext}) NOT VALID'
            )
        probes = {
            check["name"].removeprefix("probe_"): " ".join(check["sqltext"].split())
            for check in inspect(connection).get_check_constraints(table)
            if check["name"].startswith("probe_")
        }
        probing.rollback()
    return probes


def test_upgrade_head_creates_every_table(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision()


def test_downgrade_base_drops_everything_and_upgrade_works_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert not _triggers(engine)
    assert not _functions(engine)
    assert current_revision(engine) is None

    upgrade(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert _schema_differences(engine) == []


def test_init_db_twice_is_a_no_op(data_dir: Path, engine: Engine) -> None:
    again = init_db()
    try:
        assert current_revision(again) == head_revision()
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
        expected = _as_the_database_writes_them(engine, expected, table.name)
        assert reflected == expected, table.name


def test_append_only_triggers_exist(engine: Engine, database_backend: str) -> None:
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[database_backend]


def test_postgresql_upgrade_sql_renders_offline() -> None:
    sql = postgresql_upgrade_sql("head")
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
    assert f"{head_revision()} (head)" in capsys.readouterr().out


# --- 0003: images.current_review_id, backfilled from the review log -----------------------

T0 = datetime(2025, 3, 1, 8, 0, 0)


def _fill_at_0002(engine: Engine) -> dict[str, int | None]:
    """Write a review log at revision 0002 (Core, reflected tables); return expected currents.

    Images: ``corrected`` (good, then defect: the correction counts), ``undone`` (its only
    review undone), ``walked_back`` (three reviews by ann, the last two undone, then bob's
    later review undone by bob: ann's first counts), ``other_reviewer`` (ann good, bob defect
    later, ann's undone: bob's counts), ``tie`` (two reviews at the same instant: the higher id
    counts), ``out_of_order`` (a later id with an earlier time: the later time counts) and
    ``never`` (no review).
    """
    meta = MetaData()
    with engine.begin() as connection:
        users, projects, images, reviews = (
            Table(name, meta, autoload_with=connection)
            for name in ("users", "projects", "images", "reviews")
        )
        ann, bob = (
            connection.execute(
                users.insert().values(
                    name=name, role="inspector", password_hash="x", active=True, created_at=T0
                )
            ).inserted_primary_key[0]
            for name in ("ann", "bob")
        )
        project = connection.execute(
            projects.insert().values(
                name="p",
                description="",
                object_name="part",
                defect_types=[],
                target_fnr=0.01,
                created_at=T0,
            )
        ).inserted_primary_key[0]
        names = ["corrected", "undone", "walked_back", "other_reviewer", "tie", "out_of_order"]
        image = {}
        for number, name in enumerate([*names, "never"], start=1):
            image[name] = connection.execute(
                images.insert().values(
                    project_id=project,
                    sha256=f"{number:064d}",
                    stored_path=f"images/{number}.png",
                    original_name=f"{name}.png",
                    width=8,
                    height=8,
                    size_bytes=10,
                    source="upload",
                    created_at=T0,
                )
            ).inserted_primary_key[0]
        minute = 0

        def review(
            name: str,
            who: int,
            label: str | None,
            undoes: int | None = None,
            at: datetime | None = None,
        ) -> int:
            nonlocal minute
            minute += 1
            return connection.execute(
                reviews.insert().values(
                    image_id=image[name],
                    reviewer_id=who,
                    label=label,
                    is_undo=undoes is not None,
                    supersedes_id=undoes,
                    created_at=at or T0 + timedelta(minutes=minute),
                )
            ).inserted_primary_key[0]

        review("corrected", ann, "good")
        corrected = review("corrected", ann, "defect")
        review("undone", ann, None, review("undone", ann, "good"))
        first = review("walked_back", ann, "good")
        second = review("walked_back", ann, "defect")
        third = review("walked_back", ann, "good")
        review("walked_back", ann, None, third)
        review("walked_back", ann, None, second)
        review("walked_back", bob, None, review("walked_back", bob, "defect"))
        mine = review("other_reviewer", ann, "good")
        bobs = review("other_reviewer", bob, "defect")
        review("other_reviewer", ann, None, mine)
        same = T0 + timedelta(days=1)
        review("tie", ann, "good", at=same)
        tie = review("tie", bob, "defect", at=same)
        later = review("out_of_order", ann, "defect", at=T0 + timedelta(days=2))
        review("out_of_order", bob, "good", at=T0 + timedelta(days=1, hours=1))
    expected = {
        "corrected": corrected,
        "undone": None,
        "walked_back": first,
        "other_reviewer": bobs,
        "tie": tie,
        "out_of_order": later,
        "never": None,
    }
    return {str(image[name]): review_id for name, review_id in expected.items()}


def _current_review_ids(engine: Engine) -> dict[str, int | None]:
    images = Table("images", MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        rows = connection.execute(select(images.c.id, images.c.current_review_id)).all()
    return {str(image_id): review_id for image_id, review_id in rows}


def _review_count(engine: Engine) -> int:
    reviews = Table("reviews", MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(reviews)) or 0


def test_0003_backfills_current_reviews_and_goes_down_and_up(
    engine: Engine, database_backend: str
) -> None:
    downgrade(engine, "0002")
    expected = _fill_at_0002(engine)
    n_reviews = _review_count(engine)

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _current_review_ids(engine) == expected
    assert _schema_differences(engine) == []
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[database_backend]

    downgrade(engine, "0002")
    columns = {column["name"] for column in inspect(engine).get_columns("images")}
    assert "current_review_id" not in columns
    assert not any(
        "current_review" in (index["name"] or "") for index in inspect(engine).get_indexes("images")
    )
    assert _review_count(engine) == n_reviews  # the log itself is never touched
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[database_backend]

    upgrade(engine)
    assert _current_review_ids(engine) == expected


def test_postgresql_0003_sql_renders_offline() -> None:
    sql = postgresql_upgrade_sql("0002:0003")
    assert "ALTER TABLE images ADD COLUMN current_review_id INTEGER" in sql
    assert "fk_images_current_review_id_reviews" in sql
    assert "UPDATE images SET current_review_id = (SELECT log_review.id" in sql


# --- 0004: project settings, prediction embeddings, explanation notes -------------------------


def test_0004_keeps_projects_and_goes_down_and_up(engine: Engine, database_backend: str) -> None:
    downgrade(engine, "0003")
    assert "explanation_notes" not in inspect(engine).get_table_names()
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO projects (name, description, object_name, defect_types, target_fnr,"
            " created_at) VALUES ('cells', '', 'cell', '[]', 0.01, '2026-11-22 08:00:00')"
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _schema_differences(engine) == []
    with engine.connect() as connection:
        settings = connection.exec_driver_sql("SELECT settings FROM projects").scalar_one()
    # existing projects get empty settings, not NULL (SQLite gives the text, psycopg decodes it)
    assert settings == ("{}" if database_backend == "sqlite" else {})
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[database_backend]

    downgrade(engine, "0003")
    assert "settings" not in {c["name"] for c in inspect(engine).get_columns("projects")}
    assert "embedding" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
    upgrade(engine)
    assert _schema_differences(engine) == []


def test_postgresql_0004_sql_renders_offline() -> None:
    sql = postgresql_upgrade_sql("0003:0004")
    assert "ALTER TABLE projects ADD COLUMN settings JSON DEFAULT '{}' NOT NULL" in sql
    assert "ALTER TABLE predictions ADD COLUMN embedding BYTEA" in sql
    assert "CREATE TABLE explanation_notes" in sql


# --- 0005: predictions.audit ----------------------------------------------------------------


def test_0005_existing_predictions_are_not_audited_and_goes_down_and_up(
    engine: Engine, database_backend: str
) -> None:
    from db import Image, Prediction, Project, make_session_factory, register_model_version

    with make_session_factory(engine)() as session, session.begin():
        project = Project(name="cells")
        session.add(project)
        session.flush()
        version = register_model_version(
            session,
            project_id=project.id,
            kind="patchcore",
            artifact_path="m",
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
        image = Image(
            project_id=project.id,
            sha256="0" * 64,
            stored_path="images/0.png",
            original_name="0.png",
            width=8,
            height=8,
            size_bytes=1,
            source="upload",
        )
        session.add(image)
        session.flush()
        session.add(
            Prediction(
                image_id=image.id,
                model_version_id=version.id,
                score=0.5,
                threshold=1.0,
                verdict="good",
                audit=True,
            )
        )

    downgrade(engine, "0004")
    assert "audit" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
    with engine.connect() as connection:  # the prediction itself survives
        assert connection.exec_driver_sql("SELECT count(*) FROM predictions").scalar_one() == 1
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _schema_differences(engine) == []
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[database_backend]
    with engine.connect() as connection:  # parts inspected before 0005 were never drawn
        assert connection.exec_driver_sql("SELECT audit FROM predictions").scalar_one() in (
            False,
            0,
        )
    with engine.begin() as connection:  # NOT NULL, false by default
        connection.exec_driver_sql(
            "INSERT INTO predictions (image_id, model_version_id, score, threshold, verdict,"
            " created_at) SELECT image_id, model_version_id, 2.0, 1.0, 'defect', created_at"
            " FROM predictions"
        )
        audits = connection.exec_driver_sql("SELECT audit FROM predictions").scalars().all()
    assert [bool(value) for value in audits] == [False, False]


def test_postgresql_0005_sql_renders_offline() -> None:
    sql = postgresql_upgrade_sql("0004:0005")
    assert "ALTER TABLE predictions ADD COLUMN audit BOOLEAN DEFAULT false NOT NULL" in sql


def test_0008_adds_defect_boxes_keeps_the_triggers_and_goes_down_and_up(engine: Engine) -> None:
    downgrade(engine, "0007")
    assert "region" not in {c["name"] for c in inspect(engine).get_columns("reviews")}
    upgrade(engine)
    assert "region" in {c["name"] for c in inspect(engine).get_columns("reviews")}
    assert _schema_differences(engine) == []
    downgrade(engine, "0007")
    assert "region" not in {c["name"] for c in inspect(engine).get_columns("reviews")}
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[engine.dialect.name]  # still append-only
    upgrade(engine)
    assert _triggers(engine) == APPEND_ONLY_TRIGGERS[engine.dialect.name]


def _project_with_images(engine: Engine, n_images: int) -> tuple[int, list[int], int]:
    """A project with ``n_images`` image rows and one model version: their ids."""
    from db import Project, make_session_factory

    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        project = Project(name="cells")
        session.add(project)
        session.flush()
        project_id = project.id
    images = [add_image(factory, project_id, n) for n in range(n_images)]
    return project_id, images, add_version(factory, project_id, active=False)


def test_0009_marks_the_superseded_predictions_of_existing_rows(engine: Engine) -> None:
    _, images, version = _project_with_images(engine, 2)
    ids = (images[0], images[1], version)
    downgrade(engine, "0008")
    assert "superseded" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
    with engine.begin() as connection:  # written before 0009: three of one pair, one alone
        for image_id, day in ((ids[0], 2), (ids[0], 3), (ids[0], 1), (ids[1], 1)):
            connection.execute(
                text(
                    "INSERT INTO predictions (image_id, model_version_id, score, threshold,"
                    " verdict, created_at) VALUES (:image, :version, 0.5, 1.0, 'good', :at)"
                ),
                {"image": image_id, "version": ids[2], "at": f"2025-03-0{day} 00:00:00"},
            )
    upgrade(engine)
    assert _schema_differences(engine) == []
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT image_id, created_at, superseded FROM predictions ORDER BY id"
        ).all()
    kept = [(image_id, str(at)[:10]) for image_id, at, superseded in rows if not superseded]
    assert kept == [(ids[0], "2025-03-03"), (ids[1], "2025-03-01")]
    downgrade(engine, "0008")
    assert "superseded" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
    upgrade(engine)


def test_0010_fills_reviewer_labels_from_the_log_as_the_events_keep_them(
    engine: Engine,
) -> None:
    from db import User, make_session_factory
    from db.review_log import add_review, undo_last_review

    _, images, _ = _project_with_images(engine, 2)
    with make_session_factory(engine)() as session, session.begin():
        users = [User(name=name, role="inspector", password_hash="x") for name in ("a", "b")]
        session.add_all(users)
        session.flush()
        a, b = (user.id for user in users)
        for image, reviewer, label in (
            (images[0], a, "good"),
            (images[0], b, "defect"),
            (images[0], a, "defect"),
            (images[1], b, "good"),
            (images[1], b, "defect"),
        ):
            add_review(session, image_id=image, reviewer_id=reviewer, label=label)
        undo_last_review(session, reviewer_id=b)  # b's defect on image 1: back to good

    def held() -> set[tuple]:
        with engine.connect() as connection:
            return set(
                connection.exec_driver_sql(
                    "SELECT image_id, reviewer_id, project_id, review_id, label"
                    " FROM reviewer_labels"
                ).all()
            )

    kept = held()
    assert len(kept) == 3
    downgrade(engine, "0009")
    assert "reviewer_labels" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert _schema_differences(engine) == []
    assert held() == kept


def test_postgresql_0010_sql_renders_offline_with_its_fill() -> None:
    sql = postgresql_upgrade_sql("0009:0010")
    assert "CREATE TABLE reviewer_labels" in sql
    assert "INSERT INTO reviewer_labels" in sql
