"""The decision cascade on the Models page: stage 2's state, and the managers' switch and budget."""

from __future__ import annotations

from apptest_support import MANAGER, Workbench, signed_in_app
from streamlit.testing.v1 import AppTest

import db
from adcore.feedback_scorer.triage import TriageEvidence, min_defects
from db.model_metrics import ScorerDetector, new_version_metrics
from db.model_versions import activate_model_version, register_model_version
from db.review_queue import record_review
from pages.cascade_panel import MISS_RATE_CAPTION, budget_key, enabled_key
from services.scorer_training import ScorerSetting, scorer_setting, set_scorer_setting
from services.training.scorer_jobs import triage_gate_record

EVIDENCE = TriageEvidence(
    folds=5,
    n_goods=61,
    n_defects=400,
    accepted_goods_share=0.48,
    accepted_goods=29,
    accepted_defects=1,
    accepted_defects_share=0.0025,
    defect_upper=0.014,
    budget=0.02,
    defects_needed=0,
)


def open_models() -> AppTest:
    at = signed_in_app("manager")
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def stored_setting(workbench: Workbench) -> ScorerSetting:
    with workbench.factory() as session:
        return scorer_setting(session.get(db.Project, workbench.project_id))


def off_notice(at: AppTest) -> str:
    return next(w.value for w in at.warning if "Triage model (stage 2): OFF" in w.value)


def add_triage_version(
    workbench: Workbench, evidence: TriageEvidence, *, activate: bool, threshold: float = 0.3
) -> int:
    """Register a triage model (a feedback scorer) on the workbench's detector; return its id."""
    with workbench.factory() as session, session.begin():
        detector = session.get(db.ModelVersion, workbench.version_id)
        facts = {"triage": evidence.to_json(), "screen_threshold": detector.threshold}
        metrics = new_version_metrics(
            facts,
            gate=triage_gate_record(evidence, None, screen=float(detector.threshold)),
            scorer_detector=ScorerDetector(detector.id, detector.version, detector.kind),
        )
        version = register_model_version(
            session,
            project_id=workbench.project_id,
            kind="feedback_scorer",
            artifact_path="unused",  # the section never loads the model
            metrics=metrics,
            threshold=threshold,
            training_snapshot={},
        )
        if activate:
            activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def test_without_a_triage_model_it_says_how_many_flagged_defects_are_needed(
    workbench: Workbench,
) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        record_review(
            session, image_id=workbench.image_ids["scratch-0.png"], user=manager, label="defect"
        )
        threshold = session.get(db.ModelVersion, workbench.version_id).threshold

    at = open_models()
    assert any(h.value == "Decision cascade" for h in at.subheader)
    assert any(
        f"detector v1.0 (patchcore) at threshold **{threshold:.4g}**" in m.value
        for m in at.markdown
    )
    needed = min_defects(0.01) - 1  # the budget is the project's target miss rate, 1%
    assert (
        f"No triage model yet: it needs {needed} more labelled flagged defects (has 1 defects "
        "and 0 good parts among flagged parts; budget 1.0%)." in off_notice(at)
    )
    assert any(c.value == MISS_RATE_CAPTION for c in at.caption)
    assert at.toggle(key=enabled_key(workbench.project_id)).value is True


def test_a_refused_candidate_says_why_stage_2_stays_off(workbench: Workbench) -> None:
    refused = TriageEvidence(**{**EVIDENCE.__dict__, "accepted_goods": 0})
    add_triage_version(workbench, refused, activate=False)

    at = open_models()
    notice = off_notice(at)
    assert "The latest triage candidate v2.0 was refused by its gate: Out of fold" in notice
    assert "auto-accept no flagged good part" in notice


def test_a_manager_switches_stage_2_off_and_sets_the_budget(workbench: Workbench) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        set_scorer_setting(session, workbench.project_id, ScorerSetting(10), user=manager)
    at = open_models()

    at.toggle(key=enabled_key(workbench.project_id)).set_value(False).run()
    assert not at.exception, at.exception
    assert stored_setting(workbench) == ScorerSetting(10, None, False)
    assert any("Stage 2 is off: every flagged part goes to a human" in i.value for i in at.info)
    assert "Switched off by a manager" in off_notice(at)

    at.number_input(key=budget_key(workbench.project_id)).set_value(2.5)
    at.button(key="save_triage_budget").click().run()
    assert not at.exception, at.exception
    assert stored_setting(workbench) == ScorerSetting(10, 0.025, False)
    assert any("auto-accept budget is now 2.5%" in s.value for s in at.success)

    at.number_input(key=budget_key(workbench.project_id)).set_value(0.05)  # below 0.1%
    at.button(key="save_triage_budget").click().run()
    assert not at.exception, at.exception
    assert stored_setting(workbench) == ScorerSetting(10, 0.025, False)
    assert any(
        "Could not change the auto-accept budget: The auto-accept budget must be between "
        "0.1% and 50%" in e.value
        for e in at.error
    )
    assert at.number_input(key=budget_key(workbench.project_id)).value == 2.5

    at.number_input(key=budget_key(workbench.project_id)).set_value(None)
    at.button(key="save_triage_budget").click().run()
    assert stored_setting(workbench) == ScorerSetting(10, None, False)
    assert any("now the project's target miss rate" in s.value for s in at.success)


def test_an_active_triage_model_shows_stage_2_on_with_its_evidence(
    workbench: Workbench,
) -> None:
    add_triage_version(workbench, EVIDENCE, activate=True, threshold=0.35)

    at = open_models()
    on = next(s.value for s in at.success if "Triage model (stage 2): ON" in s.value)
    assert "Triage model v2.0 auto-accepts a flagged part" in on
    assert "auto-accept threshold **0.35**" in on
    assert any(
        c.value.startswith(
            "Out of fold it would have auto-accepted 48% of 61 flagged good parts and 1 of "
            "400 flagged defects"
        )
        for c in at.caption
    )
    assert not any("Triage model (stage 2): OFF" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "Role" in d.value.columns)
    assert dict(zip(table["Model"], table["Role"], strict=True)) == {
        "v2": "Triage model (stage 2)",
        "v1": "Screen (stage 1)",
    }

    # Switched off, the active model stays active but does not decide.
    at.toggle(key=enabled_key(workbench.project_id)).set_value(False).run()
    assert "Triage model v2.0 stays active but does not decide" in off_notice(at)
