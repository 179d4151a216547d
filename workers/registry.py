"""The job kinds a worker can run: a registry ``kind -> job function``.

The job kinds are use cases: their names are :class:`services.training.job_kinds.JobKind` and
their functions live in :mod:`services.training`. This module only maps a kind to its function,
importing the job modules on first use (so a worker starts without loading torch):

* ``refit_detector`` / ``recalibrate_threshold``: refit the project's one-class detector, or
  choose its threshold again from the labelled parts (:mod:`services.training.detector_jobs`).
* ``train_classifier``: a supervised good/defect classifier from the inspectors' labels
  (:mod:`services.training.classifier_jobs`).
* ``tune_explainer``: a LoRA adapter of the explanation language model from the inspectors'
  notes (:mod:`services.training.explainer_jobs`).
* ``train_clip`` / ``tune_clip``: start a zero-/few-shot CLIP detector, and adapt the active
  one with LoRA on the labelled parts (:mod:`services.training.clip_jobs`).
* ``train_feedback_scorer``: a calibrated p(defect) from the active detector's scores and
  per-image vectors of the labelled parts (:mod:`services.training.scorer_jobs`).

Other modules add kinds with :func:`register_job_kind`; the worker imports extra modules
given with ``--job-module`` (tests use this for a slow test kind).

Retry after a worker died: when a worker is killed or crashes mid-job, the job is queued again
once if its kind is declared safe to retry (:data:`BUILTIN_RETRY_SAFETY`, or ``retry_safe=True``
at registration), else failed with the reason (:func:`db.job_workers.recover_orphaned_jobs`).
A kind is safe when running it again from the start cannot double or half-apply anything: it
only reads until it registers one candidate version at its very end
(:func:`services.training.candidates.save_candidate`), which is never activated by the job.
Kinds declare it explicitly; a kind that says nothing is not retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.training.context import JobContext, JobOutcome
from services.training.job_kinds import JobKind

JobFunction = Callable[[JobContext], JobOutcome | None]

BUILTIN_RETRY_SAFETY: dict[str, bool] = {
    # Read the labelled parts, fit or score, then register one candidate at the end: running
    # them again makes a fresh candidate (the worst case, a kill between registering and
    # finishing, leaves one extra candidate that nobody promoted).
    JobKind.REFIT_DETECTOR: True,
    JobKind.RECALIBRATE_THRESHOLD: True,
    JobKind.TRAIN_CLASSIFIER: True,
    JobKind.TRAIN_FEEDBACK_SCORER: True,
    JobKind.TRAIN_CLIP: True,
    # LoRA fine-tuning of the language model and of CLIP also register a candidate only at the
    # end, but they are by far the largest memory users and run for many minutes: when their
    # worker dies, the likeliest cause is the job itself (the kernel's out-of-memory killer),
    # so a retry would most likely kill the new worker too and hold the queue for another long
    # run. They fail with the reason; a manager queues them again, e.g. with smaller settings.
    JobKind.TUNE_EXPLAINER: False,
    JobKind.TUNE_CLIP: False,
    # Learns nothing twice (the model keeps the digests of what it learned) and its per-project
    # lock dies with the worker (services.training.instant_learning).
    JobKind.INSTANT_UPDATE: True,
}
"""Built-in kind -> whether it is queued again once after its worker died (see above)."""

JOB_KINDS: dict[str, JobFunction] = {}
"""kind -> job function. Do not edit directly; use :func:`register_job_kind`."""
RETRY_SAFETY: dict[str, bool] = {}
"""kind -> safe to retry, as declared at registration (overrides :data:`BUILTIN_RETRY_SAFETY`)."""


def register_job_kind(
    kind: str,
    function: JobFunction | None = None,
    *,
    replace: bool = False,
    retry_safe: bool | None = None,
):
    """Register a job function under ``kind`` (usable as a decorator).

    Args:
        kind: The job kind stored in ``Job.kind`` (at most 32 characters).
        function: The job function; omit it to use this as a decorator.
        replace: Allow replacing an existing registration.
        retry_safe: Whether a job of this kind may run again from the start after its worker
            died (see the module's docstring); ``None`` keeps the built-in declaration, or
            "not safe" for a new kind.

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
        if retry_safe is not None:
            RETRY_SAFETY[kind] = retry_safe
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


def retry_safe_kinds() -> frozenset[str]:
    """The kinds whose jobs are queued again once after their worker died.

    Needs no job module imported: the built-ins are declared in :data:`BUILTIN_RETRY_SAFETY`.
    """
    declared = {**BUILTIN_RETRY_SAFETY, **RETRY_SAFETY}
    return frozenset(kind for kind, safe in declared.items() if safe)


def _register_builtins() -> None:
    from services.training import detector_jobs

    register_job_kind(JobKind.REFIT_DETECTOR, detector_jobs.refit_detector, replace=True)
    register_job_kind(
        JobKind.RECALIBRATE_THRESHOLD, detector_jobs.recalibrate_threshold, replace=True
    )
    from services.training import classifier_jobs

    register_job_kind(JobKind.TRAIN_CLASSIFIER, classifier_jobs.train_classifier_job, replace=True)
    from services.training import explainer_jobs

    register_job_kind(JobKind.TUNE_EXPLAINER, explainer_jobs.tune_explainer_job, replace=True)
    from services.training import clip_jobs

    register_job_kind(JobKind.TRAIN_CLIP, clip_jobs.train_clip_job, replace=True)
    register_job_kind(JobKind.TUNE_CLIP, clip_jobs.tune_clip_job, replace=True)
    from services.training import scorer_jobs

    register_job_kind(
        JobKind.TRAIN_FEEDBACK_SCORER, scorer_jobs.train_feedback_scorer_job, replace=True
    )
    from services.training import instant_learning

    register_job_kind(JobKind.INSTANT_UPDATE, instant_learning.instant_update_job, replace=True)


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
