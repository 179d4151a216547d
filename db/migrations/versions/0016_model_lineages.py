"""Model lineages: each model version gets its model number and its revision of that model.

Revision ID: 0016
Revises: 0015
Create Date: 2027-03-01

Written by hand to match ``db.models.projects``:

* ``model_versions.model_number`` (integer, NOT NULL, >= 1): the model, a lineage ("v2");
* ``model_versions.revision`` (integer, NOT NULL, >= 0): its revision of that model ("v2.14");
* unique ``(project_id, model_number, revision)``.

``version`` and every other column stay as they are. Existing rows are numbered per project in
``version`` order, by the rule of ``db.model_lineages.lineage_number``: a version whose metrics
name a parent (the last instant update's ``parent_version_id``, else the first id of
``same_model_as``) of the same project and kind, numbered before it, takes the parent's model
and that model's next revision; any other version starts a new model (the project's highest
model number + 1, shared by every kind), revision 0. The metrics JSON is read here directly,
not through the application's models, which may change after this script.

Offline (``--sql``) there are no rows to read: the script then numbers every version as a
model of its own (``model_number = version``, revision 0).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODEL_VERSIONS = sa.table(
    "model_versions",
    sa.column("id", sa.Integer),
    sa.column("project_id", sa.Integer),
    sa.column("version", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("metrics", sa.JSON),
    sa.column("model_number", sa.Integer),
    sa.column("revision", sa.Integer),
)
UNIQUE = "uq_model_versions_project_id_model_number_revision"
CHECKS = {
    "ck_model_versions_model_number_positive": "model_number >= 1",
    "ck_model_versions_revision_not_negative": "revision >= 0",
}


def upgrade() -> None:
    """Add and fill ``model_number`` and ``revision``, then make them NOT NULL and unique."""
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("model_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=True))
    if op.get_context().as_sql:
        op.execute(
            MODEL_VERSIONS.update().values(model_number=MODEL_VERSIONS.c.version, revision=0)
        )
    else:
        _number_existing_versions(op.get_bind())
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("model_number", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("revision", existing_type=sa.Integer(), nullable=False)
        batch.create_unique_constraint(op.f(UNIQUE), ["project_id", "model_number", "revision"])
        for name, sqltext in CHECKS.items():
            batch.create_check_constraint(op.f(name), sqltext)


def downgrade() -> None:
    """Drop the lineage columns (the versions themselves stay, numbered by ``version``)."""
    with op.batch_alter_table("model_versions") as batch:
        for name in CHECKS:
            batch.drop_constraint(op.f(name), type_="check")
        batch.drop_constraint(op.f(UNIQUE), type_="unique")
        batch.drop_column("revision")
        batch.drop_column("model_number")


def _number_existing_versions(connection: sa.Connection) -> None:
    """Number every stored version (one read, one batched UPDATE)."""
    rows = connection.execute(
        sa.select(
            MODEL_VERSIONS.c.id,
            MODEL_VERSIONS.c.project_id,
            MODEL_VERSIONS.c.kind,
            MODEL_VERSIONS.c.metrics,
        ).order_by(MODEL_VERSIONS.c.project_id, MODEL_VERSIONS.c.version, MODEL_VERSIONS.c.id)
    ).all()
    numbers = lineage_numbers((row.id, row.project_id, row.kind, row.metrics) for row in rows)
    if not numbers:
        return
    connection.execute(
        MODEL_VERSIONS.update()
        .where(MODEL_VERSIONS.c.id == sa.bindparam("version_id"))
        .values(model_number=sa.bindparam("number"), revision=sa.bindparam("rev")),
        [
            {"version_id": version_id, "number": number, "rev": rev}
            for version_id, (number, rev) in numbers.items()
        ],
    )


def lineage_numbers(
    versions: Iterable[tuple[int, int, str, Any]],
) -> dict[int, tuple[int, int]]:
    """``{id: (model_number, revision)}`` of versions given per project in ``version`` order.

    Args:
        versions: ``(id, project_id, kind, metrics document)`` rows, ordered by project, then
            version.

    Returns:
        The numbers of every version.
    """
    numbers: dict[int, tuple[int, int]] = {}
    kinds: dict[int, tuple[int, str]] = {}  # id -> (project, kind) of the versions numbered
    top_model: dict[int, int] = {}  # project -> highest model number
    top_revision: dict[tuple[int, int], int] = {}  # (project, model) -> highest revision
    for version_id, project_id, kind, metrics in versions:
        parent = _parent_id(metrics, version_id)
        if parent in numbers and kinds[parent] == (project_id, kind):
            model = numbers[parent][0]
            rev = top_revision[(project_id, model)] + 1
        else:
            model = top_model.get(project_id, 0) + 1
            top_model[project_id] = model
            rev = 0
        top_revision[(project_id, model)] = rev
        numbers[version_id] = (model, rev)
        kinds[version_id] = (project_id, kind)
    return numbers


def _parent_id(metrics: Any, own_id: int) -> int | None:
    """The version a metrics document says this one reuses the model of, or None.

    The last instant update's ``parent_version_id``, else the first of ``same_model_as``
    (ids only; never the version itself).
    """
    if not isinstance(metrics, Mapping):
        return None
    updates = metrics.get("instant_updates") or []
    parents = [
        update.get("parent_version_id")
        for update in reversed(updates if isinstance(updates, list) else [])
        if isinstance(update, Mapping)
    ]
    same = metrics.get("same_model_as") or []
    parents += same if isinstance(same, list) else []
    return next(
        (
            parent
            for parent in parents
            if isinstance(parent, int) and not isinstance(parent, bool) and parent != own_id
        ),
        None,
    )
