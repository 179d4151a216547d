"""Choosing the decision threshold that turns an anomaly score into a good/defect verdict.

A part is flagged as defect when ``score >= threshold`` (label 1 = defect, 0 = good). Missing
a defect costs more than a false alarm, so the primary rule bounds the false-negative rate
(FNR) and, within that bound, makes false alarms as rare as possible. When no defect has been
labelled yet, the fallback is a high quantile of the good-part scores.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from adcore.audit import MissRateEstimate
from adcore.metrics import rates_at_threshold

__all__ = [
    "DEFAULT_GOOD_QUANTILE",
    "DEFAULT_TARGET_FNR",
    "SafeThreshold",
    "ThresholdChoice",
    "ThresholdRule",
    "cap_censored_raise",
    "fnr_fpr_curve",
    "select_threshold",
]

DEFAULT_TARGET_FNR = 0.01
"""Default upper bound on the fraction of labelled defects a threshold may miss."""

DEFAULT_GOOD_QUANTILE = 0.99
"""Default quantile of good-part scores used when no defect is labelled (about 1% FPR)."""

ThresholdRule = Literal["fnr_target", "good_quantile"]


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and how well it does on the data it was chosen on.

    Attributes:
        value: The threshold; flag a part when ``score >= value``.
        rule: ``"fnr_target"`` (labelled defects were available) or ``"good_quantile"``
            (fallback without labelled defects).
        target_fnr: The FNR bound used by ``"fnr_target"``; None for ``"good_quantile"``.
        good_quantile: The quantile used by ``"good_quantile"``; None for ``"fnr_target"``.
        fnr: Achieved FNR on the labelled defects; None when there are none.
        fpr: Achieved FPR on the good parts; None when there are none.
        n_good: Number of good scores used.
        n_defect: Number of defect scores used.
    """

    value: float
    rule: ThresholdRule
    target_fnr: float | None
    good_quantile: float | None
    fnr: float | None
    fpr: float | None
    n_good: int
    n_defect: int


