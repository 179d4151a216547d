"""Migration 0016: hundreds of versions written at 0015 get their model numbers and revisions.

The story below writes versions the way Loupe wrote them before lineages existed (instant-update
chains whose metrics accumulate ``instant_updates``, recalibrations naming ``same_model_as``,
refits, other kinds, a rollback that branches from an old revision, broken or foreign parents)
and says, as it writes each one, which model and revision it must become.
"""

from __future__ import annotations

import io
import random
from datetime import datetime
from typing import Any

from alembic import command
from sqlalchemy import Engine, MetaData, Table, inspect, select

from db import ModelVersion, Project, current_revision, downgrade, make_session_factory, upgrade
from db.migrate import alembic_config, head_revision
from db.model_lineages import lineages, version_label
from db.model_versions import register_model_version

T0 = datetime(2026, 1, 5, 8, 0, 0)
DETECTOR = "patchcore"


class Story:
    """Writes one project's versions at revision 0015 and the numbers each must get."""

    def __init__(self, connection: Any, table: Table, project_id: int, expected: dict) -> None:
        self.connection, self.table, self.project_id = connection, table, project_id
        self.expected = expected  # every story's: {version id: (model, revision)}
        self.metrics: dict[int, dict] = {}
        self.kinds: dict[int, str] = {}
        self.version = 0
        self.models = 0
        self.revisions: dict[int, int] = {}  # model -> highest revision so far

    def _write(self, kind: str, metrics: Any, expected_model: int | None, version: int = 0) -> int:
        self.version = version or self.version + 1
        version_id = self.connection.execute(
            self.table.insert().values(
                project_id=self.project_id,
                version=self.version,
                kind=kind,
                artifact_path=f"models/p{self.project_id}/v{self.version}",
                metrics=metrics,
                threshold=0.5,
                training_snapshot={"images": []},
                status="retired",
                notes=f"version {self.version}",
                created_at=T0,
            )
        ).inserted_primary_key[0]
        if expected_model is None:  # a new model
            self.models += 1
            expected_model = self.models
            self.revisions[expected_model] = 0
        else:
            self.revisions[expected_model] += 1
        self.expected[version_id] = (expected_model, self.revisions[expected_model])
        self.metrics[version_id] = metrics if isinstance(metrics, dict) else {}
        self.kinds[version_id] = kind
        return version_id

    def fit(self, kind: str = DETECTOR, metrics: Any = None, version: int = 0) -> int:
        """A model fitted from scratch: a new model, revision 0."""
        return self._write(kind, {"n_train": 10} if metrics is None else metrics, None, version)

    def instant_update(self, parent: int) -> int:
        """The parent's document plus one instant-update entry (as ``instant_update_metrics``)."""
        document = {k: v for k, v in self.metrics[parent].items() if k != "status_history"}
        entry = {"at": "2026-01-05T08:00:00", "by": "ann", "parent_version_id": parent}
        document["instant_updates"] = [*document.get("instant_updates", []), entry]
        document["instant_update_count"] = len(document["instant_updates"])
        return self._write(self.kinds[parent], document, self.expected[parent][0])

    def recalibrate(self, parent: int) -> int:
        """A fresh document naming the parent's lineage (as the recalibration job does)."""
        lineage = [parent, *self._ancestors(parent)]
        document = {"threshold_rule": "fnr_target", "same_model_as": lineage}
        return self._write(self.kinds[parent], document, self.expected[parent][0])

    def _ancestors(self, version_id: int) -> list[int]:
        document = self.metrics[version_id]
        parents = [u["parent_version_id"] for u in reversed(document.get("instant_updates", []))]
        return [*parents, *document.get("same_model_as", [])]


