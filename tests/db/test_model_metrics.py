"""A model version's metrics JSON: typed records, the same stored JSON, one reader and writer.

The documents below are written as Loupe stored them before :mod:`db.model_metrics` typed them
(the literal shapes of the old writers), so reading them checks that existing databases read
the same, and comparing what the writers store with them checks that new rows are stored the
same.
"""

from __future__ import annotations

import ast
import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import ModelVersion, User, activate_model_version
from db.model_families import detector_lineage
from db.model_metrics import (
    GateDecision,
    GateOverride,
    InstantUpdate,
    ScorerDetector,
    StatusChange,
    ThresholdChange,
    instant_update_metrics,
    new_version_metrics,
    read_metrics,
    record_gate_override,
    record_status_change,
    record_threshold_change,
    redate_status_changes,
)
from db.model_versions import register_model_version, rollback_to, set_threshold

ROOT = Path(__file__).resolve().parents[2]
MODULES = {"adcore", "sklearn"}
"""Packages with a ``metrics`` module (``adcore.metrics``): not a version's metrics."""

GATE = {
    "evaluated_at": "2025-01-02T03:04:05+00:00",
    "fpr_margin": 0.02,
    "target_fnr": 0.01,
    "heldout": {"n_good": 10, "n_defect": 4, "n_unreadable": 1, "good_share": 0.1},
    "candidate": {"threshold": 1.5, "fnr": 0.0, "fpr": 0.1, "n_good": 10, "n_defect": 4},
    "active": {"version_id": 7, "version": 2, "threshold": 1.2, "fnr": 0.25, "fpr": 0.1},
    "decision": {"passed": False, "reasons": ["It misses more defects."], "notes": ["chosen"]},
}
STORED = {
    "n_train": 12,
    "threshold_rule": "fnr_target",
    "heldout": GATE["candidate"],
    "memory_bank_size": 400,
    "gate": GATE,
    "gate_overrides": [
        {
            "at": "2025-01-03T00:00:00+00:00",
            "by": "manager-1",
            "by_id": 2,
            "reason": "the line needs it",
            "refusals": ["It misses more defects."],
            "gate": GATE,
        }
    ],
    "status_history": [
        {"at": "2025-01-03T00:00:00+00:00", "status": "active", "by": "system"},
        {
            "at": "2025-01-04T00:00:00+00:00",
            "status": "active",
            "by": "manager-1",
            "action": "rollback",
            "from_version": None,
        },
        {"at": "2025-01-05T00:00:00+00:00", "status": "retired", "by": "insp", "note": "why"},
    ],
    "threshold_history": [
        {"at": "2025-01-03T00:00:00+00:00", "by": "manager-1", "by_id": 2, "old": None, "new": 1.5}
    ],
    "detector": {"version_id": 7, "version": 2, "kind": "patchcore"},
    "instant_updates": [
        {
            "at": "2025-01-06T00:00:00+00:00",
            "by": "insp",
            "by_id": 3,
            "review_ids": [11],
            "image_ids": [21],
            "image_sha256": ["ab" * 32],
            "parent_version": 2,
            "parent_version_id": 7,
            "bank_size_after": 410,
        }
    ],
    "instant_update_count": 1,
    "same_model_as": [5, 4],
}


def version_with(document: dict | None) -> ModelVersion:
    """A transient version holding ``document`` as its metrics (no database needed)."""
    return ModelVersion(kind="patchcore", metrics=copy.deepcopy(document))


def test_a_stored_document_reads_back_as_typed_records() -> None:
    metrics = read_metrics(version_with(STORED))
    gate = metrics.gate
    assert gate is not None and gate.to_json() == GATE
    assert gate.decision == GateDecision(False, ("It misses more defects.",), ("chosen",))
    assert gate.active_version_id == 7 and gate.candidate == GATE["candidate"]
    assert gate.heldout["n_unreadable"] == 1 and gate.untuned is None
    [override] = metrics.gate_overrides
    assert override.by_id == 2 and override.refusals == ("It misses more defects.",)
    assert override.gate == GATE
    assert [change.status for change in metrics.status_history] == ["active", "active", "retired"]
    rollback = metrics.status_history[1]
    assert rollback.action == "rollback" and rollback.from_version is None and not rollback.extra
    assert metrics.status_history[2].note == "why"
    assert metrics.threshold_history == [
        ThresholdChange("2025-01-03T00:00:00+00:00", "manager-1", 2, None, 1.5)
    ]
    assert metrics.scorer_detector == ScorerDetector(7, 2, "patchcore")
    [update] = metrics.instant_updates
    assert update.parent_version_id == 7 and update.details == {"bank_size_after": 410}
    assert metrics.same_model_as == [5, 4]
    assert metrics.was_active
    assert metrics.facts == {
        "n_train": 12,
        "threshold_rule": "fnr_target",
        "heldout": GATE["candidate"],
        "memory_bank_size": 400,
    }
    assert metrics.summary() == {
        "n_train": 12,
        "threshold_rule": "fnr_target",
        "memory_bank_size": 400,
        "instant_update_count": 1,
    }


