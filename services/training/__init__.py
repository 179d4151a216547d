"""Training use cases: the job kinds a worker runs and how their candidates are evaluated.

Each job kind is a plain ``fn(ctx)`` function (:class:`services.training.context.JobContext`)
defined here, next to the use case it serves; the runtime (:mod:`workers`) only claims the job,
maps its kind (:class:`services.training.job_kinds.JobKind`) to the function through
:mod:`workers.registry`, runs it and records the outcome.

* Job kinds: :mod:`~services.training.detector_jobs` (refit, recalibrate),
  :mod:`~services.training.classifier_jobs`, :mod:`~services.training.clip_jobs`,
  :mod:`~services.training.explainer_jobs`, :mod:`~services.training.scorer_jobs`,
  :mod:`~services.training.instant_learning` (instant updates); what a job function gets and
  returns: :mod:`~services.training.context`.
* What they share: which parts they learn from and are judged on
  (:mod:`~services.training.training_data`), scoring held-out parts
  (:mod:`~services.training.evaluation`), choosing a threshold safely
  (:mod:`~services.training.threshold_choice`), comparing a candidate with the active version
  (:mod:`~services.training.candidate_evaluation`) and registering it
  (:mod:`~services.training.candidates`).

Importing this package imports nothing else: the runtime's registry imports the job modules
only when a worker first looks a kind up, so starting a worker stays cheap.
"""
