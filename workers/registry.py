"""The job kinds a worker can run: a registry ``kind -> job function``.

Built-in kinds:

* ``refit_detector``: refit the project's one-class detector on its training images plus
  every image whose current human label is good (:func:`workers.detector_jobs.refit_detector`).
* ``recalibrate_threshold``: choose the threshold again from the labelled parts, FNR first
  (:func:`workers.detector_jobs.recalibrate_threshold`).
* ``train_classifier``: a supervised good/defect classifier from the inspectors' labels
  (:func:`workers.classifier_jobs.train_classifier_job`).
* ``tune_explainer``: a LoRA adapter of the explanation language model from the inspectors'
  notes (:func:`workers.explainer_jobs.tune_explainer_job`).
* ``train_clip`` / ``tune_clip``: start a zero-/few-shot CLIP detector, and adapt the active
  one with LoRA on the labelled parts (:mod:`workers.clip_jobs`).
* ``train_feedback_scorer``: a calibrated p(defect) from the active detector's scores and
  per-image vectors of the labelled parts (:func:`workers.scorer_jobs.train_feedback_scorer_job`).

Other modules add kinds with :func:`register_job_kind`; the worker imports extra modules
given with ``--job-module`` (tests use this for a slow test kind).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.context import JobContext, JobOutcome

JobFunction = Callable[[JobContext], JobOutcome | None]

REFIT_DETECTOR = "refit_detector"
RECALIBRATE_THRESHOLD = "recalibrate_threshold"
TRAIN_CLASSIFIER = "train_classifier"
TUNE_EXPLAINER = "tune_explainer"

JOB_KINDS: dict[str, JobFunction] = {}
"""kind -> job function. Do not edit directly; use :func:`register_job_kind`."""


def register_job_kind(kind: str, function: JobFunction | None = None, *, replace: bool = False):
    """Register a job function under ``kind`` (usable as a decorator).

    Args:
        kind: The job kind stored in ``Job.kind`` (at most 32 characters).
        function: The job function; omit it to use this as a decorator.
        replace: Allow replacing an existing registration.

    Returns:
        The function (or a decorator).

    Raises:
        ValueError: If the kind is taken (and ``replace`` is false) or too long.
    """
    if not kind or len(kind) > 32:
        raise ValueError(f"A job kind must be 1 to 32 characters, got {kind!r}.")

    def add(fn: JobFunction) -> JobFunction:
        if kind in JOB_KINDS and JOB_KINDS[kind] is not fn and not replace:
            raise ValueError(f"Job kind {kind!r} is already registered.")
        JOB_KINDS[kind] = fn
        return fn

    return add if function is None else add(function)


def job_function(kind: str) -> JobFunction:
    """Return the function of a kind (built-ins are registered on first use).

    Raises:
        LookupError: For an unknown kind.
    """
    _register_builtins()
    try:
        return JOB_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(JOB_KINDS)) or "none"
        raise LookupError(f"Unknown job kind {kind!r} (known: {known}).") from None


def known_kinds() -> list[str]:
    """The registered kinds, sorted."""
    _register_builtins()
    return sorted(JOB_KINDS)


def _register_builtins() -> None:
    from workers import detector_jobs

    register_job_kind(REFIT_DETECTOR, detector_jobs.refit_detector, replace=True)
    register_job_kind(RECALIBRATE_THRESHOLD, detector_jobs.recalibrate_threshold, replace=True)
    from workers import classifier_jobs

    register_job_kind(TRAIN_CLASSIFIER, classifier_jobs.train_classifier_job, replace=True)
    from workers import explainer_jobs

    register_job_kind(TUNE_EXPLAINER, explainer_jobs.tune_explainer_job, replace=True)
    from workers import clip_jobs

    register_job_kind(clip_jobs.TRAIN_CLIP, clip_jobs.train_clip_job, replace=True)
    register_job_kind(clip_jobs.TUNE_CLIP, clip_jobs.tune_clip_job, replace=True)
    from workers import scorer_jobs

    register_job_kind(
        scorer_jobs.TRAIN_FEEDBACK_SCORER, scorer_jobs.train_feedback_scorer_job, replace=True
    )


def describe_outcome(outcome: Any) -> JobOutcome:
    """Normalise what a job function returned into a :class:`JobOutcome`."""
    if isinstance(outcome, JobOutcome):
        return outcome
    if outcome is None:
        return JobOutcome("Done")
    if isinstance(outcome, dict):
        return JobOutcome(
            str(outcome.get("message", "Done")),
            outcome.get("model_version_id"),
            {k: v for k, v in outcome.items() if k not in {"message", "model_version_id"}},
        )
    return JobOutcome(str(outcome))
