"""A feedback scorer: a calibrated p(defect) learned from inspector labels.

Input per part: the one-class detector's anomaly score and its per-image vector (the
anomaly-focused embedding PatchCore and CLIP store with every prediction); output: a calibrated
defect probability and a verdict at an FNR-first threshold. Scikit-learn, seconds to train,
saved as safetensors + JSON (never pickle).

Typical use::

    scorer, report = train_feedback_scorer(scores, vectors, labels, detector=identity)
    p = scorer.predict_proba(new_scores, new_vectors)      # (N,) p(defect)
    scorer.save(directory); FeedbackScorer.load(directory)
"""

from adcore.feedback_scorer.scorer import (
    DETECTORS_WITHOUT_VECTORS,
    KIND,
    DetectorIdentity,
    FeedbackScorer,
    features,
    stack_vectors,
)
from adcore.feedback_scorer.training import (
    MIN_PER_CLASS,
    ScorerConfig,
    ScorerReport,
    train_feedback_scorer,
)

__all__ = [
    "DETECTORS_WITHOUT_VECTORS",
    "KIND",
    "MIN_PER_CLASS",
    "DetectorIdentity",
    "FeedbackScorer",
    "ScorerConfig",
    "ScorerReport",
    "features",
    "stack_vectors",
    "train_feedback_scorer",
]
