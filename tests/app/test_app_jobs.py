"""The learning loop on the Models page: queue, follow and cancel jobs; gate, promote, roll back.

Jobs are run in process by a :class:`workers.worker.JobWorker` (``run(once=True)``) on the
test database; the app itself never starts a worker here (``LOUPE_NO_WORKER=1``), except in the
tests of its worker supervisor, which replace the launcher by a stand-in.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import streamlit as st
from apptest_support import (
    INSPECTOR,
    MANAGER,
    Workbench,
    add_gated_version,
    open_app,
    signed_in_app,
)
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

import db
import workers.launcher
from adcore.gate import Rates, gate_record
from db.job_workers import register_worker, this_host
from db.jobs import enqueue_job, list_jobs
from db.model_versions import GateRefusedError, promote_model_version
from db.models.jobs import Worker
from db.projects import get_project
from db.review_queue import record_review
from workers.supervisor import stop_supervisors, supervisor_for
from workers.worker import JobWorker


def open_models(role: str = "manager") -> AppTest:
    at = signed_in_app(role)
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def jobs_of(workbench: Workbench) -> list[db.Job]:
    with workbench.factory() as session:
        return list_jobs(session, project_id=workbench.project_id)


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def label_every_part(workbench: Workbench) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        for name, image_id in workbench.image_ids.items():
            label = "defect" if name.startswith("scratch") else "good"
            record_review(session, image_id=image_id, user=manager, label=label)


def add_candidate(workbench: Workbench, *, passed: bool) -> int:
    """Register v2 with a gate record against v1 that passes or refuses (FNR worse)."""
    active = Rates(threshold=0.5, fnr=0.0, fpr=0.0, tp=2, tn=2)
    if passed:
        candidate = Rates(threshold=0.6, fnr=0.0, fpr=0.0, tp=2, tn=2)
    else:
        candidate = Rates(threshold=0.9, fnr=0.5, fpr=0.0, tp=1, fn=1, tn=2)
    gate = gate_record(
        candidate=candidate,
        active=active,
        active_version_id=workbench.version_id,
        active_version=1,
        heldout={"n_good": 2, "n_defect": 2, "n_unreadable": 0},
    )
    return add_gated_version(workbench, gate, threshold=candidate.threshold)


def comparison(at: AppTest, label: str) -> dict[str, tuple[str, str]]:
    """Candidate ``label``'s table beside the active v1.0: row name -> (candidate, active)."""
    table = next(d.value for d in at.dataframe if f"Candidate {label}" in d.value.columns)
    assert list(table.columns) == ["", f"Candidate {label}", "Active v1.0"]
    return {row.iloc[0]: (row.iloc[1], row.iloc[2]) for _, row in table.iterrows()}


def roll_back_to_v1(at: AppTest, workbench: Workbench) -> None:
    """Choose v1.0 in model v1's section and press its one action, "Roll back to v1.0"."""
    at.selectbox(key="revision-1").set_value(workbench.version_id).run()
    button = at.button(key="revision-action-1")
    assert button.label == "Roll back to v1.0"
    button.click().run()


def active_id(workbench: Workbench) -> int | None:
    with workbench.factory() as session:
        return get_project(session, workbench.project_id).active_model_version_id


# --------------------------------------------------------------------------- jobs


def test_manager_queues_a_refit_and_the_panel_lists_it(workbench: Workbench) -> None:
    at = open_models()
    assert not jobs_of(workbench)
    assert any("No job worker is running" in w.value for w in at.warning)

    button = at.button(key="queue-refit_detector")
    assert button.label == "Retrain (refit on train + confirmed-good parts)"
    button.click().run()

    assert not at.exception, at.exception
    [job] = jobs_of(workbench)
    assert (job.kind, job.status) == ("refit_detector", "queued")
    assert job.parameters["holdout_fraction"] == pytest.approx(0.2)
    assert job.created_by_id == workbench.users[MANAGER]
    assert any(f"Queued job #{job.id}" in s.value for s in at.success)
    assert any(f"#{job.id} Retrain" in t and "queued" in t for t in texts(at))
    assert at.button(key=f"cancel-job-{job.id}").label == "Cancel"


def test_recalibration_is_offered_and_queued(workbench: Workbench) -> None:
    at = open_models()
    at.button(key="queue-recalibrate_threshold").click().run()

    assert not at.exception, at.exception
    assert [(j.kind, j.status) for j in jobs_of(workbench)] == [("recalibrate_threshold", "queued")]


def test_cancelling_a_queued_job_cancels_it(workbench: Workbench) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        job_id = enqueue_job(
            session,
            kind="refit_detector",
            parameters={},
            project_id=workbench.project_id,
            user=manager,
        ).id
    at = open_models()

    at.button(key=f"cancel-job-{job_id}").click().run()

    assert not at.exception, at.exception
    [job] = jobs_of(workbench)
    assert job.status == "cancelled"
    assert job.cancel_requested
    assert any(f"#{job_id} Retrain" in t and "cancelled" in t for t in texts(at))
    assert f"cancel-job-{job_id}" not in [b.key for b in at.button]


