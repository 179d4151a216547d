"""Job kind ``train_feedback_scorer``: the triage model (stage 2 of the cascade), gated.

Reads, for every labelled part the screen flags (the active detector's latest score, or an
instant-update ancestor's: same scores and vectors, :func:`db.model_families.detector_lineage`,
at or above the detector's current threshold), its score and stored per-image vector, and the
known odds it was looked at with (its first prediction's ``audit_probability``: 1 for parts sent
to a human, the auto-accepted region's odds for audited auto-accepted parts). No image is
opened, so training takes seconds.

Training and gate are :func:`adcore.feedback_scorer.triage.train_triage_model`: a calibrated
feedback scorer on the flagged parts, each label weighted by 1 / its probability; its
auto-accept threshold is the highest whose 95% upper bound on auto-accepted flagged defects
stays within the project's budget (:func:`services.scorer_training.triage_budget`), chosen out
of fold; and the gate reads nested cross-validation: the candidate passes only when, on parts
neither trained nor tuned on, it auto-accepts some flagged goods (fewer goods to a human than
the screen alone) while the share of flagged defects it auto-accepts there is within the
budget (*first, do no harm*; the 95% upper bound on that share is recorded beside it). No part is
set aside: every fold is evaluated by a model that never saw it.

Refusals end the job with a message and register nothing: no active detector, a detector
without per-image vectors, fewer than ``MIN_PER_CLASS`` labelled flagged defects or good parts
with a readable vector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from adcore.errors import DatasetError
from adcore.explain.neighbours import embedding_from_bytes, usual_length
from adcore.feedback_scorer import DetectorIdentity, ScorerConfig
from adcore.feedback_scorer.triage import TriageEvidence, train_triage_model
from adcore.verdicts import is_flagged
from db.base import Label
from db.image_store import absolute_image_path
from db.loop_parts import LoopPart, loop_parts
from db.model_families import ModelFamily, active_version, detector_lineage
from db.model_metrics import ScorerDetector, new_version_metrics
from db.models import ModelVersion
from db.predictions import LabelledEmbedding, labelled_embeddings
from services.scorer_training import no_vectors_reason, triage_budget
from services.training.candidates import (
    candidate_outcome,
    project_and_active_detector,
    save_candidate,
)
from services.training.context import JobContext, JobOutcome
from services.training.training_data import LabelledPart

__all__ = ["train_feedback_scorer_job", "triage_gate_record"]


@dataclass(frozen=True)
class ScorerParts:
    """Labelled parts with the detector's readings.

    Attributes:
        parts: The parts (for digests and the snapshot).
        scores: (N,) detector scores.
        vectors: (N, D) detector vectors.
        labels: (N,) 1 = defect.
    """

    parts: list[LabelledPart]
    scores: np.ndarray
    vectors: np.ndarray
    labels: np.ndarray

    def select(self, keep: np.ndarray) -> ScorerParts:
        """The parts where the (N,) bool mask ``keep`` is true."""
        return ScorerParts(
            [p for p, k in zip(self.parts, keep, strict=True) if k],
            self.scores[keep],
            self.vectors[keep],
            self.labels[keep],
        )


def train_feedback_scorer_job(ctx: JobContext) -> JobOutcome:
    """Train a triage-model candidate on the labelled flagged parts and gate it out of fold.

    Parameters (``ctx.parameters``): ``budget`` (default the project's,
    :func:`services.scorer_training.triage_budget`), and any
    :class:`~adcore.feedback_scorer.ScorerConfig` field. Automatic jobs also carry
    ``through_review_id`` and ``trigger``.

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: No active detector, one without vectors, or too few usable labels.
    """
    params = ctx.parameters
    ctx.progress(0.0, "Reading the labelled flagged parts' detector scores and vectors")
    with ctx.session_factory() as session:
        project, detector = project_and_active_detector(session, ctx)
        if detector is None:
            raise DatasetError("The project has no active detector: the scorer reads its scores.")
        reason = no_vectors_reason(detector)
        if reason:
            raise DatasetError(reason)
        rows = labelled_embeddings(session, project.id, detector_lineage(detector))
        odds = {part.image_id: part for part in loop_parts(session, project.id)}
        base = active_version(session, project.id, ModelFamily.SCORER)
        budget = float(params.get("budget", triage_budget(project)))
        trained_on = ScorerDetector(detector.id, detector.version, detector.kind)
        screen = detector.threshold
    if screen is None:
        raise DatasetError("The active detector has no threshold yet: nothing is flagged.")
    flagged_rows = [row for row in rows if is_flagged(row.score, float(screen))]
    parts, unreadable = _decode(ctx, flagged_rows)
    weights = np.array([_audit_weight(odds.get(p.image_id)) for p in parts.parts])
    config = ScorerConfig.from_dict({**params, "target_fnr": min(float(budget), 0.5)})
    n_defect = int(parts.labels.sum())
    n_good = int(parts.labels.size - n_defect)
    if min(n_defect, n_good) < config.min_per_class:
        raise DatasetError(
            f"The triage model needs at least {config.min_per_class} labelled flagged defects "
            f"and {config.min_per_class} labelled flagged good parts with the detector's "
            f"vector; there are {n_defect} defects and {n_good} good parts among the parts "
            f"the screen flags at {float(screen):.4g} ({len(unreadable)} without a usable "
            "vector). Review more flagged parts first; stage 2 stays off."
        )
    ctx.log(f"Training on {parts.labels.size} flagged parts ({n_defect} defective)")
    ctx.progress(0.1, f"Training on {parts.labels.size} labelled flagged parts")
    started = time.perf_counter()
    scorer, report, evidence = train_triage_model(
        parts.scores,
        parts.vectors,
        parts.labels,
        weights,
        budget=budget,
        detector=DetectorIdentity(**trained_on.to_json(), vector_dim=int(parts.vectors.shape[1])),
        digests=[p.sha256 for p in parts.parts],
        config=config,
    )
    seconds = time.perf_counter() - started
    ctx.log(f"Trained and cross-checked in {seconds:.2f} s. {evidence.sentence()}")
    gate = triage_gate_record(evidence, base, screen=float(screen))
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "trigger": params.get("trigger", "manual"),
        "n_train": report.n_train,
        "n_unreadable": len(unreadable),
        "training_seconds": round(seconds, 3),
        "training_report": report.to_json(),
        "triage": evidence.to_json(),
        "screen_threshold": float(screen),
    }
    metrics = new_version_metrics(facts, gate=gate, scorer_detector=trained_on)
    snapshot = {
        "training_hash": scorer.training_hash,
        "detector": trained_on.to_json(),
        "images": [
            {"sha256": p.sha256, "label": p.label, "weight": float(w)}
            for p, w in zip(parts.parts, weights, strict=True)
        ],
    }
    ctx.progress(0.9, "Saving the candidate")
    version = save_candidate(ctx, project, scorer, metrics, snapshot, "Triage model")
    return candidate_outcome(version, gate, "Triage model")


def triage_gate_record(
    evidence: TriageEvidence, active: ModelVersion | None, *, screen: float
) -> dict[str, Any]:
    """The gate record of a triage candidate: its nested out-of-fold evidence.

    The candidate passes when, out of fold, it auto-accepts some flagged good parts and the
    share of flagged defects it auto-accepts is within the budget (its 95% upper bound is
    recorded too): it then sends fewer good parts to a human than the screen alone at the same
    miss budget. The record has the shape
    of :func:`adcore.gate.gate_record` (``decision``, ``candidate``, ``active``, ``heldout``).

    Args:
        evidence: The candidate's nested evidence.
        active: The project's active triage model when there is one (recorded; its own
            evidence is on its version).
        screen: The screen threshold the flagged parts were read at.
    """
    notes = [
        evidence.sentence(),
        "Measured by nested cross-validation on the labelled flagged parts: each part was "
        "decided by a model (and threshold) trained without it.",
        f"Compared with the screen alone at {screen:.4g}, which auto-accepts nothing.",
    ]
    active_json = None
    if active is not None:
        active_json = {"version_id": active.id, "version": active.version}
    return {
        "evaluated_at": datetime.now(UTC).isoformat(),
        "rule": "triage_out_of_fold",
        "heldout": {
            "n_good": evidence.n_goods,
            "n_defect": evidence.n_defects,
            "folds": evidence.folds,
        },
        "candidate": evidence.to_json(),
        "active": active_json,
        "decision": {
            "passed": evidence.passed,
            "reasons": evidence.reasons(),
            "notes": notes,
        },
    }


def _audit_weight(part: LoopPart | None) -> float:
    """1 / the known probability a labelled part was looked at with (1 when unknown)."""
    if part is None or part.audit_probability is None or not part.audited:
        return 1.0
    return 1.0 / float(part.audit_probability)


def _decode(
    ctx: JobContext, rows: list[LabelledEmbedding]
) -> tuple[ScorerParts, list[tuple[str, str]]]:
    """Decode stored vectors; parts without a usable one are listed, not used.

    Returns:
        (the readable parts; (name, reason) of each unreadable part).

    Raises:
        DatasetError: If the detector stored no vector for any labelled part.
    """
    if rows and all(row.embedding is None for row in rows):
        raise DatasetError(
            f"The active detector stored no per-image vector with any of the {len(rows)} "
            "labelled parts it scored: the feedback scorer needs a detector that gives them "
            "(PatchCore or CLIP). Score the parts again with such a detector."
        )
    decoded: list[tuple[LabelledEmbedding, np.ndarray]] = []
    unreadable: list[tuple[str, str]] = []
    for row in rows:
        problem = "no stored vector" if row.embedding is None else None
        vector = None
        if problem is None:
            try:
                vector = embedding_from_bytes(row.embedding)
            except ValueError as err:
                problem = str(err)
        if problem is None and not np.isfinite(vector).all():
            problem = "the stored vector holds values that are not finite"
        if problem is None:
            decoded.append((row, vector))
        else:
            unreadable.append((row.stored_path, problem))
    if decoded:
        usual = usual_length([v for _, v in decoded])
        for row, vector in [pair for pair in decoded if pair[1].size != usual]:
            unreadable.append((row.stored_path, f"a vector of length {vector.size}, not {usual}"))
        decoded = [pair for pair in decoded if pair[1].size == usual]
    for name, problem in unreadable[:5]:
        ctx.log(f"Left out {name}: {problem}")
    parts = [
        LabelledPart(
            row.image_id,
            row.sha256,
            absolute_image_path(row.stored_path, ctx.data_dir),
            row.label,
            row.defect_type,
        )
        for row, _ in decoded
    ]
    dim = decoded[0][1].size if decoded else 0
    return (
        ScorerParts(
            parts,
            np.array([row.score for row, _ in decoded], dtype=np.float64),
            np.stack([v for _, v in decoded]) if decoded else np.zeros((0, dim)),
            np.array([int(row.label == Label.DEFECT) for row, _ in decoded], dtype=np.int64),
        ),
        unreadable,
    )