def _write_stories(engine: Engine) -> dict[int, tuple[int, int]]:
    """Three projects written at 0015; return every version's expected numbers."""
    expected: dict[int, tuple[int, int]] = {}
    meta = MetaData()
    with engine.begin() as connection:
        projects = Table("projects", meta, autoload_with=connection)
        versions = Table("model_versions", meta, autoload_with=connection)
        ids = [
            connection.execute(
                projects.insert().values(
                    name=name, description="", object_name="cell", defect_types=[],
                    target_fnr=0.01, settings={}, created_at=T0,
                )
            ).inserted_primary_key[0]
            for name in ("elpv", "tiles", "order")
        ]  # fmt: skip
        a, b, c = (Story(connection, versions, pid, expected) for pid in ids)

        # -- project a: the replay's story, v1 .. v138 of one detector and a few others
        first = a.fit()  # v1.0
        chain = [first]
        for _ in range(120):  # v1.1 .. v1.120
            chain.append(a.instant_update(chain[-1]))
        recalibrated = a.recalibrate(chain[-1])  # v1.121
        updated = recalibrated
        for _ in range(10):  # an update of a recalibration: its instant update names the parent
            updated = a.instant_update(updated)
        a.fit("feedback_scorer", {"detector": {"version_id": updated, "version": 132}})  # v2.0
        refit = a.fit()  # v3.0
        a.instant_update(chain[50])  # rolled back to v1.50, then updated: v1.132
        a.instant_update(a.recalibrate(a.instant_update(refit)))  # v3.1, v3.2, v3.3
        a.recalibrate(a.fit("clip", {"prompts": ["a crack"]}))  # v4.0, v4.1 (kinds share numbers)
        a.fit("classifier")  # v5.0
        a.fit(metrics={"same_model_as": [10**6]})  # a parent that does not exist: v6.0
        a.fit("autoencoder", {"instant_updates": [{"parent_version_id": first}]})  # other kind
        a.fit(metrics={"instant_updates": "junk", "same_model_as": ["x", True, None]})
        a.fit(metrics=[])  # not a document at all
        a.version += 40  # numbers need not be consecutive
        a.instant_update(chain[-1])  # v1.133

        # -- project b: a seeded mix; another project's parent never counts
        rng = random.Random(26)
        detectors = [b.fit()]
        b.fit(metrics={"same_model_as": [first]})  # a parent of project a: a new model
        for _ in range(150):
            roll = rng.random()
            if roll < 0.1:
                detectors.append(b.fit(rng.choice([DETECTOR, "autoencoder"])))
            elif roll < 0.15:
                b.fit(rng.choice(["feedback_scorer", "classifier", "explainer"]))
            elif roll < 0.3:
                detectors.append(b.recalibrate(rng.choice(detectors)))
            else:
                detectors.append(b.instant_update(rng.choice(detectors[-5:])))

        # -- project c: numbered in version order, not in the order the rows were written
        later = c.fit(version=2)
        earlier = c.fit(version=1)
    expected[earlier], expected[later] = (1, 0), (2, 0)
    return expected


def _rows(engine: Engine) -> dict[int, dict]:
    """Every stored version's columns (the lineage columns left out), by id."""
    table = Table("model_versions", MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        rows = connection.execute(select(table)).mappings().all()
    return {
        row["id"]: {k: v for k, v in row.items() if k not in ("model_number", "revision")}
        for row in rows
    }


def _numbers(engine: Engine) -> dict[int, tuple[int, int]]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT id, model_number, revision FROM model_versions"
        ).all()
    return {version_id: (model, rev) for version_id, model, rev in rows}


def _columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("model_versions")}


def test_0016_numbers_hundreds_of_versions_and_goes_down_and_up(engine: Engine) -> None:
    downgrade(engine, "0015")
    assert not {"model_number", "revision"} & _columns(engine)
    expected = _write_stories(engine)
    assert len(expected) >= 300
    before = _rows(engine)

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _numbers(engine) == expected
    assert _rows(engine) == before  # version, metrics, everything else untouched

    downgrade(engine, "0015")
    assert not {"model_number", "revision"} & _columns(engine)
    assert _rows(engine) == before
    upgrade(engine)
    assert _numbers(engine) == expected


def test_0016_registration_continues_the_migrated_lineages(engine: Engine) -> None:
    downgrade(engine, "0015")
    expected = _write_stories(engine)
    upgrade(engine)
    with make_session_factory(engine)() as session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == "elpv"))
        mine = session.scalars(select(ModelVersion.id).where(ModelVersion.project_id == project_id))
        numbers = {expected[version_id]: version_id for version_id in mine}
        tip, old = numbers[(1, 133)], numbers[(1, 50)]

        def register(metrics: dict) -> str:
            version = register_model_version(
                session, project_id=project_id, kind=DETECTOR, artifact_path="m",
                metrics=metrics, threshold=0.5, training_snapshot={},
            )  # fmt: skip
            return version_label(version.model_number, version.revision)

        assert register({"instant_updates": [{"parent_version_id": tip}]}) == "v1.134"
        assert register({"same_model_as": [old, tip]}) == "v1.135"  # branches from v1.50
        assert register({"n_train": 3}) == f"v{max(model for model, _ in numbers) + 1}.0"
        models = lineages(session, project_id)
    first = next(lineage for lineage in models if lineage.model_number == 1)
    assert [r.revision for r in first.revisions] == list(range(135, -1, -1))
    assert first.title == "v1 (patchcore, candidate)"  # its newest revision waits
    assert [lineage.model_number for lineage in models] == list(range(len(models), 0, -1))


def test_0016_renders_offline_with_every_version_a_model_of_its_own() -> None:
    output = io.StringIO()
    config = alembic_config(url="postgresql://loupe@localhost/loupe", output=output)
    command.upgrade(config, "0015:0016", sql=True)
    sql = output.getvalue()
    assert "ALTER TABLE model_versions ADD COLUMN model_number INTEGER" in sql
    assert "UPDATE model_versions SET model_number=model_versions.version, revision=0" in sql
    assert "UNIQUE (project_id, model_number, revision)" in sql
