"""Choosing a detector threshold from reviewed parts, safely, and checking it on other parts.

Two rules keep the learning loop from trading missed defects for fewer false alarms:

* **No raise on censored reviews alone.** Reviewed parts are the ones that scored near or
  above the threshold; a threshold chosen on them may go down freely but above the model's
  calibrated threshold only when audits of passed parts show the miss rate among them stays
  within the project's target (:func:`adcore.thresholds.cap_censored_raise`).
* **Chosen on some parts, checked on others.** The labelled parts are split by a stable hash of
  their content (:func:`split_choose_check`): one share chooses the threshold, the other is
  where the gate compares it with the active version (never the parts it was chosen on).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adcore.audit import MissRateEstimate
from adcore.holdout import hash_position
from adcore.thresholds import SafeThreshold, cap_censored_raise, select_threshold
from services.training.evaluation import ScoredParts
from services.training.training_data import LabelledPart

CHECK_SHARE = 0.5
"""Share of the labelled parts (by content hash) kept to check a chosen threshold."""


def in_check_share(sha256: str, share: float = CHECK_SHARE) -> bool:
    """Whether a labelled part checks thresholds rather than choosing them (stable per image).

    Uses other hex digits of the content hash than the training hold-out
    (:func:`adcore.holdout.in_evaluation_share`), so the two splits are independent.
    """
    return hash_position(sha256, start=8) < share


def split_choose_check(
    parts: Sequence[LabelledPart], share: float = CHECK_SHARE
) -> tuple[list[LabelledPart], list[LabelledPart]]:
    """Split labelled parts into the ones that choose a threshold and the ones that check it.

    Returns:
        (choose, check), each in input order.
    """
    check = [part for part in parts if in_check_share(part.sha256, share)]
    chosen = {part.sha256 for part in check}
    return [part for part in parts if part.sha256 not in chosen], check


def threshold_ceiling(detector: Any, *in_force: float | None) -> float | None:
    """The highest threshold a reviewed-parts choice may reach without audit evidence.

    The detector's calibrated threshold (from held-out good training images); for a model saved
    before that was recorded, the first of ``in_force`` that is set (the threshold in force,
    then any default); None when there is none at all.
    """
    candidates = (getattr(detector, "calibrated_threshold", None), *in_force)
    return next((value for value in candidates if value is not None), None)


def safe_threshold(
    scored: ScoredParts, *, ceiling: float | None, target_fnr: float, audit: MissRateEstimate
) -> SafeThreshold:
    """The FNR-first threshold on the scored (reviewed) parts, capped without audit evidence.

    Args:
        scored: The parts that choose the threshold, scored by the detector.
        ceiling: The detector's calibrated threshold, or the one in force when unknown.
        target_fnr: The project's miss-rate target (also the bound on the miss rate among
            passed parts that allows a raise).
        audit: The project's audit evidence
            (:func:`services.audit_sampling.project_miss_rate`).

    Returns:
        The decision (value, what was chosen, whether it was capped, a note).
    """
    choice = select_threshold(scored.scores, scored.labels, target_fnr=target_fnr)
    return cap_censored_raise(choice.value, ceiling, audit, target_fnr)
