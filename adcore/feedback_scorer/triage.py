"""The triage model (stage 2 of the decision cascade): which flagged parts to auto-accept.

The screen (the detector at its threshold) flags parts; the triage model is a feedback scorer
trained on the *flagged* parts only, which are fully labelled while stage 2 is off (every
flagged part goes to a human) and labelled by audits with known odds once it is on (each
audited label weighs 1 / its probability). It auto-accepts a flagged part as good when its
p(defect) is below the **auto-accept threshold**.

* **The threshold** (:func:`choose_auto_accept_threshold`) is the highest one whose
  auto-accepted share of flagged defects stays within the project's budget *with 95%
  confidence*: the upper end of the two-sided Clopper-Pearson interval (``scipy.stats.beta``;
  with weights, on Kish's effective number of defects) must not exceed the budget. It is
  chosen on out-of-fold probabilities, never on a part's own fit. With zero auto-accepted
  defects the bound is ``1 - (alpha/2)^(1/n)``: a 2% budget needs at least 183 labelled
  flagged defects before anything can be auto-accepted (:func:`min_defects`).
* **The evidence** (:func:`triage_evidence`) is nested cross-validation: in each outer fold
  the whole training (strength, calibration, threshold) runs on the other folds, and the held
  fold is decided by that model at that threshold. The aggregated decisions say how many
  flagged goods and defects the rule would have auto-accepted on parts it was neither trained
  nor tuned on; the gate (:meth:`TriageEvidence.passed`) switches stage 2 on only when it
  auto-accepts some goods and the share of flagged defects it auto-accepted there is within
  the budget: it then sends fewer good parts to a human than the screen alone at the same
  miss budget. (The threshold itself already keeps the 95% *upper bound* within the budget
  on the parts it is chosen on; the gate checks that the rule keeps its promise on parts it
  never saw, and shows that bound too.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from adcore.errors import DatasetError
from adcore.feedback_scorer.scorer import DetectorIdentity, FeedbackScorer
from adcore.feedback_scorer.training import (
    ScorerConfig,
    ScorerReport,
    ThresholdRule,
    train_feedback_scorer,
)

DEFAULT_CONFIDENCE = 0.95
AUTO_ACCEPT_RULE = "auto_accept_budget"
NO_AUTO_ACCEPT_RULE = "no_auto_accept"
NO_AUTO_ACCEPT = 0.0
"""The threshold that auto-accepts nothing (``p >= 0`` always: every flagged part to a human)."""


def min_defects(budget: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """Fewest labelled flagged defects for which auto-accepting none of them meets the budget.

    The upper end of the two-sided Clopper-Pearson interval of 0 of n is
    ``1 - (alpha / 2) ** (1 / n)``; it is at most ``budget`` from this n on.

    Raises:
        ValueError: If the budget is not in (0, 1) or the confidence not in (0, 1).
    """
    _check(budget, confidence)
    return math.ceil(math.log((1 - confidence) / 2) / math.log(1 - budget))


def defect_share_upper(
    accepted_weight: float, defect_weights: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> float:
    """Upper end of the two-sided Clopper-Pearson interval of the auto-accepted defect share.

    Args:
        accepted_weight: Summed weight of the auto-accepted defects.
        defect_weights: (D,) weights of all labelled flagged defects (1 / audit probability).
        confidence: The interval's level.

    Returns:
        The upper end (1.0 without defects). With unit weights it is the exact interval;
        with weights it uses Kish's effective sample size.
    """
    from scipy.stats import beta

    total = float(defect_weights.sum())
    if total <= 0:
        return 1.0
    n_eff = total**2 / float((defect_weights**2).sum())
    x = n_eff * accepted_weight / total
    if x >= n_eff - 1e-12:
        return 1.0
    return float(beta.ppf(1 - (1 - confidence) / 2, x + 1, n_eff - x))


@dataclass(frozen=True)
class TriageChoice:
    """An auto-accept threshold and what it accepts on the parts it was chosen on.

    Attributes:
        threshold: Auto-accept a flagged part when ``p < threshold``
            (:data:`NO_AUTO_ACCEPT` when the budget allows none).
        rule: :data:`AUTO_ACCEPT_RULE`, or :data:`NO_AUTO_ACCEPT_RULE`.
        accepted_goods_share: Weighted share of flagged goods auto-accepted.
        accepted_defects: Flagged defects auto-accepted (count).
        defect_upper: The 95% upper bound on the auto-accepted defect share.
        defects_needed: More labelled flagged defects needed before any can be accepted.
    """

    threshold: float
    rule: str
    accepted_goods_share: float
    accepted_defects: int
    defect_upper: float
    defects_needed: int


def choose_auto_accept_threshold(
    probabilities: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    budget: float,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TriageChoice:
    """The highest auto-accept threshold whose defect bound stays within ``budget``.

    Args:
        probabilities: (N,) out-of-fold p(defect) of labelled flagged parts.
        labels: (N,) 1 = defect, 0 = good.
        weights: (N,) 1 / audit probability of each label.
        budget: Most of the flagged defects that may be auto-accepted (upper bound).
        confidence: The bound's confidence level.

    Returns:
        The choice (threshold :data:`NO_AUTO_ACCEPT` when nothing can be accepted).
    """
    _check(budget, confidence)
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    w = np.asarray(weights, dtype=np.float64).ravel()
    defect_weights = w[y]
    needed = max(0, min_defects(budget, confidence) - int(y.sum()))
    values = np.unique(p)
    best = (NO_AUTO_ACCEPT, 0.0, 0, defect_share_upper(0.0, defect_weights, confidence))
    good_total = float(w[~y].sum())
    for index in range(1, values.size + 1):  # accept every p below values[index] (or all)
        cut = (values[index - 1] + values[index]) / 2 if index < values.size else 1.0 + 1e-9
        accepted = p < cut
        upper = defect_share_upper(float(w[accepted & y].sum()), defect_weights, confidence)
        if upper > budget:
            break
        goods = float(w[accepted & ~y].sum()) / good_total if good_total > 0 else 0.0
        best = (float(cut), goods, int((accepted & y).sum()), upper)
    threshold, goods_share, accepted_defects, upper = best
    rule = AUTO_ACCEPT_RULE if threshold > NO_AUTO_ACCEPT else NO_AUTO_ACCEPT_RULE
    return TriageChoice(threshold, rule, goods_share, accepted_defects, upper, needed)


def auto_accept_rule(budget: float, confidence: float = DEFAULT_CONFIDENCE) -> ThresholdRule:
    """The threshold rule for :func:`adcore.feedback_scorer.train_feedback_scorer`."""

    def rule(probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray):
        choice = choose_auto_accept_threshold(
            probabilities, labels, weights, budget=budget, confidence=confidence
        )
        return choice.threshold, choice.rule

    return rule


@dataclass(frozen=True)
class TriageEvidence:
    """Out-of-fold decisions of the whole triage training (nested cross-validation).

    Attributes:
        folds: Outer folds.
        n_goods: Labelled flagged goods.
        n_defects: Labelled flagged defects.
        accepted_goods_share: Weighted share of those goods the rule auto-accepted.
        accepted_goods: Goods auto-accepted (count).
        accepted_defects: Defects auto-accepted (count).
        accepted_defects_share: Weighted share of the flagged defects auto-accepted.
        defect_upper: 95% upper bound on the auto-accepted share of flagged defects.
        budget: The budget it is held to.
        defects_needed: More labelled flagged defects needed before the nested check can
            accept any (:func:`nested_defects_needed`).
    """

    folds: int
    n_goods: int
    n_defects: int
    accepted_goods_share: float
    accepted_goods: int
    accepted_defects: int
    accepted_defects_share: float
    defect_upper: float
    budget: float
    defects_needed: int

    @property
    def passed(self) -> bool:
        """Fewer goods to a human than the screen alone, defects within the budget."""
        return self.accepted_goods > 0 and self.accepted_defects_share <= self.budget

    def reasons(self) -> list[str]:
        """Why stage 2 stays off (empty when it passed)."""
        reasons = []
        if self.defects_needed > 0:
            reasons.append(
                f"It needs {self.defects_needed} more labelled flagged defects before the 95% "
                f"bound on auto-accepted defects can be within the budget of {self.budget:.1%} "
                "in every training of the out-of-fold check (each sees all folds but one)."
            )
        if self.accepted_defects_share > self.budget:
            reasons.append(
                f"Out of fold it auto-accepted {self.accepted_defects_share:.1%} of the flagged "
                f"defects ({self.accepted_defects} of {self.n_defects}), above the budget of "
                f"{self.budget:.1%}."
            )
        if self.accepted_goods == 0:
            reasons.append(
                "Out of fold it would auto-accept no flagged good part: it would not lower "
                "the inspectors' load."
            )
        return reasons

    def sentence(self) -> str:
        """E.g. "would have auto-accepted 48% of flagged goods and 1 of 61 flagged defects"."""
        return (
            f"Out of fold it would have auto-accepted {self.accepted_goods_share:.0%} of "
            f"{self.n_goods} flagged good parts and {self.accepted_defects} of "
            f"{self.n_defects} flagged defects (95% upper bound {self.defect_upper:.1%}, "
            f"budget {self.budget:.1%})."
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``passed``, ``reasons`` and ``sentence``)."""
        return {
            **asdict(self),
            "passed": self.passed,
            "reasons": self.reasons(),
            "sentence": self.sentence(),
        }


