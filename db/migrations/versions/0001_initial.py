"""Initial schema: users, projects, model versions, images, predictions, reviews, jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand to match ``db.models`` exactly (``tests/db`` compares them). Allowed values are
spelled out literally: this file must keep describing the schema as it was.

Reviews are append-only: triggers abort any UPDATE or DELETE on SQLite and PostgreSQL (other
backends rely on the ORM guard alone). A later batch migration that rebuilds ``reviews`` on
SQLite drops its triggers with the old table and must create them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "reviews are append-only"
ACTIVE_MODEL_FK = "fk_projects_active_model_version_id_model_versions"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Create every table, index and constraint, then the append-only triggers."""
    dialect = op.get_context().dialect.name
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _created_at(),
        sa.CheckConstraint("role IN ('inspector', 'manager', 'admin')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    # projects <-> model_versions is a cycle. SQLite accepts a foreign key to a table that does
    # not exist yet (and cannot add one later without rebuilding the table); other backends get
    # it with ALTER TABLE once model_versions exists.
    active_model_fk = sa.ForeignKeyConstraint(
        ["active_model_version_id"], ["model_versions.id"], name=op.f(ACTIVE_MODEL_FK)
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("object_name", sa.String(length=128), nullable=False),
        sa.Column("defect_types", sa.JSON(), nullable=False),
        sa.Column("active_model_version_id", sa.Integer(), nullable=True),
        sa.Column("target_fnr", sa.Double(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "target_fnr >= 0 AND target_fnr <= 1", name=op.f("ck_projects_target_fnr_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
        *([active_model_fk] if dialect == "sqlite" else []),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("artifact_path", sa.String(length=512), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("training_snapshot", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        _created_at(),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('candidate', 'active', 'retired')", name=op.f("ck_model_versions_status")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_model_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_model_versions_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_model_versions_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint(
            "project_id", "version", name=op.f("uq_model_versions_project_id_version")
        ),
    )
    if dialect != "sqlite":
        op.create_foreign_key(
            op.f(ACTIVE_MODEL_FK),
            "projects",
            "model_versions",
            ["active_model_version_id"],
            ["id"],
        )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("stored_path", sa.String(length=512), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        _created_at(),
        sa.CheckConstraint("length(sha256) = 64", name=op.f("ck_images_sha256_length")),
        sa.CheckConstraint("width > 0 AND height > 0", name=op.f("ck_images_positive_size")),
        sa.CheckConstraint("size_bytes > 0", name=op.f("ck_images_positive_size_bytes")),
        sa.CheckConstraint("source IN ('upload', 'folder', 'demo')", name=op.f("ck_images_source")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_images_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("project_id", "sha256", name=op.f("uq_images_project_id_sha256")),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("anomaly_map_path", sa.String(length=512), nullable=True),
        sa.Column("explanation", sa.JSON(), nullable=True),
        _created_at(),
        sa.CheckConstraint("verdict IN ('good', 'defect')", name=op.f("ck_predictions_verdict")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_predictions_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_predictions_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    op.create_index(op.f("ix_predictions_created_at"), "predictions", ["created_at"])
    op.create_index(
        op.f("ix_predictions_image_id_created_at"), "predictions", ["image_id", "created_at"]
    )
    op.create_index(op.f("ix_predictions_model_version_id"), "predictions", ["model_version_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("defect_type", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("seconds_spent", sa.Double(), nullable=True),
        sa.Column("is_undo", sa.Boolean(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        _created_at(),
        sa.CheckConstraint("label IN ('good', 'defect')", name=op.f("ck_reviews_label")),
        sa.CheckConstraint(
            "(is_undo AND label IS NULL AND defect_type IS NULL AND supersedes_id IS NOT NULL)"
            " OR (NOT is_undo AND label IS NOT NULL AND supersedes_id IS NULL)",
            name=op.f("ck_reviews_undo_shape"),
        ),
        sa.CheckConstraint(
            "defect_type IS NULL OR label = 'defect'",
            name=op.f("ck_reviews_defect_type_needs_defect"),
        ),
        sa.CheckConstraint(
            "seconds_spent IS NULL OR seconds_spent >= 0",
            name=op.f("ck_reviews_seconds_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_reviews_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_reviews_reviewer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["reviews.id"], name=op.f("fk_reviews_supersedes_id_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_reviews_supersedes_id")),
    )
    op.create_index(op.f("ix_reviews_created_at"), "reviews", ["created_at"])
    op.create_index(op.f("ix_reviews_image_id_created_at"), "reviews", ["image_id", "created_at"])
    op.create_index(
        op.f("ix_reviews_reviewer_id_created_at"), "reviews", ["reviewer_id", "created_at"]
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("peak_memory_mb", sa.Double(), nullable=True),
        sa.Column("worker_id", sa.String(length=64), nullable=True),
        _created_at(),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_jobs_progress_range")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_jobs_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_jobs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_status_created_at"), "jobs", ["status", "created_at"])
    _create_append_only_triggers(dialect)


def downgrade() -> None:
    """Drop the triggers, then every table (the cycle's foreign key first)."""
    dialect = op.get_context().dialect.name
    _drop_append_only_triggers(dialect)
    if dialect != "sqlite":
        op.drop_constraint(op.f(ACTIVE_MODEL_FK), "projects", type_="foreignkey")
    op.drop_index(op.f("ix_jobs_status_created_at"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_reviews_reviewer_id_created_at"), table_name="reviews")
    op.drop_index(op.f("ix_reviews_image_id_created_at"), table_name="reviews")
    op.drop_index(op.f("ix_reviews_created_at"), table_name="reviews")
    op.drop_table("reviews")
    op.drop_index(op.f("ix_predictions_model_version_id"), table_name="predictions")
    op.drop_index(op.f("ix_predictions_image_id_created_at"), table_name="predictions")
    op.drop_index(op.f("ix_predictions_created_at"), table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("images")
    op.drop_table("model_versions")
    op.drop_table("projects")
    op.drop_table("users")


def _create_append_only_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER reviews_append_only_{event.lower()} BEFORE {event} ON reviews "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION reviews_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END; $$"
        )
        op.execute(
            "CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews "
            "FOR EACH ROW EXECUTE FUNCTION reviews_refuse_change()"
        )
        op.execute(  # row triggers do not see TRUNCATE
            "CREATE TRIGGER reviews_append_only_truncate BEFORE TRUNCATE ON reviews "
            "FOR EACH STATEMENT EXECUTE FUNCTION reviews_refuse_change()"
        )
    # Other backends: no trigger; the ORM guard in db.models.reviews still applies.


def _drop_append_only_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS reviews_append_only_{event}")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS reviews_append_only_truncate ON reviews")
        op.execute("DROP TRIGGER IF EXISTS reviews_append_only ON reviews")
        op.execute("DROP FUNCTION IF EXISTS reviews_refuse_change()")
