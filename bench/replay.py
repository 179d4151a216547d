"""Replay benchmark: the product's own review-and-learn loop on real data, oracle inspector.

Nothing here decides a verdict, a review or a model: every step calls the function the
workbench calls, in-process, on a temporary data directory and SQLite database
(:func:`db.init_db`, :func:`db.make_session_factory`):

1. A project, a manager and an inspector. The first model is
   :func:`services.model_management.train_first_model` (PatchCore) on the train split, as the
   Models page does; it becomes the active detector.
2. The test split is streamed once in a seeded shuffled order (``--seed``). Each part is
   decided by the scoring service (:class:`services.scoring.predictor.Predictor`) with the
   project's *active* detector, loaded from its artifact as the Inspect page loads it
   (reloaded whenever another version becomes active), with a seeded ``audit_rng`` for the
   audit draws, and stored by :func:`services.inspection.inspect_uploads`. The decision
   actually made is the verdict of the stored :class:`db.Prediction`.
3. The oracle inspector (the ground-truth label) reviews exactly what the product's review
   queue offers: after a part is inspected, if it is in :func:`db.review_queue.review_queue`
   (flagged, near the threshold or an audit sample), its true label is recorded with
   :func:`services.reviewing.label_part`, as the Review and Inspect pages record it: the
   review, then what it calls for (a recalibration when an audit finds a missed defect, the
   feedback scorer's training rule, and for a Good on a flagged part the project's
   ``instant_update`` job: the instant update, then the waiting parts re-scored).
4. As a manager would, a ``recalibrate_threshold`` job is queued every
   ``--recalibrate-every`` reviews and a ``refit_detector`` job every ``--refit-every``
   reviews (0: never; its ``train_folder`` parameter points at the train split, which is not
   stored in Loupe). Every queued job (also the automatic ones and the instant updates) is
   run by the product's worker (:class:`workers.worker.JobWorker`, ``run(once=True)``) in the
   order it was queued, and
   each candidate is promoted with :func:`db.model_versions.promote_model_version` as the
   manager, never overriding: a candidate whose gate refuses stays a candidate.

Measured (see ``bench/RESULTS_replay.md``): per window of ``--window`` streamed parts the FNR
and FPR of the stored verdicts, the share of parts reviewed (audits included) and the reviews so
far, next to the frozen start model (version 1 at its own threshold). When the reviews reach
``--snapshot-reviews``: on the parts not yet streamed, AUROC and the FPR at the FNR-first
threshold (:func:`adcore.thresholds.select_threshold`, target ``--target-fnr``, on their true
labels) of the start model vs the current decision maker (the active detector, and the active
feedback scorer's p(defect) when one is active and fits it). Scores come from the detectors'
own ``predict`` (the start model's scores of every test part are computed once, up front).

Writes ``bench/out/replay-<name>.json`` and ``bench/replay_<name>.png``; ``--render`` rewrites
``bench/RESULTS_replay.md`` from every ``bench/out/replay-*.json``. A run with ``--max-test``
is a smoke run, named ``<name>-smoke`` unless ``--name`` is given.

Usage (from the repository root):
    nice -n 10 .venv/bin/python bench/replay.py --dataset ../shared/datasets/magnetic_tile \
        --max-train 200
    nice -n 10 .venv/bin/python bench/replay.py --dataset elpv:mono
    .venv/bin/python bench/replay.py --render
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))

SUMMARY_KEYS = (
    "dataset",
    "n_test",
    "reviews_at_snapshot",
    "fpr_at_fnr1_start",
    "fpr_at_fnr1_after",
    "auroc_start",
    "auroc_after",
    "stream_fnr_after_100",
    "max_window_fnr_after_100",
    "review_share_first_window",
    "review_share_last_window",
)
from replay_figures import compare_passes, loop_estimates, safe_baseline  # noqa: E402

SAFETY_AFTER = 100  # parts: the safety figures count the stream after the first 100 parts
STAGE1_SUFFIX = "-stage1"  # the name of a run's stage-2-off pass


def _clean(value: Any) -> Any:
    """JSON-safe: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def dataset_name(spec: str) -> str:
    """A file-name-safe name for a dataset spec (``elpv:mono`` -> ``elpv-mono``)."""
    text = spec.strip().rstrip("/")
    if text.lower().startswith("elpv:"):
        return "elpv-" + text.split(":", 1)[1].strip().lower()
    return Path(text).name.lower().replace("_", "-").replace(" ", "-")