def triage_evidence(
    scores: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    budget: float,
    config: ScorerConfig,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TriageEvidence:
    """Nested cross-validation of the triage training (see the module docstring).

    Args:
        scores: (N,) detector scores of labelled flagged parts.
        vectors: (N, D) their detector vectors.
        labels: (N,) 1 = defect, 0 = good.
        weights: (N,) 1 / audit probability of each label.
        budget: The auto-accept budget.
        config: Training settings (folds, strengths, seed).
        confidence: The bound's confidence level.

    Returns:
        The aggregated out-of-fold decisions. A fold whose training parts are too few to
        train on auto-accepts nothing.
    """
    y = np.asarray(labels).ravel().astype(np.int64)
    w = np.asarray(weights, dtype=np.float64).ravel()
    n_defect, n_good = int(y.sum()), int(y.size - y.sum())
    accepted = np.zeros(y.size, dtype=bool)
    folds = min(config.folds, n_defect, n_good)
    if folds >= 2:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=config.seed + 1)
        rule = auto_accept_rule(budget, confidence)
        for fit_rows, check_rows in splitter.split(np.zeros(y.size), y):
            fit_y = y[fit_rows]
            if min(int(fit_y.sum()), int(fit_y.size - fit_y.sum())) < config.min_per_class:
                continue
            model, _ = train_feedback_scorer(
                scores[fit_rows],
                vectors[fit_rows],
                fit_y,
                config=config,
                sample_weight=w[fit_rows],
                choose_threshold=rule,
            )
            p = model.predict_proba(scores[check_rows], vectors[check_rows])
            accepted[check_rows] = p < float(model.threshold or NO_AUTO_ACCEPT)
    defect = y == 1
    good_weight = float(w[~defect].sum())
    defect_weight = float(w[defect].sum())
    return TriageEvidence(
        folds=int(max(folds, 0)),
        n_goods=n_good,
        n_defects=n_defect,
        accepted_goods_share=float(w[accepted & ~defect].sum()) / good_weight
        if good_weight > 0
        else 0.0,
        accepted_goods=int((accepted & ~defect).sum()),
        accepted_defects=int((accepted & defect).sum()),
        accepted_defects_share=float(w[accepted & defect].sum()) / defect_weight
        if defect_weight > 0
        else 0.0,
        defect_upper=defect_share_upper(float(w[accepted & defect].sum()), w[defect], confidence),
        budget=float(budget),
        defects_needed=nested_defects_needed(n_defect, budget, config.folds, confidence),
    )