@pytest.mark.parametrize("document", [None, {}, {"gate": None, "status_history": None}])
def test_an_empty_or_null_document_reads_as_nothing_recorded(document: dict | None) -> None:
    metrics = read_metrics(version_with(document))
    assert metrics.gate is None and metrics.scorer_detector is None
    assert metrics.status_history == metrics.threshold_history == metrics.gate_overrides == []
    assert metrics.instant_updates == [] and metrics.same_model_as == []
    assert not metrics.was_active and metrics.facts == {}


def test_typed_entries_round_trip_to_the_stored_json() -> None:
    for entry in STORED["status_history"]:
        assert StatusChange.from_json(entry).to_json() == entry
    for entry in STORED["threshold_history"]:
        assert ThresholdChange.from_json(entry).to_json() == entry
    for entry in STORED["gate_overrides"]:
        assert GateOverride.from_json(entry).to_json() == entry
    for entry in STORED["instant_updates"]:
        assert InstantUpdate.from_json(entry).to_json() == entry
    assert ScorerDetector.from_json(STORED["detector"]).to_json() == STORED["detector"]
    odd = {"at": "t", "status": "active", "by": "x", "simulated": True, "kept": [1]}
    assert StatusChange.from_json(odd).to_json() == odd


def test_status_changes_are_stored_in_the_shapes_of_before() -> None:
    promote = StatusChange(
        "t", "active", "m", action="promote", override={"reason": "r", "refusals": ["x"]}
    )
    assert promote.to_json() == {
        "at": "t",
        "status": "active",
        "by": "m",
        "action": "promote",
        "override": {"reason": "r", "refusals": ["x"]},
    }
    assert StatusChange("t", "active", "m", action="rollback").to_json() == {
        "at": "t",
        "status": "active",
        "by": "m",
        "action": "rollback",
        "from_version": None,
    }
    instant = StatusChange("t", "retired", "i", note="why")
    assert instant.to_json() == {"at": "t", "status": "retired", "by": "i", "note": "why"}
    assert StatusChange("t", "retired", "system").to_json() == {
        "at": "t",
        "status": "retired",
        "by": "system",
    }


def test_writers_append_and_leave_everything_else_as_stored() -> None:
    version = version_with(STORED)
    before = version.metrics
    record_status_change(version, StatusChange("t1", "retired", "m"))
    record_threshold_change(version, ThresholdChange("t2", "m", 2, 1.5, 1.7))
    record_gate_override(version, GateOverride("t3", "m", 2, "why", ("no",), {}))
    assert version.metrics is not before  # a new dict: JSON columns track assignments only
    assert before == STORED  # the old document was not edited in place
    after = version.metrics
    assert after["status_history"] == [
        *STORED["status_history"],
        {"at": "t1", "status": "retired", "by": "m"},
    ]
    assert after["threshold_history"][-1] == {
        "at": "t2",
        "by": "m",
        "by_id": 2,
        "old": 1.5,
        "new": 1.7,
    }
    assert after["gate_overrides"][-1] == {
        "at": "t3",
        "by": "m",
        "by_id": 2,
        "reason": "why",
        "refusals": ["no"],
        "gate": {},
    }
    untouched = {"status_history", "threshold_history", "gate_overrides"}
    assert {k: v for k, v in after.items() if k not in untouched} == {
        k: v for k, v in STORED.items() if k not in untouched
    }


def test_a_version_without_metrics_gets_its_first_entry() -> None:
    version = version_with(None)
    record_status_change(version, StatusChange("t", "active", "system"))
    assert version.metrics == {"status_history": [{"at": "t", "status": "active", "by": "system"}]}


