"""Training a feedback scorer on labelled parts: cross-validated, calibrated, FNR-first.

Steps (all on the parts given; the caller keeps its own held-out parts out):

1. Features ``[score, ||vector||, vector]`` (:func:`adcore.feedback_scorer.scorer.features`).
2. Stratified k-fold (``folds``, at most the smaller class's count): for each regularisation
   strength in ``c_values``, a standardised, class-balanced logistic regression is fitted on
   k - 1 folds and gives decision values on the held-back fold. The strength with the lowest
   class-balanced log loss over the out-of-fold predictions wins.
3. Platt calibration (a 1-D logistic regression, unweighted) on the winner's out-of-fold
   decision values: the class-balanced odds become p(defect) at the training prevalence.
4. The threshold: :func:`adcore.thresholds.select_threshold` (FNR first) on the out-of-fold
   probabilities, so no part's probability comes from a model that saw it.
5. The final linear model is fitted on every part with the winning strength.

Scikit-learn's lbfgs solver on standardised features: 1,000 parts with 150-dimensional vectors
train in well under a second on two CPU cores (``bench/scorer_training.py``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from adcore.detectors.base import known_fields, training_set_hash
from adcore.errors import DatasetError
from adcore.feedback_scorer.scorer import (
    EXTRA_FEATURES,
    DetectorIdentity,
    FeedbackScorer,
    features,
    sigmoid,
)
from adcore.metrics import rates_at_threshold
from adcore.thresholds import DEFAULT_TARGET_FNR, select_threshold

MIN_PER_CLASS = 5
"""Fewest labelled defects and labelled good parts a scorer trains on (one per fold, k >= 5
when both classes have five: fewer gives thresholds and calibrations that are mostly luck)."""

_MIN_PLATT_SLOPE = 1e-6

ThresholdRule = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, str]]
"""Chooses a threshold from (N,) out-of-fold probabilities, labels and weights: (value, rule)."""


@dataclass(frozen=True)
class ScorerConfig:
    """How a feedback scorer is trained.

    Attributes:
        target_fnr: FNR bound of the threshold (on out-of-fold probabilities).
        c_values: Inverse regularisation strengths tried for the logistic regression.
        folds: Cross-validation folds (fewer when a class has fewer parts).
        min_per_class: Fewest parts of each class to train at all.
        max_iter: Iteration limit of the lbfgs solver.
        seed: Seed of the fold assignment.
    """

    target_fnr: float = DEFAULT_TARGET_FNR
    c_values: tuple[float, ...] = (0.01, 0.1, 1.0)
    folds: int = 5
    min_per_class: int = MIN_PER_CLASS
    max_iter: int = 2000
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScorerConfig:
        """A config from a JSON dict (unknown keys, such as job parameters, are ignored)."""
        config = cls(**known_fields(cls, data, tuples=("c_values",)))
        if not 0.0 <= config.target_fnr < 1.0:
            raise ValueError(f"target_fnr must be in [0, 1), got {config.target_fnr}")
        if not config.c_values or min(config.c_values) <= 0:
            raise ValueError(f"c_values must be positive numbers, got {config.c_values}")
        if config.folds < 2 or config.min_per_class < 2:
            raise ValueError("folds and min_per_class must be at least 2")
        return config


@dataclass(frozen=True)
class ScorerReport:
    """What a scorer training run did, measured out of fold (never on the caller's held-out set).

    Attributes:
        n_train: Parts trained on.
        n_good: Of which labelled good.
        n_defect: Of which labelled defect.
        vector_dim: D, the detector vector length.
        folds: Cross-validation folds used.
        chosen_c: The winning regularisation strength.
        cv_log_loss: Class-balanced out-of-fold log loss per strength tried (keys ``str(C)``).
        cv_auroc: Out-of-fold AUROC of p(defect).
        score_auroc: AUROC of the detector score alone on the same parts (for comparison).
        threshold: The chosen probability threshold.
        threshold_rule: How it was chosen (``"fnr_target"``).
        target_fnr: The FNR bound.
        cv_fnr: Out-of-fold FNR at the threshold.
        cv_fpr: Out-of-fold FPR at the threshold.
        platt: ``{"a": slope, "b": offset}`` of the calibration.
        seconds: Wall time of the training.
    """

    n_train: int
    n_good: int
    n_defect: int
    vector_dim: int
    folds: int
    chosen_c: float
    cv_log_loss: dict[str, float]
    cv_auroc: float
    score_auroc: float
    threshold: float
    threshold_rule: str
    target_fnr: float
    cv_fnr: float | None
    cv_fpr: float | None
    platt: dict[str, float]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def train_feedback_scorer(
    scores: np.ndarray,
    vectors: Sequence[np.ndarray | None] | np.ndarray,
    labels: np.ndarray,
    *,
    detector: DetectorIdentity | None = None,
    digests: Sequence[str] | None = None,
    config: ScorerConfig | None = None,
    sample_weight: np.ndarray | None = None,
    choose_threshold: ThresholdRule | None = None,
) -> tuple[FeedbackScorer, ScorerReport]:
    """Train a calibrated feedback scorer (see the module docstring for the steps).

    Args:
        scores: (N,) detector anomaly scores of the labelled parts.
        vectors: (N, D) their detector vectors (or N vectors of shape (D,)).
        labels: (N,) int, 1 = defect, 0 = good.
        detector: The detector the scores and vectors come from (recorded in the model);
            default: an unnamed detector of the vectors' length.
        digests: The parts' sha256 digests (the model's training set), if known.
        config: Training settings; default :class:`ScorerConfig`.
        sample_weight: (N,) positive weights, e.g. 1 / audit probability of each label (the
            known odds it was looked at with); default 1. They multiply the class balance in
            the fits, and weigh the log loss and the calibration.
        choose_threshold: How the threshold is chosen from the (N,) out-of-fold
            probabilities, labels and weights, returning ``(threshold, rule name)``; default
            FNR first (:func:`adcore.thresholds.select_threshold`, unweighted). The triage
            model passes its auto-accept rule (:mod:`adcore.feedback_scorer.triage`).

    Returns:
        The fitted scorer (with its threshold) and the training report.

    Raises:
        DatasetError: Too few parts of a class, missing or ragged vectors, non-finite values.
        ValueError: Labels that are not 0/1, or lengths that differ.
    """
    config = config or ScorerConfig()
    started = time.perf_counter()
    labels = np.asarray(labels).ravel()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must contain only 0 (good) and 1 (defect)")
    labels = labels.astype(np.int64)
    n_defect = int(labels.sum())
    n_good = int(labels.size - n_defect)
    if min(n_defect, n_good) < config.min_per_class:
        raise DatasetError(
            f"A feedback scorer needs at least {config.min_per_class} labelled defects and "
            f"{config.min_per_class} labelled good parts to train on; there are {n_defect} "
            f"defects and {n_good} good parts. Review more parts first."
        )
    x = features(scores, vectors)
    if x.shape[0] != labels.size:
        raise ValueError(f"{x.shape[0]} parts but {labels.size} labels")
    audit_weights = _checked_weights(sample_weight, labels.size)
    folds = min(config.folds, n_defect, n_good)
    cv = cross_validate(x, labels, audit_weights, config, folds)
    chosen, losses, probabilities = cv.chosen_c, cv.losses, cv.probabilities
    platt_a, platt_b = cv.platt_a, cv.platt_b
    if choose_threshold is None:
        fnr_first = select_threshold(probabilities, labels, target_fnr=config.target_fnr)
        threshold_value, threshold_rule = float(fnr_first.value), fnr_first.rule
    else:
        threshold_value, threshold_rule = choose_threshold(probabilities, labels, audit_weights)
    at_threshold = rates_at_threshold(labels, probabilities, threshold_value)
    scaler, model = _fit_linear(x, labels, chosen, config.max_iter, audit_weights)
    dim = x.shape[1] - EXTRA_FEATURES
    digest_list = [str(d) for d in digests] if digests is not None else []
    report = ScorerReport(
        n_train=int(labels.size),
        n_good=n_good,
        n_defect=n_defect,
        vector_dim=int(dim),
        folds=int(folds),
        chosen_c=float(chosen),
        cv_log_loss=losses,
        cv_auroc=float(roc_auc_score(labels, probabilities)),
        score_auroc=float(roc_auc_score(labels, x[:, 0])),
        threshold=float(threshold_value),
        threshold_rule=threshold_rule,
        target_fnr=float(config.target_fnr),
        cv_fnr=_finite_or_none(at_threshold.fnr),
        cv_fpr=_finite_or_none(at_threshold.fpr),
        platt={"a": platt_a, "b": platt_b},
        seconds=time.perf_counter() - started,
    )
    scorer = FeedbackScorer(
        mean=scaler.mean_.astype(np.float64),
        scale=scaler.scale_.astype(np.float64),
        coef=model.coef_[0].astype(np.float64),
        intercept=float(model.intercept_[0]),
        platt_a=platt_a,
        platt_b=platt_b,
        threshold=float(threshold_value),
        detector=detector or DetectorIdentity(None, None, "unknown", int(dim)),
        training_hash=training_set_hash(digest_list) if digest_list else None,
        training_digests=digest_list,
        facts={"report": report.to_json()},
    )
    return scorer, report


@dataclass(frozen=True)
class CrossValidation:
    """The out-of-fold result of the regularisation search and the calibration.

    Attributes:
        chosen_c: The winning inverse regularisation strength.
        losses: Class-balanced out-of-fold log loss per strength (keys ``str(C)``).
        platt_a: Calibration slope.
        platt_b: Calibration offset.
        probabilities: (N,) calibrated out-of-fold p(defect) of the winner.
    """

    chosen_c: float
    losses: dict[str, float]
    platt_a: float
    platt_b: float
    probabilities: np.ndarray


def cross_validate(
    x: np.ndarray, labels: np.ndarray, weights: np.ndarray, config: ScorerConfig, folds: int
) -> CrossValidation:
    """Steps 2 and 3 of the module docstring on (N, F) features ``x``.

    Args:
        x: (N, F) features.
        labels: (N,) 0/1 labels, both classes at least ``folds`` times.
        weights: (N,) audit weights (1 / known probability).
        config: The training settings (strengths, iterations, seed).
        folds: Number of stratified folds.

    Returns:
        The winner and its calibrated out-of-fold probabilities.
    """
    balanced = compute_sample_weight("balanced", labels) * weights
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=config.seed).split(x, labels))
    losses: dict[str, float] = {}
    out_of_fold: dict[float, np.ndarray] = {}
    for c in config.c_values:
        decision = np.empty(labels.size)
        for fit_rows, check_rows in splits:
            scaler, model = _fit_linear(
                x[fit_rows], labels[fit_rows], c, config.max_iter, weights[fit_rows]
            )
            decision[check_rows] = model.decision_function(scaler.transform(x[check_rows]))
        out_of_fold[c] = decision
        losses[str(c)] = float(log_loss(labels, sigmoid(decision), sample_weight=balanced))
    chosen = min(config.c_values, key=lambda c: (losses[str(c)], -c))
    platt_a, platt_b = _platt(out_of_fold[chosen], labels, weights)
    probabilities = sigmoid(platt_a * out_of_fold[chosen] + platt_b)
    return CrossValidation(float(chosen), losses, platt_a, platt_b, probabilities)


def _checked_weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray:
    """(N,) positive finite weights (1 when none are given)."""
    if sample_weight is None:
        return np.ones(n)
    weights = np.asarray(sample_weight, dtype=np.float64).ravel()
    if weights.size != n:
        raise ValueError(f"{n} labels but {weights.size} sample weights")
    if not (np.isfinite(weights).all() and (weights > 0).all()):
        raise ValueError("sample weights must be positive finite numbers")
    return weights


def _fit_linear(
    x: np.ndarray,
    labels: np.ndarray,
    c: float,
    max_iter: int,
    weights: np.ndarray | None = None,
) -> tuple[StandardScaler, LogisticRegression]:
    """A standardiser and a class-balanced (times ``weights``) logistic regression on ``x``."""
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(x), labels, sample_weight=weights)
    return scaler, model


def _platt(
    decision: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """Slope and offset of ``p = sigmoid(a * decision + b)`` fitted to (N,) labels.

    A slope at or below zero (the out-of-fold decisions do not rank defects higher) is raised
    to a tiny positive value, so probabilities stay monotone in the decision value.
    """
    platt = LogisticRegression(C=1e6, max_iter=1000)
    platt.fit(decision.reshape(-1, 1), labels, sample_weight=weights)
    slope = max(float(platt.coef_[0, 0]), _MIN_PLATT_SLOPE)
    return slope, float(platt.intercept_[0])


def _finite_or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