def nested_defects_needed(
    n_defects: int, budget: float, folds: int, confidence: float = DEFAULT_CONFIDENCE
) -> int:
    """More labelled flagged defects before the nested check can auto-accept anything.

    Each training inside the nested cross-validation sees ``(folds - 1) / folds`` of the
    defects, and each needs :func:`min_defects` of them for its bound to fit the budget.
    """
    k = max(2, int(folds))
    return max(0, math.ceil(min_defects(budget, confidence) * k / (k - 1)) - int(n_defects))


def train_triage_model(
    scores: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    budget: float,
    detector: DetectorIdentity | None = None,
    digests: Sequence[str] | None = None,
    config: ScorerConfig | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[FeedbackScorer, ScorerReport, TriageEvidence]:
    """Train the triage model on labelled flagged parts, with its out-of-fold evidence.

    Args:
        scores: (N,) detector scores of labelled flagged parts.
        vectors: (N, D) their detector vectors.
        labels: (N,) 1 = defect, 0 = good.
        weights: (N,) 1 / audit probability of each label (1 for parts sent to a human).
        budget: Most of the flagged defects it may auto-accept (95% upper bound).
        detector: The detector the readings come from.
        digests: The parts' sha256 digests.
        config: Training settings.
        confidence: The bound's confidence level.

    Returns:
        The model (its threshold is the auto-accept threshold chosen out of fold on all the
        parts), its training report and the nested evidence the gate reads.

    Raises:
        DatasetError: Too few parts of a class (see :class:`ScorerConfig`), bad vectors.
        ValueError: A budget or confidence outside (0, 1), bad labels or weights.
    """
    _check(budget, confidence)
    config = config or ScorerConfig()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != scores.size:
        raise DatasetError(f"{scores.size} scores but vectors of shape {vectors.shape}.")
    model, report = train_feedback_scorer(
        scores,
        vectors,
        labels,
        detector=detector,
        digests=digests,
        config=config,
        sample_weight=weights,
        choose_threshold=auto_accept_rule(budget, confidence),
    )
    evidence = triage_evidence(
        scores, vectors, labels, weights, budget=budget, config=config, confidence=confidence
    )
    return model, report, evidence


def _check(budget: float, confidence: float) -> None:
    if not 0.0 < float(budget) < 1.0:
        raise ValueError(f"The auto-accept budget must be between 0 and 1, got {budget!r}.")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"The confidence must be between 0 and 1, got {confidence!r}.")