def default_image_size(spec: str) -> int:
    """224 px for ELPV (as in ``bench/RESULTS.md``), 256 px for folders (magnetic tile)."""
    return 224 if spec.strip().lower().startswith("elpv:") else 256


# --------------------------------------------------------------------------- the lab


@dataclass
class Lab:
    """The temporary workbench: database, users, project, worker, folders.

    Attributes:
        factory: The session factory.
        project_id: The project.
        manager_id: The manager (queues jobs, promotes candidates).
        inspector_id: The oracle inspector (reviews).
        data_dir: The data directory (images, maps, the SQLite file).
        models_root: Where model versions are saved.
        train_folder: Links to the train split (the refit job's ``train_folder``).
        worker: The product's job worker.
    """

    factory: Any
    project_id: int
    manager_id: int
    inspector_id: int
    data_dir: Path
    models_root: Path
    train_folder: Path
    worker: Any


def make_lab(tmp: Path, train_paths: Sequence[Path], args: argparse.Namespace) -> Lab:
    """Point Loupe at ``tmp`` and create the project, its users and a CPU worker."""
    data_dir, models_root = tmp / "data", tmp / "models"
    os.environ["LOUPE_DATA_DIR"] = str(data_dir)
    os.environ["LOUPE_MODELS_DIR"] = str(models_root)
    os.environ["LOUPE_DEVICE"] = "cpu"
    os.environ["LOUPE_NO_WORKER"] = "1"
    for name in ("LOUPE_DATABASE_URL", "LOUPE_RAY_ADDRESS", "LOUPE_INSTANT_LEARNING"):
        os.environ.pop(name, None)
    data_dir.mkdir(parents=True)
    models_root.mkdir(parents=True)
    train_folder = tmp / "train"
    train_folder.mkdir()
    for i, path in enumerate(train_paths):
        (train_folder / f"{i:05d}-{Path(path).name}").symlink_to(Path(path).resolve())

    import db
    from services.project_settings import set_audit_share
    from services.scorer_training import ScorerSetting, set_scorer_setting
    from workers.worker import JobWorker

    factory = db.make_session_factory(db.init_db())
    password = secrets.token_urlsafe(16)
    with factory() as session, session.begin():
        manager = db.create_user(session, "manager-1", password, "manager")
        inspector = db.create_user(session, "inspector-1", password, "inspector")
        project = db.create_project(
            session, name="replay", object_name="part", target_fnr=args.target_fnr, user=manager
        )
        if args.audit_share is not None:
            set_audit_share(session, project.id, args.audit_share, user=manager)
        if args.stage2 == "off" or args.triage_budget is not None:  # the Models page's option
            set_scorer_setting(
                session,
                project.id,
                ScorerSetting(enabled=args.stage2 != "off", budget=args.triage_budget),
                user=manager,
            )
        ids = project.id, manager.id, inspector.id
    worker = JobWorker(
        factory,
        data_dir=data_dir,
        models_root=models_root,
        device="cpu",
        poll_interval=0.05,
        backend=RecordingBackend(),
    )
    return Lab(factory, *ids, data_dir, models_root, train_folder, worker)


class RecordingBackend:
    """The worker's local backend, keeping what each job function returned (its facts)."""

    name = "local"

    def __init__(self) -> None:
        self.outcomes: dict[int, Any] = {}

    def run(self, function: Any, ctx: Any) -> Any:
        """Call ``function(ctx)`` and remember what it returned under the job's id."""
        outcome = function(ctx)
        self.outcomes[ctx.job_id] = outcome
        return outcome


def user(session: Any, user_id: int) -> Any:
    """The user row ``user_id`` in ``session``."""
    from db import User

    return session.get(User, user_id)


@dataclass
class ActiveModels:
    """The project's active detector (loaded) and feedback scorer, reloaded when they change."""

    detector_id: int | None = None
    detector_version: int | None = None
    detector: Any = None
    scorer_version: int | None = None
    loads: int = 0
    load_seconds: list[float] = field(default_factory=list)

    def refresh(self, lab: Lab) -> None:
        """Load the active detector again if another version became active."""
        from adcore.detectors.registry import load_detector
        from db import Project
        from services.scoring.feedback import active_scorer

        with lab.factory() as session:
            version = session.get(Project, lab.project_id).active_model_version
            scorer = active_scorer(session, lab.project_id)
        self.scorer_version = None if scorer is None else scorer.version
        if version.id == self.detector_id:
            return
        t0 = time.perf_counter()
        self.detector = load_detector(version.artifact_path, device="cpu")  # as the Inspect page
        self.load_seconds.append(time.perf_counter() - t0)
        self.detector_id, self.detector_version = version.id, version.version
        self.loads += 1