def test_an_inspector_cannot_open_models_and_cannot_queue(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    with pytest.raises(ValueError):
        at.switch_page("pages/models.py")

    with pytest.raises(db.PermissionDenied), workbench.factory() as session, session.begin():
        inspector = session.get(db.User, workbench.users[INSPECTOR])
        enqueue_job(
            session,
            kind="refit_detector",
            parameters={},
            project_id=workbench.project_id,
            user=inspector,
        )
    assert not jobs_of(workbench)


# --------------------------------------------------------------------------- gate


def test_a_refused_candidate_shows_why_and_needs_a_written_override(
    workbench: Workbench,
) -> None:
    v2 = add_candidate(workbench, passed=False)
    at = open_models()

    refusal = next(e.value for e in at.error if e.value.startswith("The gate refuses it"))
    assert "It misses more defects" in refusal
    rates = comparison(at, "v2.0")
    assert rates["Miss rate (FNR)"] == ("50.0%", "0.0%")
    assert rates["Held-out defects"] == ("2", "2")
    assert rates["Threshold"] == ("0.9000", "0.5000")
    assert at.button(key=f"promote-{v2}").disabled

    with pytest.raises(GateRefusedError), workbench.factory() as session, session.begin():
        promote_model_version(session, v2, session.get(db.User, workbench.users[MANAGER]))
    at.button(key=f"override-{v2}").click().run()  # no reason written
    assert any("Write why you promote v2" in e.value for e in at.error)
    assert active_id(workbench) == workbench.version_id

    at.text_area(key=f"override-reason-{v2}").input("Line 3 needs the new lighting model.")
    at.button(key=f"override-{v2}").click().run()

    assert not at.exception, at.exception
    assert active_id(workbench) == v2
    with workbench.factory() as session:
        metrics = session.get(db.ModelVersion, v2).metrics
    [override] = metrics["gate_overrides"]
    assert override["reason"] == "Line 3 needs the new lighting model."
    assert override["by"] == MANAGER
    assert any("misses more defects" in r for r in override["refusals"])
    last = metrics["status_history"][-1]
    assert last["status"] == "active" and last["action"] == "promote"
    assert last["override"]["reason"] == "Line 3 needs the new lighting model."


def test_rollback_reactivates_the_earlier_version(workbench: Workbench) -> None:
    v2 = add_candidate(workbench, passed=True)
    at = open_models()
    assert any(s.value.startswith("The gate passes") for s in at.success)
    at.button(key=f"promote-{v2}").click().run()
    assert active_id(workbench) == v2
    assert f"promote-{v2}" not in [b.key for b in at.button]  # no longer a candidate

    roll_back_to_v1(at, workbench)

    assert not at.exception, at.exception
    assert active_id(workbench) == workbench.version_id
    with workbench.factory() as session:
        assert session.get(db.ModelVersion, v2).status == "retired"
        history = session.get(db.ModelVersion, workbench.version_id).metrics["status_history"]
    assert history[-1]["action"] == "rollback" and history[-1]["from_version"] == 2


# --------------------------------------------------------------------------- a real job


def test_a_recalibration_job_runs_and_its_candidate_is_compared_and_promoted(
    workbench: Workbench, app_env: Path, tmp_path: Path
) -> None:
    label_every_part(workbench)
    at = open_models()
    at.button(key="queue-recalibrate_threshold").click().run()
    [queued] = jobs_of(workbench)

    worker = JobWorker(
        workbench.factory, data_dir=app_env, models_root=tmp_path / "models", device="cpu"
    )
    assert worker.run(once=True) == 1
    at.run()

    assert not at.exception, at.exception
    [job] = jobs_of(workbench)
    assert job.id == queued.id
    assert job.status == "succeeded", (job.message, job.log_tail)
    assert job.device == "cpu" and job.result_model_version_id is not None
    candidate_id = job.result_model_version_id
    assert any(f"#{job.id} Recalibrate" in t and "succeeded" in t for t in texts(at))
    rates = comparison(at, "v1.1")  # a recalibration: the next revision of model v1
    with workbench.factory() as session:  # checked on the share it was not chosen on
        checked = session.get(db.ModelVersion, candidate_id).training_snapshot["heldout"]
    n_defect = sum(entry["label"] == "defect" for entry in checked)
    n_good = len(checked) - n_defect
    assert n_defect and n_good and len(checked) < 6  # of the 3 + 3 labelled parts
    assert rates["Held-out defects"] == (str(n_defect),) * 2
    assert rates["Held-out good"] == (str(n_good),) * 2

    with workbench.factory() as session:
        passed = session.get(db.ModelVersion, candidate_id).metrics["gate"]["decision"]["passed"]
    promote = at.button(key=f"promote-{candidate_id}")
    assert promote.disabled is not passed
    if passed:
        promote.click().run()
    else:
        at.text_area(key=f"override-reason-{candidate_id}").input("Accepted after review.")
        at.button(key=f"override-{candidate_id}").click().run()
    assert not at.exception, at.exception
    assert active_id(workbench) == candidate_id

    roll_back_to_v1(at, workbench)
    assert active_id(workbench) == workbench.version_id


# --------------------------------------------------------------------------- the worker


@pytest.fixture(autouse=True)
def no_supervisor_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop the worker supervisors a test started (before its stand-in launcher is undone)."""
    yield
    stop_supervisors()


def fake_launcher(calls: list) -> Callable[..., int]:
    """A stand-in for workers.launcher.ensure_worker_running: records, starts nothing.

    Like the real one while its worker starts, it launches once and then says one is starting.
    """

    def launch(data_dir, database_url, *, models_root=None, **options):
        calls.append((Path(data_dir), database_url, Path(models_root)))
        return 4242 if len(calls) == 1 else None

    return launch


def test_the_app_starts_one_worker_supervisor_per_server_process(
    app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(workers.launcher, "ensure_worker_running", fake_launcher(calls))
    monkeypatch.delenv("LOUPE_NO_WORKER")

    first = open_app().run()
    open_app().run()  # another browser session of the same server process
    st.cache_resource.clear()  # even a cleared cache does not start a second one
    open_app().run()

    assert not first.exception, first.exception
    assert not first.sidebar.warning
    assert calls[0] == (app_env, db.database_url(), tmp_path / "models")
    supervisor = supervisor_for(db.database_url())
    assert supervisor is not None and supervisor.running
    assert supervisor.status.launched_pid == 4242


def test_no_worker_is_started_with_loupe_no_worker(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(workers.launcher, "ensure_worker_running", fake_launcher(calls))

    open_app().run()

    assert calls == [] and supervisor_for(db.database_url()) is None


def test_a_failed_worker_start_warns_in_the_sidebar_and_the_app_works(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise OSError("read-only data directory")

    monkeypatch.setattr(workers.launcher, "ensure_worker_running", broken)
    monkeypatch.delenv("LOUPE_NO_WORKER")

    at = open_app().run()

    assert not at.exception, at.exception
    [warning] = [w.value for w in at.sidebar.warning]
    assert "OSError: read-only data directory" in warning
    assert "python -m loupe worker" in warning and "tries again" in warning
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]


def test_the_jobs_panel_shows_the_worker_restarting_then_its_heartbeat_age(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(workers.launcher, "ensure_worker_running", fake_launcher(calls))
    monkeypatch.delenv("LOUPE_NO_WORKER")
    at = open_models()
    assert calls  # the supervisor launched one at start-up
    assert any("No job worker: restarting it" in i.value for i in at.info)
    assert not any("No job worker is running" in w.value for w in at.warning)

    sleeper = subprocess.Popen(["sleep", "60"])  # a worker process that registered 3 s ago
    try:
        register_worker(workbench.factory, f"{this_host()}:{sleeper.pid}:test")
        with workbench.factory() as session, session.begin():
            session.execute(update(Worker).values(heartbeat_at=db.utcnow() - timedelta(seconds=3)))
        at.run()
    finally:
        sleeper.kill()
        sleeper.wait()

    assert not at.exception, at.exception
    notes = [c.value for c in at.caption]
    [age] = [int(m[1]) for n in notes if (m := re.search(r"alive, last heartbeat (\d+) s ago", n))]
    assert 3 <= age < 60  # beat 3 s before the run; a minute without a beat would be dead
    assert not any("No job worker" in i.value for i in at.info)


def test_the_jobs_panel_says_how_to_start_a_worker_when_the_app_may_not(
    workbench: Workbench,
) -> None:
    at = open_models()  # LOUPE_NO_WORKER=1
    [warning] = [w.value for w in at.warning if "No job worker is running" in w.value]
    assert "python -m loupe worker" in warning


def test_an_explainer_candidate_shows_rouge_and_fact_check_beside_the_untuned_model(
    workbench: Workbench,
) -> None:
    from adcore.explain.lora_tuning import Evaluation
    from services.training.explainer_jobs import explainer_gate_record

    gate = explainer_gate_record(
        tuned=Evaluation(rouge_l=0.74, fact_check_pass_rate=0.9, n=20, seconds=1, generations=()),
        untuned=Evaluation(
            rouge_l=0.33, fact_check_pass_rate=0.65, n=20, seconds=1, generations=()
        ),
        active=None,
        active_facts=None,
        n_heldout=20,
    )
    version_id = add_gated_version(workbench, gate, kind="explainer", threshold=None)
    at = open_models()

    table = next(d.value for d in at.dataframe if "Untuned model" in d.value.columns)
    assert list(table.columns) == ["", "Candidate v2.0", "Untuned model"]
    rows = {row.iloc[0]: (row.iloc[1], row.iloc[2]) for _, row in table.iterrows()}
    assert rows["ROUGE-L vs inspectors' notes"] == ("0.740", "0.330")
    assert rows["Fact-check pass rate"] == ("90.0%", "65.0%")
    assert rows["Held-out notes"] == ("20", "20")
    refusal = next(e.value for e in at.error if e.value.startswith("The gate refuses it"))
    assert "fact-check" in refusal  # 90% < the 95% the gate asks for
    assert at.button(key=f"promote-{version_id}").disabled
