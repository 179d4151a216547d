"""Job kind ``train_classifier``: a supervised good/defect classifier from inspector labels.

The labelled parts of the project are split by a stable hash of their bytes: a held-out share
(``holdout_fraction``, default 0.25, both classes) never trains and is where the candidate and
the active classifier are compared for the gate; the rest goes to
:func:`adcore.classifier.train_classifier`, which makes its own stratified validation split for
early stopping and the FNR-first probability threshold. Defect types come from the reviews;
types with too few examples fold into a generic ``"defect"`` (``min_examples_per_type``).

The result is a *candidate* of the ``classifier`` family: promoting it never touches the active
one-class detector (:mod:`db.model_families`).
"""

from __future__ import annotations

from dataclasses import asdict

from adcore.classifier import ClassifierConfig, LabelledImage, train_classifier
from adcore.errors import DatasetError
from adcore.holdout import in_evaluation_share
from db import Label
from db.model_families import ModelFamily, active_version
from db.model_metrics import new_version_metrics
from services.training.candidate_evaluation import evaluate_candidate
from services.training.candidates import project_and_active_detector, save_candidate
from services.training.context import JobContext, JobOutcome
from services.training.evaluation import score_parts
from services.training.training_data import labelled_parts

DEFAULT_CLASSIFIER_HOLDOUT = 0.25
MIN_PER_CLASS = 4
"""Fewest labelled parts of each class (good, defect) the job needs before it trains."""


def train_classifier_job(ctx: JobContext) -> JobOutcome:
    """Train a classifier candidate on the project's labelled parts and gate it.

    Parameters (``ctx.parameters``): ``holdout_fraction`` (default 0.25), ``fpr_margin``, and
    any :class:`~adcore.classifier.ClassifierConfig` field (``backbone``, ``image_size``,
    ``max_epochs``, ...); ``target_fnr`` defaults to the project's.

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: Fewer than :data:`MIN_PER_CLASS` labelled parts of a class.
    """
    params = ctx.parameters
    holdout = float(params.get("holdout_fraction", DEFAULT_CLASSIFIER_HOLDOUT))
    ctx.progress(0.0, "Collecting the labelled parts")
    with ctx.session_factory() as session:
        project, _ = project_and_active_detector(session, ctx)
        active = active_version(session, project.id, ModelFamily.CLASSIFIER)
        parts = labelled_parts(session, project.id, ctx.data_dir)
        target_fnr = float(project.target_fnr)
    heldout = [part for part in parts if in_evaluation_share(part.sha256, holdout)]
    training = [part for part in parts if not in_evaluation_share(part.sha256, holdout)]
    n_defect = sum(part.is_defect for part in training)
    if min(n_defect, len(training) - n_defect) < MIN_PER_CLASS:
        raise DatasetError(
            f"A classifier needs at least {MIN_PER_CLASS} labelled good and {MIN_PER_CLASS} "
            f"labelled defective parts to train on; there are {len(training) - n_defect} good "
            f"and {n_defect} defective (besides {len(heldout)} held out for evaluation)."
        )
    config = ClassifierConfig.from_dict({"target_fnr": min(target_fnr, 0.5), **params})
    samples = [
        LabelledImage(
            part.path,
            Label.DEFECT.value if part.is_defect else Label.GOOD.value,
            part.defect_type if part.is_defect else None,
            part.sha256,
        )
        for part in training
    ]
    ctx.log(f"Training {config.backbone} on {len(samples)} parts ({n_defect} defective)")
    classifier, report = train_classifier(
        samples,
        config,
        progress=ctx.scaled_progress(0.02, 0.85),
        should_stop=ctx.should_stop,
        device=ctx.device,
    )
    scored = score_parts(classifier, heldout, ctx.scaled_progress(0.85, 0.9))
    evaluation = evaluate_candidate(
        ctx,
        scored,
        classifier.threshold,
        base=active,
        heldout=heldout,
        good_share=holdout,
        notes=["The threshold was chosen on the classifier's own validation split."],
        active_span=None,
    )
    report_json = asdict(report)
    report_json.pop("history", None)
    report_json.pop("validation_names", None)
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "n_train": report.n_train,
        "n_validation": report.n_validation,
        "training_report": report_json,
        "heldout": evaluation.candidate.to_json(),
    }
    metrics = new_version_metrics(facts, gate=evaluation.gate)
    snapshot = {
        "training_hash": classifier.training_hash,
        "images": [
            {"sha256": s.sha256, "label": s.label, "defect_type": s.defect_type} for s in samples
        ],
        "heldout": [{"sha256": p.sha256, "label": p.label} for p in heldout],
    }
    ctx.progress(0.95, "Saving the candidate")
    version = save_candidate(ctx, project, classifier, metrics, snapshot, "Classifier")
    return evaluation.outcome(version, "Classifier")