# --------------------------------------------------------------------------- jobs


def queue_job(lab: Lab, kind: str, parameters: dict | None = None) -> int:
    """Queue a job as the manager (what the Models page's buttons do); returns its id."""
    from db.jobs import enqueue_job

    with lab.factory() as session, session.begin():
        job = enqueue_job(
            session,
            kind=kind,
            parameters=parameters or {},
            project_id=lab.project_id,
            user=user(session, lab.manager_id),
        )
        return job.id


def run_queued_jobs(lab: Lab, reviews: int) -> list[dict]:
    """Run every queued job with the worker; promote each candidate if its gate passes."""
    from sqlalchemy import select

    from db import Job, JobStatus, ModelVersion
    from db.model_versions import GateRefusedError, promote_model_version

    records = []
    while True:
        with lab.factory() as session:
            queued = session.scalars(
                select(Job.id).where(Job.status == JobStatus.QUEUED.value).order_by(Job.id)
            ).all()
        if not queued:
            return records
        t0 = time.perf_counter()
        lab.worker.run(once=True)
        seconds = time.perf_counter() - t0
        with lab.factory() as session:
            job = next(
                job
                for job in (session.get(Job, job_id) for job_id in queued)
                if job.status != JobStatus.QUEUED.value
            )
            record = {
                "after_reviews": reviews,
                "job_id": job.id,
                "kind": job.kind,
                "status": job.status,
                "message": job.message,
                "trigger": (job.parameters or {}).get("trigger"),
                "seconds": round(seconds, 2),
                "candidate_version": None,
                "promoted": False,
                "refusals": [],
            }
            candidate_id = job.result_model_version_id
            if candidate_id is not None:
                record["candidate_version"] = session.get(ModelVersion, candidate_id).version
        if candidate_id is not None:
            try:
                with lab.factory() as session, session.begin():
                    promote_model_version(session, candidate_id, user(session, lab.manager_id))
                record["promoted"] = True
            except GateRefusedError as refused:
                record["refusals"] = list(refused.reasons)
        records.append(record)
        print(
            f"  job {record['kind']}: {record['status']} ({record['seconds']:.0f} s) "
            f"candidate v{record['candidate_version']} promoted={record['promoted']} "
            f"{'; '.join(record['refusals']) or record['message']}"[:300],
            flush=True,
        )


# --------------------------------------------------------------------------- scoring


def predict_all(detector: Any, paths: Sequence[Path], batch: int = 16) -> dict[str, np.ndarray]:
    """``detector.predict`` on image files: ``{"scores": (N,), "vectors": (N, D) or None}``.

    Images are decoded with :func:`adcore.image_io.load_image`, as inspection decodes them;
    vectors go through the float16 storage round trip the scorer sees in the database.
    """
    from adcore.explain.neighbours import embedding_from_bytes, embedding_to_bytes
    from adcore.image_io import load_image

    scores, vectors = [], []
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        pixels = [load_image(Path(p).read_bytes(), name=Path(p).name) for p in chunk]
        for prediction in detector.predict(pixels):
            scores.append(float(prediction.score))
            vector = getattr(prediction, "embedding", None)
            vectors.append(
                None if vector is None else embedding_from_bytes(embedding_to_bytes(vector))
            )
    has_vectors = vectors and all(v is not None for v in vectors)
    return {
        "scores": np.asarray(scores, dtype=np.float64),
        "vectors": np.stack(vectors) if has_vectors else None,
    }


def separation(labels: np.ndarray, ranking: np.ndarray, target_fnr: float) -> dict:
    """AUROC and the FNR-first threshold's FPR/FNR of ``ranking`` on ``labels`` (1 = defect)."""
    from adcore.metrics import image_metrics
    from adcore.thresholds import select_threshold

    choice = select_threshold(ranking, labels, target_fnr=target_fnr)
    return {
        "auroc": image_metrics(labels, ranking).auroc,
        "fpr_at_target": choice.fpr,
        "fnr_at_target": choice.fnr,
        "threshold": choice.value,
    }


