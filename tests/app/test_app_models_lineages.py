"""The Models page lists models (lineages) with their revisions, one action per model."""

from __future__ import annotations

from apptest_support import Workbench, add_gated_version, add_instant_updates, signed_in_app
from streamlit.testing.v1 import AppTest

import db
from adcore.gate import Rates, gate_record
from db.projects import get_project

N_UPDATES = 300


def open_models() -> AppTest:
    at = signed_in_app("manager")
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def table_with(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_a_model_with_one_revision(workbench: Workbench) -> None:
    at = open_models()

    overview = table_with(at, "Active revision")
    assert overview.to_dict("records") == [
        {
            "Model": "v1",
            "Role": "Screen (stage 1)",
            "Kind": "patchcore",
            "Status": "active",
            "Revisions": 1,
            "Active revision": "v1.0",
            "Newest revision": "v1.0",
        }
    ]
    assert [e.label for e in at.expander if e.label.startswith("v1 ")] == ["v1 (patchcore, active)"]
    revisions = table_with(at, "Made by")
    assert revisions[["Revision", "Status", "Made by"]].values.tolist() == [
        ["v1.0", "active", "training"]
    ]
    assert "revision-1" not in [s.key for s in at.selectbox]  # nothing to promote or restore
    assert at.selectbox(key="threshold_version").value == workbench.version_id


def test_hundreds_of_revisions_are_one_model_with_one_action(workbench: Workbench) -> None:
    ids = add_instant_updates(workbench, N_UPDATES)
    at = open_models()

    assert table_with(at, "Active revision")["Revisions"].tolist() == [N_UPDATES + 1]
    assert [e.label for e in at.expander if e.label.startswith("v1 ")] == ["v1 (patchcore, active)"]
    revisions = table_with(at, "Made by")
    assert len(revisions) == N_UPDATES + 1
    assert revisions["Revision"].tolist()[:2] == [f"v1.{N_UPDATES}", f"v1.{N_UPDATES - 1}"]
    assert revisions["Made by"].tolist()[:2] == ["instant update"] * 2
    assert revisions["Notes"].iloc[1] == f"update {N_UPDATES - 1}"
    # one selectbox and one button for the whole model, not one button per revision
    choice = at.selectbox(key="revision-1")
    assert len(choice.options) == N_UPDATES  # every retired revision that served
    assert [b.key for b in at.button if "revision" in (b.key or "")] == ["revision-action-1"]
    assert not any((b.key or "").startswith("rollback-") for b in at.button)

    old = ids[150]
    choice.set_value(old).run()
    button = at.button(key="revision-action-1")
    assert button.label == "Roll back to v1.150"
    button.click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        assert get_project(session, workbench.project_id).active_model_version_id == old
        assert session.get(db.ModelVersion, ids[-1]).status == "retired"
    assert any("v1.150 is the active model again" in s.value for s in at.success)


def test_a_recalibration_is_promoted_as_the_next_revision(workbench: Workbench) -> None:
    gate = gate_record(
        candidate=Rates(threshold=1.0, fnr=0.0, fpr=0.0, tp=2, tn=2),
        active=Rates(threshold=0.5, fnr=0.5, fpr=0.0, tp=1, fn=1, tn=2),
        active_version_id=workbench.version_id,
        active_version=1,
        heldout={"n_good": 2, "n_defect": 2},
    )
    recalibrated = add_gated_version(
        workbench, gate, threshold=1.0, same_model_as=workbench.version_id
    )
    at = open_models()
    assert [e.label for e in at.expander if e.label.startswith("v1 ")] == ["v1 (patchcore, active)"]
    assert at.button(key=f"promote-{recalibrated}").label == "Promote v1.1"  # the candidate card
    assert at.selectbox(key="revision-1").value == recalibrated
    button = at.button(key="revision-action-1")
    assert button.label == "Promote v1.1"
    button.click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        assert get_project(session, workbench.project_id).active_model_version_id == recalibrated
    revisions = table_with(at, "Made by")
    assert revisions[["Revision", "Status", "Made by"]].values.tolist() == [
        ["v1.1", "active", "recalibration"],
        ["v1.0", "retired", "training"],
    ]
