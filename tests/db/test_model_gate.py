"""The promotion gate, promote with and without override, rollback, and model families."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adcore.gate import Rates, decide, gate_record
from db import ModelVersion, PermissionDenied, Project, User, activate_model_version
from db.model_candidates import candidate_comparisons
from db.model_families import ModelFamily, active_version, model_family
from db.model_metrics import GATE_OVERRIDES_KEY
from db.model_versions import (
    GateRefusedError,
    gate_refusals,
    promote_model_version,
    register_model_version,
    rollback_to,
)


def rates(fnr: float | None, fpr: float | None, n: int = 100) -> Rates:
    """Rates on 100 defects and 100 good parts with the given FNR and FPR."""
    fn = 0 if fnr is None else round(fnr * n)
    fp = 0 if fpr is None else round(fpr * n)
    return Rates(threshold=1.0, fnr=fnr, fpr=fpr, tp=n - fn, fp=fp, tn=n - fp, fn=fn)


@pytest.fixture
def people(session_factory: sessionmaker[Session], make_user: Callable[..., int]) -> dict:
    ids = {role: make_user(f"{role}-1", role) for role in ("inspector", "manager")}
    with session_factory() as session:
        return {role: session.get(User, user_id) for role, user_id in ids.items()}


@pytest.fixture
def register(session_factory: sessionmaker[Session], project_id: int) -> Callable[..., int]:
    def create(kind: str = "patchcore", gate: dict | None = None) -> int:
        with session_factory() as session, session.begin():
            metrics = {"n_train": 3} if gate is None else {"n_train": 3, "gate": gate}
            return register_model_version(
                session,
                project_id=project_id,
                kind=kind,
                artifact_path="models/x",
                metrics=metrics,
                threshold=1.0,
                training_snapshot={"images": []},
            ).id

    return create


def versus(active_id: int | None, candidate: Rates, active: Rates | None) -> dict:
    return gate_record(
        candidate=candidate,
        active=active,
        active_version_id=active_id,
        active_version=1,
        heldout={"n_good": 100, "n_defect": 100},
        fpr_margin=0.02,
    )


def status(factory: sessionmaker[Session], version_id: int) -> str:
    with factory() as session:
        return session.get(ModelVersion, version_id).status


def active_detector_id(factory: sessionmaker[Session], project_id: int) -> int | None:
    with factory() as session:
        return session.get(Project, project_id).active_model_version_id


# ------------------------------------------------------------------------- pure gate logic


def test_gate_passes_when_no_worse() -> None:
    decision = decide(rates(0.05, 0.10), rates(0.05, 0.09), fpr_margin=0.02)
    assert decision.passed and decision.reasons == ()


def test_gate_refuses_a_worse_fnr() -> None:
    decision = decide(rates(0.06, 0.01), rates(0.05, 0.10), fpr_margin=0.02)
    assert not decision.passed
    assert "misses more defects" in decision.reasons[0] and "6.0%" in decision.reasons[0]


def test_gate_refuses_an_fpr_worse_beyond_the_margin_only() -> None:
    assert decide(rates(0.0, 0.12), rates(0.0, 0.10), fpr_margin=0.02).passed
    refused = decide(rates(0.0, 0.13), rates(0.0, 0.10), fpr_margin=0.02)
    assert not refused.passed and "false alarms" in refused.reasons[0]
    assert not decide(rates(0.0, 0.11), rates(0.0, 0.10), fpr_margin=0.0).passed


def test_gate_without_active_model_or_defects_notes_it() -> None:
    assert decide(rates(0.5, 0.5), None).passed
    decision = decide(rates(None, 0.05), rates(None, 0.04))
    assert decision.passed and "FNR" in decision.notes[0]
    with pytest.raises(ValueError):
        decide(rates(0.0, 0.0), rates(0.0, 0.0), fpr_margin=1.5)


# ------------------------------------------------------------------------- promotion


def test_promote_a_candidate_that_passes(
    session_factory: sessionmaker[Session],
    people: dict,
    project_id: int,
    register: Callable[..., int],
) -> None:
    first = register()
    with session_factory() as session, session.begin():  # no active model: nothing to protect
        promote_model_version(session, first, people["manager"])
    second = register(gate=versus(first, rates(0.0, 0.05), rates(0.1, 0.05)))
    with session_factory() as session, session.begin():
        assert gate_refusals(session, session.get(ModelVersion, second)) == []
        promote_model_version(session, second, people["manager"])
    assert status(session_factory, first) == "retired"
    assert status(session_factory, second) == "active"
    assert active_detector_id(session_factory, project_id) == second
    with session_factory() as session:
        history = session.get(ModelVersion, second).metrics["status_history"]
        assert history[-1]["action"] == "promote" and "override" not in history[-1]


def test_promote_refuses_a_worse_fnr_and_changes_nothing(
    session_factory: sessionmaker[Session],
    people: dict,
    project_id: int,
    register: Callable[..., int],
) -> None:
    first = register()
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=first, user=people["manager"])
    worse = register(gate=versus(first, rates(0.2, 0.0), rates(0.1, 0.05)))
    with session_factory() as session, session.begin():
        with pytest.raises(GateRefusedError) as refused:
            promote_model_version(session, worse, people["manager"], override_reason="   ")
        assert "misses more defects" in refused.value.reasons[0]
        assert refused.value.gate["candidate"]["fnr"] == 0.2
    assert status(session_factory, worse) == "candidate"
    assert active_detector_id(session_factory, project_id) == first
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        promote_model_version(session, worse, people["inspector"], override_reason="because")


def test_promote_refuses_an_fpr_worse_beyond_the_margin(
    session_factory: sessionmaker[Session], people: dict, register: Callable[..., int]
) -> None:
    first = register()
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=first, user=people["manager"])
    noisy = register(gate=versus(first, rates(0.0, 0.20), rates(0.0, 0.10)))
    with session_factory() as session, session.begin(), pytest.raises(GateRefusedError) as err:
        promote_model_version(session, noisy, people["manager"])
    assert "false alarms" in " ".join(err.value.reasons)


def test_override_is_recorded_with_who_why_and_the_numbers(
    session_factory: sessionmaker[Session],
    people: dict,
    project_id: int,
    register: Callable[..., int],
) -> None:
    first = register()
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=first, user=people["manager"])
    worse = register(gate=versus(first, rates(0.2, 0.0), rates(0.1, 0.05)))
    with session_factory() as session, session.begin():
        promote_model_version(
            session, worse, people["manager"], override_reason="new camera; old model blind"
        )
    assert active_detector_id(session_factory, project_id) == worse
    with session_factory() as session:
        metrics = session.get(ModelVersion, worse).metrics
    override = metrics[GATE_OVERRIDES_KEY][-1]
    assert override["by"] == "manager-1" and override["reason"] == "new camera; old model blind"
    assert override["gate"]["candidate"]["fnr"] == 0.2 and override["refusals"]
    assert override["at"]
    assert metrics["status_history"][-1]["override"]["reason"] == "new camera; old model blind"


def test_a_stale_evaluation_is_refused(
    session_factory: sessionmaker[Session], people: dict, register: Callable[..., int]
) -> None:
    first, second = register(), register()
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=first, user=people["manager"])
    candidate = register(gate=versus(first, rates(0.0, 0.0), rates(0.1, 0.1)))
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=second, user=people["manager"])
    with session_factory() as session, session.begin(), pytest.raises(GateRefusedError) as err:
        promote_model_version(session, candidate, people["manager"])
    assert "active model changed" in err.value.reasons[0]
    unevaluated = register()
    with session_factory() as session, session.begin(), pytest.raises(GateRefusedError) as err:
        promote_model_version(session, unevaluated, people["manager"])
    assert "no gate evaluation" in err.value.reasons[0]


def test_rollback_to_any_earlier_version_in_one_call(
    session_factory: sessionmaker[Session],
    people: dict,
    project_id: int,
    register: Callable[..., int],
) -> None:
    v1, v2, v3 = register(), register(), register()
    for version_id in (v1, v2, v3):
        with session_factory() as session, session.begin():
            activate_model_version(session, version_id=version_id, user=people["manager"])
    never_active = register()
    with session_factory() as session, session.begin():
        restored = rollback_to(session, v1, people["manager"])
        assert restored.status == "active"
    assert active_detector_id(session_factory, project_id) == v1
    assert [status(session_factory, v) for v in (v1, v2, v3)] == ["active", "retired", "retired"]
    with session_factory() as session:
        entry = session.get(ModelVersion, v1).metrics["status_history"][-1]
        assert entry["action"] == "rollback" and entry["from_version"] == 3
    with session_factory() as session, session.begin(), pytest.raises(ValueError, match="never"):
        rollback_to(session, never_active, people["manager"])
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        rollback_to(session, v2, people["inspector"])


# ------------------------------------------------------------------------- families


def test_families_keep_one_active_version_each(
    session_factory: sessionmaker[Session],
    people: dict,
    project_id: int,
    register: Callable[..., int],
) -> None:
    assert model_family("patchcore") == model_family("zero_shot_clip") == ModelFamily.DETECTOR
    detector, classifier_a, classifier_b = (
        register(),
        register("classifier"),
        register("classifier"),
    )
    explainer = register("explainer")
    for version_id in (detector, classifier_a, explainer, classifier_b):
        with session_factory() as session, session.begin():
            activate_model_version(session, version_id=version_id, user=people["manager"])
    assert status(session_factory, detector) == "active"
    assert status(session_factory, classifier_a) == "retired"
    assert status(session_factory, classifier_b) == "active"
    assert status(session_factory, explainer) == "active"
    assert active_detector_id(session_factory, project_id) == detector
    with session_factory() as session:
        assert active_version(session, project_id, "detector").id == detector
        assert active_version(session, project_id, ModelFamily.CLASSIFIER).id == classifier_b
        assert active_version(session, project_id, "explainer").id == explainer
    with session_factory() as session, session.begin():  # a classifier rollback
        rollback_to(session, classifier_a, people["manager"])
    assert status(session_factory, classifier_b) == "retired"
    assert status(session_factory, detector) == "active"


def test_candidate_comparisons_show_candidate_next_to_active(
    session_factory: sessionmaker[Session], people: dict, project_id: int, register: Callable
) -> None:
    first = register()
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=first, user=people["manager"])
    good = register(gate=versus(first, rates(0.0, 0.05), rates(0.1, 0.05)))
    bad = register(gate=versus(first, rates(0.3, 0.05), rates(0.1, 0.05)))
    register("classifier")
    with session_factory() as session:
        rows = candidate_comparisons(session, project_id)
    assert [row.version_id for row in rows] == [bad, good]
    assert rows[1].may_promote and rows[1].candidate["fnr"] == 0.0
    assert rows[1].active["fnr"] == 0.1 and rows[1].active["version_id"] == first
    assert not rows[0].may_promote and "misses more defects" in rows[0].refusals[0]
    assert rows[0].active_version_id == first
    with session_factory() as session:
        assert [row.kind for row in candidate_comparisons(session, project_id, "classifier")] == [
            "classifier"
        ]