def take_snapshot(
    lab: Lab,
    active: ActiveModels,
    paths: Sequence[Path],
    labels: np.ndarray,
    start_scores: np.ndarray,
    position: int,
    reviews: int,
    target_fnr: float,
) -> dict:
    """Start model vs the current decision maker on the parts after ``position``."""
    from adcore.errors import DatasetError
    from services.scoring.feedback import active_scorer

    rest = slice(position + 1, len(paths))
    lab_rest = labels[rest]
    t0 = time.perf_counter()
    now = predict_all(active.detector, paths[rest])
    with lab.factory() as session:
        scorer = active_scorer(session, lab.project_id)
    snapshot = {
        "after_position": position,
        "reviews": reviews,
        "n": int(lab_rest.size),
        "n_defect": int(lab_rest.sum()),
        "detector_version": active.detector_version,
        "start": separation(lab_rest, start_scores[rest], target_fnr),
        "detector_now": separation(lab_rest, now["scores"], target_fnr),
        "scorer_version": None,
        "scorer_now": None,
        "scorer_note": "no active scorer fitting the active detector",
    }
    if scorer is not None:
        snapshot["scorer_version"] = scorer.version
        try:
            proba = scorer.scorer.predict_proba(now["scores"], now["vectors"])
        except (DatasetError, ValueError) as err:
            snapshot["scorer_note"] = f"the active scorer could not score: {err}"
        else:
            snapshot["scorer_now"] = separation(lab_rest, proba, target_fnr)
            snapshot["scorer_note"] = None
    snapshot["now"] = snapshot["scorer_now"] or snapshot["detector_now"]
    snapshot["now_is"] = "scorer" if snapshot["scorer_now"] else "detector"
    snapshot["seconds"] = round(time.perf_counter() - t0, 1)
    return snapshot


# --------------------------------------------------------------------------- the loop