def _check_inputs(scores: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validates scores (N,) and optional labels (N,); missing labels mean all good."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be a 1-D array, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError("no scores to choose a threshold from: score at least one good part first")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if labels is None:
        return scores, np.zeros(scores.size, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must have the same shape, got {labels.shape} and {scores.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must contain only 0 (good) and 1 (defect)")
    return scores, labels.astype(np.int64)


def _max_misses(target_fnr: float, n_defect: int) -> int:
    """Returns the largest k with ``k / n_defect <= target_fnr`` in float arithmetic.

    ``floor(target_fnr * n_defect)`` alone can be off by one through rounding (for example
    ``0.29 * 100 == 28.999...``); the adjustment makes it agree with how FNR is reported.
    """
    k = math.floor(target_fnr * n_defect)
    while k + 1 < n_defect and (k + 1) / n_defect <= target_fnr:
        k += 1
    while k > 0 and k / n_defect > target_fnr:
        k -= 1
    return k


def select_threshold(
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    target_fnr: float = DEFAULT_TARGET_FNR,
    good_quantile: float = DEFAULT_GOOD_QUANTILE,
) -> ThresholdChoice:
    """Chooses a decision threshold from scored parts.

    With at least one labelled defect (rule ``"fnr_target"``) the threshold is the one with
    the lowest FPR among those whose FNR on the given defects is at most ``target_fnr``. With
    ``k`` the largest number of misses the target allows, that is the ``k``-th smallest
    (0-based) defect score itself: ``score >= value`` misses at most ``k`` defects (fewer
    when scores tie), while any higher threshold would miss at least ``k + 1``.

    Without labelled defects (rule ``"good_quantile"``) the threshold is
    ``np.quantile(good_scores, good_quantile, method="higher")``: an observed good score, so
    roughly ``1 - good_quantile`` of the good parts (at least one of them) score at or above
    it and would be flagged. The achieved FPR is reported.

    Args:
        scores: (N,) float array of anomaly scores, higher = more anomalous.
        labels: (N,) int array, 1 = defect, 0 = good; None means every part is good.
        target_fnr: Largest acceptable FNR, in [0, 1). 0 flags every labelled defect.
        good_quantile: Quantile of good scores for the fallback rule, in (0, 1].

    Returns:
        The chosen threshold with the rule used and the FNR/FPR it achieves on the inputs.

    Raises:
        ValueError: If there are no scores, shapes differ, labels are not 0/1, a score is
            NaN, or ``target_fnr`` / ``good_quantile`` are out of range.
    """
    if not 0.0 <= target_fnr < 1.0:
        raise ValueError(f"target_fnr must be in [0, 1), got {target_fnr}")
    if not 0.0 < good_quantile <= 1.0:
        raise ValueError(f"good_quantile must be in (0, 1], got {good_quantile}")
    scores, labels = _check_inputs(scores, labels)
    n_defect = int(np.count_nonzero(labels == 1))
    n_good = int(labels.size - n_defect)

    if n_defect > 0:
        defect_scores = np.sort(scores[labels == 1])
        value = float(defect_scores[_max_misses(target_fnr, n_defect)])
        rates = rates_at_threshold(labels, scores, value)
        return ThresholdChoice(
            value=value,
            rule="fnr_target",
            target_fnr=float(target_fnr),
            good_quantile=None,
            fnr=rates.fnr,
            fpr=rates.fpr if n_good > 0 else None,
            n_good=n_good,
            n_defect=n_defect,
        )

    value = float(np.quantile(scores, good_quantile, method="higher"))
    rates = rates_at_threshold(labels, scores, value)
    return ThresholdChoice(
        value=value,
        rule="good_quantile",
        target_fnr=None,
        good_quantile=float(good_quantile),
        fnr=None,
        fpr=rates.fpr,
        n_good=n_good,
        n_defect=0,
    )


def fnr_fpr_curve(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Computes FNR and FPR at every distinct threshold, for a live threshold preview.

    Computed with ``sklearn.metrics.roc_curve`` (``fnr = 1 - tpr``) keeping every distinct
    score as a threshold. The arrays are returned in *ascending* threshold order, so
    ``np.searchsorted(thresholds, t)`` finds the operating point of a threshold ``t``; FNR is
    then non-decreasing and FPR non-increasing. The last threshold is ``+inf`` (nothing
    flagged: FNR 1, FPR 0).

    Args:
        labels: (N,) int array, 1 = defect, 0 = good.
        scores: (N,) float array, higher = more anomalous.

    Returns:
        ``(thresholds, fnr, fpr)``, each of shape (M,) with M = distinct scores + 1. FNR is
        all nan when there is no defect, FPR all nan when there is no good part.

    Raises:
        ValueError: If there are no scores, shapes differ, labels are not 0/1 or a score is
            NaN.
    """
    scores, labels = _check_inputs(scores, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    return thresholds[::-1].copy(), (1.0 - tpr)[::-1].copy(), fpr[::-1].copy()


@dataclass(frozen=True)
class SafeThreshold:
    """A threshold chosen from reviewed parts, after the no-raise-on-censored-reviews rule.

    Attributes:
        value: The threshold to use.
        chosen: What the FNR-first rule picked on the reviewed parts.
        ceiling: Highest value allowed without audit evidence (the model's calibrated
            threshold, or the one in force when that is unknown); None means no ceiling.
        capped: Whether ``chosen`` was lowered to ``ceiling``.
        note: One sentence on what was decided and why.
    """

    value: float
    chosen: float
    ceiling: float | None
    capped: bool
    note: str


def cap_censored_raise(
    chosen: float,
    ceiling: float | None,
    audit: MissRateEstimate,
    target_miss_rate: float,
) -> SafeThreshold:
    """Keep a threshold chosen on reviewed parts from rising on censored evidence alone.

    Reviewed parts are censored: inspectors see only parts that scored near or above the
    threshold, so a threshold chosen on them says nothing about the defects that would pass
    unseen if it were raised. A chosen value at or below the ceiling is used as it is (lowering
    is always safe). Above the ceiling it is used only when audits of passed parts show the
    miss rate among them stays within ``target_miss_rate`` (the upper end of the 95% interval,
    :meth:`adcore.audit.MissRateEstimate.within`); otherwise the ceiling is used.

    Args:
        chosen: The threshold the FNR-first rule chose on reviewed parts.
        ceiling: The model's calibrated threshold (from held-out good training images), or the
            threshold in force when that is unknown; None for no ceiling (nothing to protect).
        audit: The miss-rate estimate from audited passed parts.
        target_miss_rate: The highest acceptable miss rate among passed parts.

    Returns:
        The decision, with a note for the UI.
    """
    if ceiling is None or chosen <= ceiling:
        return SafeThreshold(chosen, chosen, ceiling, False, "Chosen on the reviewed parts.")
    evidence = (
        f"audits found {audit.n_missed} defect(s) among {audit.n_audited} passed part(s)"
        if audit.n_audited
        else "no passed part has been audited yet"
    )
    if audit.within(target_miss_rate):
        return SafeThreshold(
            chosen,
            chosen,
            ceiling,
            False,
            f"Raised above the calibrated threshold {ceiling:.6g}: {evidence} (miss rate at "
            f"most {audit.high:.1%} at 95% confidence, target {target_miss_rate:.1%}).",
        )
    bound = "" if audit.high is None else f", up to {audit.high:.1%} at 95% confidence"
    return SafeThreshold(
        ceiling,
        chosen,
        ceiling,
        True,
        f"Capped at the calibrated threshold {ceiling:.6g} (the reviewed parts alone asked "
        f"for {chosen:.6g}): {evidence}{bound}, so raising it could let defects pass unseen "
        f"(target {target_miss_rate:.1%}).",
    )
