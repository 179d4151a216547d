"""The learning loop on the Models page: queue jobs and follow them (see model_candidates_panel).

Imported by ``pages/models.py``; not a page itself (``app.py`` reads the light
:mod:`pages.worker_status`). Everything here is UI: the work happens in the job worker
(``python -m loupe worker``) and the rules (roles, the gate) in the ``db`` functions.

The jobs panel is a fragment that re-runs every :data:`POLL_SECONDS` and reads the database
only; when a job it saw queued or running has ended, it re-runs the whole page so a new
candidate appears in the comparison.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import streamlit as st

import db
from db.jobs import enqueue_job, list_jobs, request_cancel
from db.model_lineages import version_labels
from db.projects import get_project
from pages.action_feedback import ACTION_ERRORS, flash, show_flashes
from pages.db_session import transaction
from pages.tab_state import load_user
from pages.worker_status import WORKER_COMMAND, no_worker, worker_problem
from services.scorer_training import (
    scorer_setting,
    scorer_unavailable_reason,
    set_scorer_setting,
)
from services.training.job_kinds import JobKind

if TYPE_CHECKING:
    pass

POLL_SECONDS = 2.0
JOBS_SHOWN = 10
SEEN_ACTIVE_KEY = "_jobs_seen_active"
ACTIVE_STATUSES = (db.JobStatus.QUEUED.value, db.JobStatus.RUNNING.value)
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
}


@dataclass(frozen=True)
class JobKindSpec:
    """How the page offers one job kind."""

    kind: JobKind
    label: str
    explanation: str
    icon: str


JOB_KIND_SPECS: tuple[JobKindSpec, ...] = (
    JobKindSpec(
        JobKind.REFIT_DETECTOR,
        "Retrain (refit on train + confirmed-good parts)",
        "Fits the active detector again, same kind and settings, on its training images plus "
        "every part a person labelled good. A share of the labelled parts is held out to "
        "compare the new candidate with the active model on the same parts.",
        ":material/model_training:",
    ),
    JobKindSpec(
        JobKind.RECALIBRATE_THRESHOLD,
        "Recalibrate threshold (FNR-first)",
        "Scores the labelled parts with the active detector and picks the threshold with the "
        "fewest false alarms whose miss rate stays within the project's target, checked on "
        "labelled parts it was not chosen on. It never rises above the model's calibrated "
        "threshold unless audits show passed parts hide few enough defects.",
        ":material/tune:",
    ),
    JobKindSpec(
        JobKind.TRAIN_CLASSIFIER,
        "Train classifier",
        "Trains a supervised defect classifier on the labelled parts and their defect types. "
        "It is its own model family: promoting it never replaces the detector.",
        ":material/category:",
    ),
    JobKindSpec(
        JobKind.TRAIN_FEEDBACK_SCORER,
        "Train triage model",
        "Stage 2 of the decision cascade: learns a calibrated p(defect) from the detector's "
        "score and per-image vector of the labelled parts the screen flags (audited labels "
        "weighted by their odds), in seconds, with an auto-accept threshold and out-of-fold "
        "evidence for its gate. It also trains by itself after every N reviews and at the end "
        "of a review batch; it is its own model family.",
        ":material/insights:",
    ),
)


TUNE_EXPLAINER_SPEC = JobKindSpec(
    JobKind.TUNE_EXPLAINER,
    "Tune explainer",
    "Trains a small adapter of the project's language model on the inspectors' accepted and "
    "edited explanations. It becomes an explainer candidate: promote it to use it.",
    ":material/psychology:",
)
"""Queued from the Explanations section (:mod:`pages.explanation_settings_panel`)."""

CLIP_JOB_SPECS: tuple[JobKindSpec, ...] = (
    JobKindSpec(
        JobKind.TRAIN_CLIP,
        "Start CLIP detector",
        "Starts a CLIP detector from the project's CLIP option: zero-shot (no image needed) or "
        "few-shot (a few good images become references). It becomes a detector candidate.",
        ":material/visibility:",
    ),
    JobKindSpec(
        JobKind.TUNE_CLIP,
        "Adapt CLIP with LoRA",
        "Trains small LoRA adapters and learnable prompts of the active CLIP detector on the "
        "labelled parts (CLIP itself stays frozen). It becomes a detector candidate.",
        ":material/auto_fix_high:",
    ),
)
"""Queued from the CLIP section (:mod:`pages.clip_settings_panel`)."""

INSTANT_UPDATE_SPEC = JobKindSpec(
    JobKind.INSTANT_UPDATE,
    "Instant update (learn confirmed good parts)",
    "Adds the parts inspectors confirmed good on a flagged verdict to the active model's memory, "
    "as a new active version, then re-scores the waiting parts.",
    ":material/bolt:",
)
"""Queued by reviews (:mod:`services.reviewing`), never from this page."""


def registered_kinds() -> list[str]:
    """The job kinds the worker can run (imports the job registry lazily)."""
    from workers.registry import known_kinds

    return known_kinds()


# --------------------------------------------------------------------------- callbacks


def queue_clicked(
    project_id: int, kind: str, label: str, extra: dict[str, object] | None = None
) -> None:
    """Queue a job of ``kind`` for the project with the options the form holds (and ``extra``)."""
    parameters: dict[str, object] = dict(extra or {})
    if kind == JobKind.REFIT_DETECTOR:
        parameters["holdout_fraction"] = float(st.session_state.get("job_holdout", 20)) / 100.0
        folder = (st.session_state.get("job_train_folder") or "").strip()
        if folder:
            parameters["train_folder"] = folder
    try:
        with transaction() as session:
            job = enqueue_job(
                session,
                kind=kind,
                parameters=parameters,
                project_id=project_id,
                user=load_user(session),
            )
            job_id = job.id
    except ACTION_ERRORS as err:
        flash(f"Could not queue {label!r}: {err}", "error")
        return
    flash(f"Queued job #{job_id}: {label}. Follow it under Jobs.")


def scorer_every_changed(project_id: int) -> None:
    """Save the project's "train the scorer after every N reviews" option."""
    every = int(st.session_state.get("scorer_every_n_reviews") or 0)
    try:
        with transaction() as session:
            stored = scorer_setting(session.get(db.Project, project_id))
            set_scorer_setting(
                session,
                project_id,
                dataclasses.replace(stored, every_n_reviews=every),
                user=load_user(session),
            )
    except ACTION_ERRORS as err:
        flash(f"Could not save the scorer option: {err}", "error")
        return
    flash(
        f"The triage model now trains after every {every} reviews."
        if every
        else "The triage model now trains only at the end of a review batch."
    )


