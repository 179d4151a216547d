"""Job kind ``train_feedback_scorer``: p(defect) from the detector's score and vector, gated.

Reads, for every labelled part, the latest prediction of the active detector (or of an
instant-update ancestor: same scores and vectors, :func:`db.model_families.detector_lineage`):
its score and stored per-image vector. No image is opened, so training takes seconds.

The parts are split by a stable hash of their bytes (:func:`in_evaluation_share`,
``holdout_fraction``, default 0.25, both classes): the held-out share is never trained on and
no threshold is chosen on it; the rest goes to :func:`adcore.feedback_scorer.train_feedback_scorer`
(its own cross-validation for calibration and the FNR-first threshold).

The gate (:func:`services.training.candidate_evaluation.evaluate_candidate`) compares, on the
held-out parts, the candidate with what decides verdicts now: the active scorer when one fits the
active detector, else the active detector's own verdicts (score >= its threshold). On top of the
common gate (FNR no worse, FPR within the margin), a scorer must *lower* the false-alarm rate:
that is its only purpose (:func:`require_lower_fpr`).

Refusals end the job with a message and register nothing: no active detector, a detector
without per-image vectors, fewer than ``MIN_PER_CLASS`` labelled defects or good parts with a
readable vector.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from adcore.errors import DatasetError
from adcore.explain.neighbours import embedding_from_bytes, usual_length
from adcore.feedback_scorer import DetectorIdentity, FeedbackScorer, ScorerConfig
from adcore.feedback_scorer import train_feedback_scorer as train_scorer
from adcore.gate import Rates
from adcore.holdout import in_evaluation_share
from db.base import Label
from db.image_store import absolute_image_path
from db.model_families import ModelFamily, active_version, detector_lineage
from db.model_metrics import ScorerDetector, new_version_metrics
from db.predictions import LabelledEmbedding, labelled_embeddings
from services.scorer_training import SCORER_HOLDOUT, no_vectors_reason
from services.scoring.feedback import active_scorer
from services.training.candidate_evaluation import CandidateEvaluation, evaluate_candidate
from services.training.candidates import project_and_active_detector, save_candidate
from services.training.context import JobContext, JobOutcome
from services.training.evaluation import ScoredParts, rates
from services.training.training_data import LabelledPart

__all__ = ["require_lower_fpr", "train_feedback_scorer_job"]


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
    """Train a feedback scorer candidate on the labelled parts and gate it.

    Parameters (``ctx.parameters``): ``holdout_fraction`` (default 0.25), ``fpr_margin``, and
    any :class:`~adcore.feedback_scorer.ScorerConfig` field; ``target_fnr`` defaults to the
    project's. Automatic jobs also carry ``through_review_id`` and ``trigger``.

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: No active detector, one without vectors, or too few usable labels.
    """
    params = ctx.parameters
    holdout = float(params.get("holdout_fraction", SCORER_HOLDOUT))
    ctx.progress(0.0, "Reading the labelled parts' detector scores and vectors")
    with ctx.session_factory() as session:
        project, detector = project_and_active_detector(session, ctx)
        if detector is None:
            raise DatasetError("The project has no active detector: the scorer reads its scores.")
        reason = no_vectors_reason(detector)
        if reason:
            raise DatasetError(reason)
        rows = labelled_embeddings(session, project.id, detector_lineage(detector))
        in_force = active_scorer(session, project.id)
        base = active_version(session, project.id, ModelFamily.SCORER)
        target_fnr = float(project.target_fnr)
        trained_on = ScorerDetector(detector.id, detector.version, detector.kind)
        detector_threshold = detector.threshold
    readable, unreadable = _decode(ctx, rows)
    held = np.array([in_evaluation_share(p.sha256, holdout) for p in readable.parts], dtype=bool)
    training, heldout = readable.select(~held), readable.select(held)
    config = ScorerConfig.from_dict({"target_fnr": min(target_fnr, 0.5), **params})
    n_defect = int(training.labels.sum())
    n_good = int(training.labels.size - n_defect)
    if min(n_defect, n_good) < config.min_per_class:
        raise DatasetError(
            f"A feedback scorer needs at least {config.min_per_class} labelled defects and "
            f"{config.min_per_class} labelled good parts with the detector's vector to train "
            f"on; there are {n_defect} defects and {n_good} good parts (besides "
            f"{heldout.labels.size} held out for evaluation and {len(unreadable)} without a "
            "usable vector). Review more parts first."
        )
    ctx.log(f"Training on {training.labels.size} parts ({n_defect} defective)")
    ctx.progress(0.1, f"Training on {training.labels.size} labelled parts")
    scorer, report = train_scorer(
        training.scores,
        training.vectors,
        training.labels,
        detector=DetectorIdentity(
            **trained_on.to_json(), vector_dim=int(training.vectors.shape[1])
        ),
        digests=[p.sha256 for p in training.parts],
        config=config,
    )
    ctx.log(f"Trained in {report.seconds:.2f} s; out-of-fold AUROC {report.cv_auroc:.3f}")
    ctx.progress(0.7, "Comparing with the verdicts in force on the held-out parts")
    probabilities = scorer.predict_proba(heldout.scores, heldout.vectors)
    held_unreadable = [u for u in unreadable if u[2]]
    scored = ScoredParts(probabilities, heldout.labels, [(n, r) for n, r, _ in held_unreadable])
    baseline, note = _baseline_rates(in_force, heldout, detector_threshold, trained_on)
    evaluation = evaluate_candidate(
        ctx,
        scored,
        scorer.threshold,
        base=base,
        heldout=heldout.parts,
        good_share=holdout,
        notes=[note, "The threshold was chosen out of fold on the training parts only."],
        active_rates=baseline,
        active_span=None,
    )
    evaluation = require_lower_fpr(evaluation)
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "trigger": params.get("trigger", "manual"),
        "n_train": report.n_train,
        "n_unreadable": len(unreadable),
        "training_seconds": round(report.seconds, 3),
        "training_report": report.to_json(),
        "heldout": evaluation.candidate.to_json(),
    }
    metrics = new_version_metrics(facts, gate=evaluation.gate, scorer_detector=trained_on)
    snapshot = {
        "training_hash": scorer.training_hash,
        "detector": trained_on.to_json(),
        "images": [{"sha256": p.sha256, "label": p.label} for p in training.parts],
        "heldout": [{"sha256": p.sha256, "label": p.label} for p in heldout.parts],
    }
    ctx.progress(0.9, "Saving the candidate")
    version = save_candidate(ctx, project, scorer, metrics, snapshot, "Feedback scorer")
    return evaluation.outcome(version, "Feedback scorer")


def require_lower_fpr(evaluation: CandidateEvaluation) -> CandidateEvaluation:
    """Add the scorer's own gate rule: it must lower the false-alarm rate it is compared with.

    When the compared verdicts already raise no false alarm (FPR 0), an equal FPR passes.
    Unmeasurable rates are left to the common gate's notes.

    Returns:
        The evaluation, with the decision refused (and a reason) if the FPR is not lower.
    """
    candidate, active = evaluation.candidate, evaluation.active
    if active is None or candidate.fpr is None or active.fpr is None:
        return evaluation
    if active.fpr == 0 or candidate.fpr < active.fpr:
        return evaluation
    decision = dict(evaluation.gate["decision"])
    decision["passed"] = False
    decision["reasons"] = [
        *decision.get("reasons", []),
        f"It does not lower false alarms: FPR {100 * candidate.fpr:.1f}% vs "
        f"{100 * active.fpr:.1f}% for the verdicts in force; a scorer is only worth using "
        "when it does.",
    ]
    return dataclasses.replace(evaluation, gate={**evaluation.gate, "decision": decision})


def _baseline_rates(
    in_force: Any,
    heldout: ScorerParts,
    detector_threshold: float | None,
    detector: ScorerDetector,
) -> tuple[Rates, str]:
    """Rates of the verdicts in force on the held-out parts, and a note saying which."""
    if in_force is not None:
        scorer: FeedbackScorer = in_force.scorer
        try:
            p = scorer.predict_proba(heldout.scores, heldout.vectors)
            note = f"Compared with the active scorer v{in_force.version} on the same parts."
            return rates(p, heldout.labels, in_force.threshold), note
        except DatasetError as err:
            reason = f" (the active scorer v{in_force.version} cannot read them: {err})"
    else:
        reason = " (no active scorer fits the active detector)"
    note = (
        f"Compared with the active detector v{detector.version}'s own verdicts "
        f"(score >= its threshold){reason}."
    )
    return rates(heldout.scores, heldout.labels, detector_threshold), note


def _decode(
    ctx: JobContext, rows: list[LabelledEmbedding]
) -> tuple[ScorerParts, list[tuple[str, str, bool]]]:
    """Decode stored vectors; parts without a usable one are listed, not used.

    Returns:
        (the readable parts; (name, reason, held out) of each unreadable part).

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
    unreadable: list[tuple[str, str, bool]] = []
    holdout = float(ctx.parameters.get("holdout_fraction", SCORER_HOLDOUT))
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
            unreadable.append((row.stored_path, problem, in_evaluation_share(row.sha256, holdout)))
    if decoded:
        usual = usual_length([v for _, v in decoded])
        for row, vector in [pair for pair in decoded if pair[1].size != usual]:
            unreadable.append(
                (
                    row.stored_path,
                    f"a vector of length {vector.size}, not {usual}",
                    in_evaluation_share(row.sha256, holdout),
                )
            )
        decoded = [pair for pair in decoded if pair[1].size == usual]
    for name, problem, _ in unreadable[:5]:
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
