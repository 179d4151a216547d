"""One candidate evaluation: a candidate against the active version on the same held-out parts.

Every job kind that makes a detector or classifier candidate ends the same way: score the
held-out labelled parts with the candidate (at its threshold) and with the active version (at
the active threshold), compare the two with the gate (:func:`adcore.gate.gate_record`) and
store the record with the candidate (:class:`db.model_metrics.GateRecord`).
:func:`evaluate_candidate` is that step, and :class:`CandidateEvaluation` its typed result.

Typical use inside a job function::

    scored = score_parts(candidate, heldout, ctx.scaled_progress(0.7, 0.8))
    ...                                       # choose the candidate's threshold on ``scored``
    evaluation = evaluate_candidate(
        ctx, scored, candidate.threshold, base=active, heldout=heldout, good_share=0.2
    )
    facts = {"heldout": evaluation.candidate.to_json(), ...}
    metrics = new_version_metrics(facts, gate=evaluation.gate)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adcore.gate import Rates, check_margin, fpr_margin_from_env, gate_record
from db import ModelVersion
from services.training.candidates import candidate_outcome
from services.training.context import JobContext, JobOutcome
from services.training.evaluation import ScoredParts, rates, score_parts
from services.training.training_data import LabelledPart, digest_set_hash

#: Progress span of scoring the held-out parts with the active version (when it is loaded here).
ACTIVE_SCORING_SPAN = (0.8, 0.9)


@dataclass(frozen=True)
class CandidateEvaluation:
    """A candidate and the active version measured on the same held-out parts.

    Attributes:
        candidate: The candidate's rates at its threshold.
        active: The active version's rates at its threshold (``None`` without one).
        gate: The gate record stored with the candidate: the held-out facts, both sets of
            rates, the margin and the decision (see :func:`adcore.gate.gate_record`).
    """

    candidate: Rates
    active: Rates | None
    gate: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Whether the candidate passes the gate (may be promoted without an override)."""
        return bool(self.gate["decision"]["passed"])

    def outcome(self, version: ModelVersion, what: str) -> JobOutcome:
        """The job's outcome for the registered candidate ``version``."""
        return candidate_outcome(version, self.gate, what)


def evaluate_candidate(
    ctx: JobContext,
    scored: ScoredParts,
    threshold: float | None,
    *,
    base: ModelVersion | None,
    heldout: Sequence[LabelledPart],
    good_share: float,
    notes: Sequence[str] = (),
    active_rates: Rates | None = None,
    active_span: tuple[float, float] | None = ACTIVE_SCORING_SPAN,
    target_fnr: float | None = None,
) -> CandidateEvaluation:
    """Compare a scored candidate with the active version and build the gate record.

    Args:
        ctx: The running job (device, progress, the ``fpr_margin`` parameter).
        scored: The candidate's scores of ``heldout``
            (:func:`services.training.evaluation.score_parts`).
        threshold: The candidate's decision threshold.
        base: The active version of the candidate's family, or ``None``.
        heldout: The held-out labelled parts both are measured on.
        good_share: The share of labelled parts held out (recorded with the facts).
        notes: Notes for the UI (how the threshold was chosen, ...).
        active_rates: The active version's rates when the caller measured them already (e.g.
            before training changed the model in place); otherwise the active version is
            loaded (any kind: detector or classifier) and scores the same parts here.
        active_span: The job's progress span while the active version scores (``None``: no
            progress reported).
        target_fnr: The project's miss-rate target, for detector candidates: a candidate that
            misses fewer held-out defects than an active model above the target passes
            whatever its false alarms (:func:`adcore.gate.decide`). ``None``: not applied.

    Returns:
        The evaluation, with the gate record.

    Raises:
        ValueError: If the job's ``fpr_margin`` parameter is not a fraction in [0, 1].
    """
    candidate = rates(scored.scores, scored.labels, threshold)
    if active_rates is None and base is not None:
        active_rates = _active_rates(ctx, base, heldout, active_span)
    labels = scored.labels
    gate = gate_record(
        candidate=candidate,
        active=active_rates,
        active_version_id=base.id if base else None,
        active_version=base.version if base else None,
        heldout={
            "n_good": int((labels == 0).sum()),
            "n_defect": int((labels == 1).sum()),
            "n_unreadable": len(scored.unreadable),
            "good_share": good_share,
            "digests_hash": digest_set_hash(p.sha256 for p in heldout),
        },
        fpr_margin=gate_margin(ctx.parameters),
        notes=list(notes),
        target_fnr=target_fnr,
    )
    return CandidateEvaluation(candidate, active_rates, gate)


def gate_margin(params: dict[str, Any]) -> float:
    """The job's ``fpr_margin`` parameter, else ``$LOUPE_GATE_FPR_MARGIN`` or the default."""
    value = params.get("fpr_margin")
    return check_margin(value) if value is not None else fpr_margin_from_env()


def _active_rates(
    ctx: JobContext,
    base: ModelVersion,
    heldout: Sequence[LabelledPart],
    span: tuple[float, float] | None,
) -> Rates:
    """The active version's rates on the held-out parts, at its own threshold."""
    from adcore.detectors.registry import load_any_model

    active = load_any_model(base.artifact_path, device=ctx.device)
    scored = score_parts(active, heldout, ctx.scaled_progress(*span) if span else None)
    return rates(scored.scores, scored.labels, base.threshold)