def test_new_version_metrics_hold_the_facts_and_the_records() -> None:
    facts = {"n_train": 3, "heldout": {"fnr": 0.0}}
    document = new_version_metrics(
        facts,
        gate=GATE,
        scorer_detector=ScorerDetector(7, 2, "patchcore"),
        same_model_as=[7, 5],
    )
    assert document == {
        **facts,
        "gate": GATE,
        "detector": {"version_id": 7, "version": 2, "kind": "patchcore"},
        "same_model_as": [7, 5],
    }
    assert new_version_metrics(facts) == facts
    with pytest.raises(ValueError, match="record keys"):
        new_version_metrics({"n_train": 1, "gate": {}})


def test_an_instant_update_copies_the_parent_as_before() -> None:
    parent = version_with(STORED)
    parent.version = 3
    update = InstantUpdate(
        at="t",
        by="insp",
        by_id=3,
        review_ids=(12, 13),
        image_ids=(22, 23),
        image_sha256=("cd" * 32, "ef" * 32),
        parent_version=3,
        parent_version_id=8,
        details={"bank_size_after": 420, "patches_added": 10},
    )
    document = instant_update_metrics(parent, update)
    entry = {
        "at": "t",
        "by": "insp",
        "by_id": 3,
        "review_ids": [12, 13],
        "image_ids": [22, 23],
        "image_sha256": ["cd" * 32, "ef" * 32],
        "parent_version": 3,
        "parent_version_id": 8,
        "bank_size_after": 420,
        "patches_added": 10,
    }
    expected = {k: v for k, v in STORED.items() if k != "status_history"}
    expected.update(
        instant_updates=[*STORED["instant_updates"], entry],
        instant_update_count=2,
        parent_version=3,
        memory_bank_size=420,
    )
    assert document == expected
    assert parent.metrics == STORED
    child = version_with(document)
    child.id = 9
    assert detector_lineage(child) == [9, 8, 7, 5, 4]


def test_the_demo_redates_only_the_changes_it_simulates() -> None:
    version = version_with(STORED)
    moment = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)
    redate_status_changes(version, {"retired": moment})
    history = version.metrics["status_history"]
    assert history[:2] == STORED["status_history"][:2]
    assert history[2] == {
        **STORED["status_history"][2],
        "at": moment.isoformat(),
        "simulated": True,
    }


def test_a_rollback_and_a_threshold_change_store_what_they_stored_before(
    session_factory: sessionmaker[Session], project_id: int, make_user
) -> None:
    manager_id = make_user("manager-1", "manager")
    with session_factory() as session, session.begin():
        manager = session.get(User, manager_id)
        ids = [
            register_model_version(
                session,
                project_id=project_id,
                kind="patchcore",
                artifact_path=f"models/v{i}",
                metrics=new_version_metrics({"n_train": i}),
                threshold=1.0,
                training_snapshot={},
            ).id
            for i in (1, 2)
        ]
        for version_id in ids:
            activate_model_version(session, version_id=version_id, user=manager)
        rollback_to(session, ids[0], manager)
        set_threshold(session, version_id=ids[0], threshold=1.25, user=manager)
    with session_factory() as session:
        stored = session.get(ModelVersion, ids[0]).metrics
    statuses = stored["status_history"]
    assert [{k: v for k, v in entry.items() if k != "at"} for entry in statuses] == [
        {"status": "active", "by": "manager-1"},
        {"status": "retired", "by": "manager-1"},
        {"status": "active", "by": "manager-1", "action": "rollback", "from_version": 2},
    ]
    [change] = stored["threshold_history"]
    assert {k: v for k, v in change.items() if k != "at"} == {
        "by": "manager-1",
        "by_id": manager_id,
        "old": 1.0,
        "new": 1.25,
    }
    assert stored["n_train"] == 1


def test_only_db_model_metrics_touches_model_version_metrics() -> None:
    """No code outside :mod:`db.model_metrics` reads or assigns an object's ``.metrics``."""
    owner = ROOT / "db" / "model_metrics.py"
    files = [
        path
        for folder in ("db", "services", "workers", "pages", "api", "bench", "loupe")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ] + [ROOT / "app.py", ROOT / "serve.py"]
    # A migration reads the JSON as it was stored when it was written, never through today's
    # application code (which may change after it): see db/migrations/versions/0016.
    migrations = ROOT / "db" / "migrations"
    offenders = []
    for path in files:
        if path == owner or not path.is_file() or path.is_relative_to(migrations):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "metrics"
                and not (
                    isinstance(node.value, ast.Name) and node.value.id in {"adcore", "sklearn"}
                )
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "read or write metrics through db.model_metrics: " + ", ".join(offenders)