def cancel_clicked(job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    try:
        with transaction() as session:
            job = request_cancel(session, job_id=job_id, user=load_user(session))
            status = job.status
    except ACTION_ERRORS as err:
        flash(f"Could not cancel job #{job_id}: {err}", "error")
        return
    if status == db.JobStatus.CANCELLED:
        flash(f"Job #{job_id} was cancelled.")
    elif status == db.JobStatus.RUNNING:
        flash(f"Job #{job_id} was asked to stop; it stops at its next step.", "info")
    else:
        flash(f"Job #{job_id} had already ended ({status}).", "info")


# --------------------------------------------------------------------------- sections


def improve_section(project_id: int, has_active_detector: bool) -> None:
    """Buttons that queue the learning-loop jobs, with what each one does."""
    st.subheader("Improve the model")
    st.caption(
        "Jobs run in the background worker and never change the active model: each one "
        "makes a candidate you compare and promote below."
    )
    kinds = set(registered_kinds())
    specs = [spec for spec in JOB_KIND_SPECS if spec.kind in kinds]
    with transaction() as session:
        scorer_reason = scorer_unavailable_reason(session, project_id)
        every = scorer_setting(get_project(session, project_id)).every_n_reviews
    with st.expander("Retraining options"):
        st.slider(
            "Labelled parts held out for the comparison (%)",
            5,
            50,
            20,
            5,
            key="job_holdout",
            help="Held-out parts are not trained on; both models are scored on them.",
        )
        st.text_input(
            "Folder of the original training images (only if they moved)",
            key="job_train_folder",
            placeholder="/data/line-3/good",
        )
        st.number_input(
            "Train the triage model after every N reviews (0: only at the end of a batch)",
            0,
            100_000,
            every,
            key="scorer_every_n_reviews",
            on_change=scorer_every_changed,
            args=(project_id,),
        )
    for spec in specs:
        reason = None
        if spec.kind != JobKind.TRAIN_CLASSIFIER and not has_active_detector:
            reason = "Train a model first."
        elif spec.kind == JobKind.TRAIN_FEEDBACK_SCORER:
            reason = scorer_reason
        left, right = st.columns([2, 3], vertical_alignment="center")
        left.button(
            spec.label,
            key=f"queue-{spec.kind}",
            icon=spec.icon,
            on_click=queue_clicked,
            args=(project_id, spec.kind, spec.label),
            disabled=reason is not None,
            help=reason,
            width="stretch",
        )
        right.caption(spec.explanation if reason is None else f"{spec.explanation} {reason}")


def worker_notice() -> None:
    """The job worker's heartbeat age; when none is alive, that it is being restarted (or how)."""
    from db.job_workers import live_workers

    with transaction() as session:
        workers = live_workers(session)
        now = db.utcnow()
    if workers:
        age = max(0.0, (now - max(worker.heartbeat_at for worker in workers)).total_seconds())
        more = f" ({len(workers)} workers alive)" if len(workers) > 1 else ""
        st.caption(
            f":material/check_circle: Job worker alive, last heartbeat {age:.0f} s ago{more}."
        )
        return
    manual = (
        f"run `{WORKER_COMMAND}` with the same `LOUPE_DATA_DIR` / `LOUPE_DATABASE_URL` as the app"
    )
    if no_worker():
        st.warning(
            f"No job worker is running: queued jobs wait until one starts. On the server, "
            f"{manual}.",
            icon=":material/warning:",
        )
        return
    problem = worker_problem(db.database_url())
    if problem:
        st.warning(
            f"No job worker, and starting one failed ({problem}). The app tries again every few "
            f"seconds; meanwhile queued jobs wait, or on the server {manual}.",
            icon=":material/warning:",
        )
        return
    st.info("No job worker: restarting it…", icon=":material/autorenew:")


def when(moment: datetime | None) -> str:
    """``moment`` as ``YYYY-mm-dd HH:MM:SS``, or an empty string for None."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _job_row(job: db.Job, creator: str | None, labels: dict[int, str]) -> None:
    known = (*JOB_KIND_SPECS, TUNE_EXPLAINER_SPEC, *CLIP_JOB_SPECS, INSTANT_UPDATE_SPEC)
    spec = next((s for s in known if s.kind == job.kind), None)
    title = spec.label if spec else job.kind
    with st.container(border=True, key=f"job-{job.id}"):
        head, action = st.columns([5, 1], vertical_alignment="center")
        head.markdown(f"{STATUS_ICONS.get(job.status, '')} **#{job.id} {title}** · {job.status}")
        if job.status in ACTIVE_STATUSES:
            action.button(
                "Cancel",
                key=f"cancel-job-{job.id}",
                on_click=cancel_clicked,
                args=(job.id,),
                disabled=bool(job.cancel_requested),
                icon=":material/stop_circle:",
            )
        st.progress(float(job.progress or 0.0), text=job.message or job.status)
        facts = [f"queued {when(job.created_at)}"]
        if creator:
            facts.append(f"by {creator}")
        if job.device:
            facts.append(f"device {job.device}")
        if job.peak_memory_mb is not None:
            facts.append(f"peak memory {job.peak_memory_mb:.0f} MiB")
        if job.result_model_version_id is not None:
            label = labels.get(job.result_model_version_id)
            facts.append(f"made {label}" if label else "made a model version")
        st.caption(" · ".join(facts))
        if job.log_tail:
            with st.expander("Log"):
                st.code(job.log_tail, language=None)


@st.fragment(run_every=POLL_SECONDS)
def jobs_panel(project_id: int) -> None:
    """The project's recent jobs, polled from the database every :data:`POLL_SECONDS`."""
    show_flashes()  # messages of the Cancel buttons, which re-run only this fragment
    with transaction() as session:
        jobs = list_jobs(session, project_id=project_id, limit=JOBS_SHOWN)
        creators = {job.id: job.created_by.name if job.created_by else None for job in jobs}
        versions = version_labels(session, project_id)
    active_now = {job.id for job in jobs if job.status in ACTIVE_STATUSES}
    seen = st.session_state.get(SEEN_ACTIVE_KEY, {}).get(project_id, set())
    st.session_state.setdefault(SEEN_ACTIVE_KEY, {})[project_id] = active_now
    st.subheader("Jobs")
    worker_notice()
    if not jobs:
        st.caption("No jobs yet for this project.")
    for job in jobs:
        _job_row(job, creators.get(job.id), versions)
    if seen - active_now:
        st.rerun()  # a job ended: refresh the whole page (new candidates, versions)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
