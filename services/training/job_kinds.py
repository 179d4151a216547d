"""The names of the job kinds: one definition each, used by pages, services and workers.

A job row stores its kind as this string (``Job.kind``), so a member's value never changes.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JobKind"]


class JobKind(StrEnum):
    """The built-in job kinds (a ``str``: compares equal to the stored ``Job.kind``)."""

    REFIT_DETECTOR = "refit_detector"
    """Fit the detector again on the project's good parts (a candidate version)."""
    RECALIBRATE_THRESHOLD = "recalibrate_threshold"
    """Choose the detector's threshold again from the labels (a candidate threshold)."""
    TRAIN_CLASSIFIER = "train_classifier"
    """Train the defect-type classifier on the labelled defects."""
    TUNE_EXPLAINER = "tune_explainer"
    """Tune the explanation rewriter on the inspectors' notes."""
    TRAIN_CLIP = "train_clip"
    """Fit a CLIP detector."""
    TUNE_CLIP = "tune_clip"
    """Tune a CLIP detector's prompts or adapter on the labels."""
    TRAIN_FEEDBACK_SCORER = "train_feedback_scorer"
    """Train the feedback scorer on the inspectors' labels."""
    INSTANT_UPDATE = "instant_update"
    """Learn confirmed good parts into the active model's memory bank at once."""