def replay(args: argparse.Namespace, tmp: Path) -> dict:
    """Run the loop on ``args.dataset`` in the temporary folder ``tmp``; the JSON-ready result."""
    from adcore.datasets import resolve_dataset
    from db import Prediction, Project
    from db.review_queue import queue_size, review_queue
    from services.inspection import InspectionRequest, inspect_uploads
    from services.model_management import train_first_model
    from services.project_settings import audit_odds, audit_setting
    from services.reviewing import label_part
    from services.scoring.predictor import Predictor
    from services.training.job_kinds import JobKind

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    dataset = resolve_dataset(args.dataset, max_train=args.max_train)
    order = np.random.default_rng(args.seed).permutation(len(dataset.test))
    if args.max_test:
        order = order[: args.max_test]
    stream = [dataset.test[i] for i in order]
    paths = [Path(s.path) for s in stream]
    labels = np.array([int(s.label) for s in stream], dtype=np.int64)
    train_paths = [Path(s.path) for s in dataset.train]
    image_size = args.image_size or default_image_size(args.dataset)

    lab = make_lab(tmp, train_paths, args)
    t0 = time.perf_counter()
    with lab.factory() as session:
        manager = user(session, lab.manager_id)
        session.expunge(manager)
    first = train_first_model(
        lab.factory,
        project_id=lab.project_id,
        folder_or_paths=[str(p) for p in train_paths],
        user=manager,
        models_root=lab.models_root,
        device="cpu",
        image_size=image_size,
    )
    fit_seconds = time.perf_counter() - t0
    start_threshold = float(first.threshold)
    with lab.factory() as session:
        audit_share = audit_setting(session.get(Project, lab.project_id))
        audit_odds_json = audit_odds(session.get(Project, lab.project_id)).to_json()
    active = ActiveModels()
    active.refresh(lab)
    t0 = time.perf_counter()
    start_scores = predict_all(active.detector, paths)["scores"]  # frozen start model, cached
    start_seconds = time.perf_counter() - t0
    print(
        f"{dataset.summary()}; fit {fit_seconds:.0f} s, start scores {start_seconds:.0f} s",
        flush=True,
    )

    rng = random.Random(args.seed)
    steps: list[dict] = []
    jobs: list[dict] = []
    instant: list[dict] = []
    snapshot: dict | None = None
    reviews = 0
    inspect_seconds: list[float] = []
    for pos, (sample, path) in enumerate(zip(stream, paths, strict=True)):
        active.refresh(lab)
        label = "defect" if labels[pos] else "good"
        t0 = time.perf_counter()
        predictor = Predictor.load(
            lab.factory,
            project_id=lab.project_id,
            model_version_id=active.detector_id,
            detector=active.detector,
            audit_rng=rng,
        )
        request = InspectionRequest(predictor, data_dir=lab.data_dir)
        upload = (f"{pos:05d}-{path.name}", path.read_bytes())
        result = inspect_uploads(lab.factory, request, [upload])[0]
        inspect_seconds.append(time.perf_counter() - t0)
        if not result.ok:
            raise SystemExit(f"inspection failed on {path}: {result.error}")
        with lab.factory() as session:
            prediction = session.get(Prediction, result.prediction_id)
            verdict, audit = prediction.verdict, bool(prediction.audit)
            region, odds = prediction.decision_region, prediction.audit_probability
            decided_at = prediction.created_at
            score, threshold = float(prediction.score), float(prediction.threshold)
            queued = next(
                (q for q in review_queue(session, lab.project_id) if q.image_id == result.image_id),
                None,
            )
        step = {
            "pos": pos,
            "label": int(labels[pos]),
            "defect_type": sample.defect_type,
            "score": score,
            "threshold": threshold,
            "verdict": verdict,
            "audit": audit,
            "region": region,
            "audit_probability": odds,
            "decided_at": decided_at.isoformat(),
            "reviewed": queued is not None,
            "queue_verdict": None if queued is None else queued.verdict,
            "detector_version": active.detector_version,
            "scorer_version": active.scorer_version,
            "start_score": float(start_scores[pos]),
            "start_flagged": bool(start_scores[pos] >= start_threshold),
            "instant_update": False,
        }
        if queued is not None:
            label_part(  # as the Review and Inspect pages record a label
                lab.factory,
                user_id=lab.inspector_id,
                image_id=result.image_id,
                label=label,
                defect_type=sample.defect_type if labels[pos] else None,
            )
            reviews += 1
            if reviews % args.recalibrate_every == 0:
                queue_job(lab, "recalibrate_threshold")
            if args.refit_every and reviews % args.refit_every == 0:
                queue_job(lab, "refit_detector", {"train_folder": str(lab.train_folder)})
            for record in run_queued_jobs(lab, reviews):
                if record["kind"] != JobKind.INSTANT_UPDATE:
                    jobs.append(record)
                    continue
                job = lab.worker.backend.outcomes.get(record["job_id"])
                facts = getattr(job, "details", None) or {}
                instant.append(
                    {
                        "pos": pos,
                        "updated": bool(facts.get("updated")),
                        "message": record["message"],
                        "patches_added": facts.get("patches_added", 0),
                        "n_rescored": facts.get("n_rescored", 0),
                        "n_cleared": facts.get("n_cleared", 0),
                        "seconds": record["seconds"],
                    }
                )
                step["instant_update"] = bool(facts.get("updated"))
            if reviews == args.snapshot_reviews:
                active.refresh(lab)
                snapshot = take_snapshot(
                    lab, active, paths, labels, start_scores, pos, reviews, args.target_fnr
                )
                print(f"snapshot: {json.dumps(_clean(snapshot))}", flush=True)
        step["reviews"] = reviews
        steps.append(step)
        if (pos + 1) % args.window == 0 or pos + 1 == len(stream):
            with lab.factory() as session:
                backlog = queue_size(session, lab.project_id)
            step["queue_backlog"] = backlog
            print(
                f"{pos + 1}/{len(stream)} parts, {reviews} reviews, detector "
                f"v{active.detector_version}, scorer v{active.scorer_version}, thr "
                f"{threshold:.3f}, backlog {backlog}, "
                f"{(time.perf_counter() - t_start) / 60:.1f} min",
                flush=True,
            )
    safe = safe_baseline(start_scores, labels, args.target_fnr)
    for step, start_score in zip(steps, start_scores, strict=True):
        step["safe_flagged"] = bool(start_score >= safe["threshold"])
    windows = window_rows(steps, args.window)
    late_from = snapshot["after_position"] + 1 if snapshot else len(steps)
    estimates = loop_estimates(lab, steps, windows, late_from)
    kinds = sorted({j["kind"] for j in jobs})
    result = {
        "name": args.name,
        "dataset_spec": args.dataset,
        "dataset": dataset.summary(),
        "n_test": len(stream),
        "n_test_defect": int(labels.sum()),
        "smoke": bool(args.max_test),
        "settings": {
            "image_size": image_size,
            "max_train": args.max_train,
            "max_test": args.max_test,
            "n_train": len(train_paths),
            "seed": args.seed,
            "window": args.window,
            "snapshot_reviews": args.snapshot_reviews,
            "recalibrate_every": args.recalibrate_every,
            "refit_every": args.refit_every,
            "target_fnr": args.target_fnr,
            "audit_share": audit_share,
            "audit_odds": audit_odds_json,
            "triage_budget": args.triage_budget,
            "start_threshold": start_threshold,
        },
        "snapshot": snapshot,
        "stage2": args.stage2,
        "safe_baseline": safe,
        "late_from": late_from,
        "estimates": estimates,
        "windows": windows,
        "steps": steps,
        "jobs": jobs,
        "instant_updates": instant,
        "totals": {
            "reviews": reviews,
            "audits": sum(s["audit"] for s in steps),
            "audits_reviewed": sum(s["audit"] and s["reviewed"] for s in steps),
            "instant_updates": sum(i["updated"] for i in instant),
            "instant_attempts": len(instant),
            "jobs": {
                k: sum(j["kind"] == k for j in jobs) for k in sorted({j["kind"] for j in jobs})
            },
            "promoted": {k: sum(j["kind"] == k and j["promoted"] for j in jobs) for k in kinds},
            "final_detector_version": active.detector_version,
            "final_scorer_version": active.scorer_version,
        },
        "seconds": {
            "total": time.perf_counter() - t_start,
            "first_fit": fit_seconds,
            "start_scores": start_seconds,
            "inspect_mean": float(np.mean(inspect_seconds)),
            "instant_mean": float(np.mean([i["seconds"] for i in instant])) if instant else None,
            "jobs": {
                k: float(np.mean([j["seconds"] for j in jobs if j["kind"] == k]))
                for k in sorted({j["kind"] for j in jobs})
            },
            "detector_loads": active.loads,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    result["summary"] = summary(result)
    return _clean(result)


def window_rows(steps: list[dict], size: int) -> list[dict]:
    """Per window of ``size`` streamed parts: the stored verdicts' FNR/FPR, reviews, frozen."""

    def rate(hits: int, total: int) -> float | None:
        return hits / total if total else None

    rows = []
    for lo in range(0, len(steps), size):
        part = steps[lo : lo + size]
        defect = [s for s in part if s["label"] == 1]
        good = [s for s in part if s["label"] == 0]
        rows.append(
            {
                "first": lo + 1,
                "last": lo + len(part),
                "n_good": len(good),
                "n_defect": len(defect),
                "missed": sum(s["verdict"] == "good" for s in defect),
                "false_alarms": sum(s["verdict"] == "defect" for s in good),
                "fnr": rate(sum(s["verdict"] == "good" for s in defect), len(defect)),
                "fpr": rate(sum(s["verdict"] == "defect" for s in good), len(good)),
                "review_share": sum(s["reviewed"] for s in part) / len(part),
                "audits": sum(s["audit"] for s in part),
                "reviews_so_far": part[-1]["reviews"],
                "threshold_end": part[-1]["threshold"],
                "detector_version_end": part[-1]["detector_version"],
                "scorer_version_end": part[-1]["scorer_version"],
                "queue_backlog_end": part[-1].get("queue_backlog"),
                "start_fnr": rate(sum(not s["start_flagged"] for s in defect), len(defect)),
                "start_fpr": rate(sum(s["start_flagged"] for s in good), len(good)),
                "goods_to_human": rate(sum(s["reviewed"] for s in good), len(good)),
                "safe_goods_to_human": rate(sum(s["safe_flagged"] for s in good), len(good)),
                "safe_fnr": rate(sum(not s["safe_flagged"] for s in defect), len(defect)),
                "auto_accepted": sum(s.get("region") == "auto_accepted" for s in part),
            }
        )
    return rows


def summary(result: dict) -> dict:
    """The one-line JSON summary (``--json``): the issue's figures."""
    steps, windows, snap = result["steps"], result["windows"], result["snapshot"]
    later = [s for s in steps if s["pos"] >= SAFETY_AFTER and s["label"] == 1]
    later_windows = [w for w in windows if w["first"] > SAFETY_AFTER and w["fnr"] is not None]
    full = [w for w in windows if w["last"] - w["first"] + 1 >= result["settings"]["window"] / 2]
    return {
        "dataset": result["dataset_spec"],
        "n_test": result["n_test"],
        "reviews_at_snapshot": None if snap is None else snap["reviews"],
        "fpr_at_fnr1_start": None if snap is None else snap["start"]["fpr_at_target"],
        "fpr_at_fnr1_after": None if snap is None else snap["now"]["fpr_at_target"],
        "auroc_start": None if snap is None else snap["start"]["auroc"],
        "auroc_after": None if snap is None else snap["now"]["auroc"],
        "stream_fnr_after_100": (
            sum(s["verdict"] == "good" for s in later) / len(later) if later else None
        ),
        "max_window_fnr_after_100": max((w["fnr"] for w in later_windows), default=None),
        "review_share_first_window": windows[0]["review_share"] if windows else None,
        "review_share_last_window": full[-1]["review_share"] if full else None,
        "stage2": result["stage2"],
        **{
            key: value
            for key, value in compare_passes(result, None).items()
            if key not in ("late", "late_stage1_only")
        },
    }


def main() -> int:
    """Replay ``--dataset`` and write its JSON and plot; with ``--render``, the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", help="elpv:mono, elpv:poly, or an MVTec-layout folder (resolve_dataset)"
    )
    parser.add_argument("--name", help="output name (default from the dataset)")
    parser.add_argument("--image-size", type=int, help="default 224 (ELPV), 256 (folders)")
    parser.add_argument("--max-train", type=int, help="cap the train split")
    parser.add_argument("--max-test", type=int, help="stream only the first N shuffled parts")
    parser.add_argument("--seed", type=int, default=0, help="stream order and audit draws")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--snapshot-reviews", type=int, default=200)
    parser.add_argument("--recalibrate-every", type=int, default=25)
    parser.add_argument("--refit-every", type=int, default=100, help="0: never")
    parser.add_argument("--target-fnr", type=float, default=0.02, help="the project's target")
    parser.add_argument(
        "--stage2",
        choices=("on", "off"),
        default="on",
        help="off: the manager switches stage 2 off (the stage-1-only pass, named <name>-stage1)",
    )
    parser.add_argument("--audit-share", type=float, help="default: the product's default")
    parser.add_argument(
        "--triage-budget", type=float, help="stage 2's auto-accept budget (default: target FNR)"
    )
    parser.add_argument("--keep-dir", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--json", action="store_true", help="print the summary as the last line")
    parser.add_argument("--render", action="store_true", help="rewrite RESULTS_replay.md")
    args = parser.parse_args()
    if args.recalibrate_every < 1:
        parser.error("--recalibrate-every must be at least 1")
    if args.dataset:
        if not args.name:
            smoke = "-smoke" if args.max_test else ""
            args.name = dataset_name(args.dataset) + smoke
        if args.stage2 == "off" and not args.name.endswith(STAGE1_SUFFIX):
            args.name += STAGE1_SUFFIX
        tmp = Path(tempfile.mkdtemp(prefix="loupe-replay-"))
        try:
            result = replay(args, tmp)
        finally:
            if not args.keep_dir:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"data kept in {tmp}", file=sys.stderr)
        result["command"] = "nice -n 10 .venv/bin/python bench/replay.py " + " ".join(sys.argv[1:])
        result["finished_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"replay-{args.name}.json").write_text(json.dumps(result, indent=1))
        from replay_report import plot_dataset

        plot_dataset(args.name, result, HERE / f"replay_{args.name}.png")
    if args.render:
        from replay_report import render_all

        render_all(OUT, HERE)
    if args.dataset and args.json:
        summary_line = dict(result["summary"])
        if args.stage2 == "on":  # with the stage-1-only pass when it has been run
            other = OUT / f"replay-{args.name}{STAGE1_SUFFIX}.json"
            if other.is_file():
                compared = compare_passes(result, json.loads(other.read_text()))
                summary_line.update(
                    {k: v for k, v in compared.items() if k not in ("late", "late_stage1_only")}
                )
        print(json.dumps(summary_line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
