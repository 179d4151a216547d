"""Job kinds for the one-class detector: refit on confirmed-good parts, recalibrate the threshold.

The detectors run in float32 on every device (PatchCore's nearest-neighbour distances lose
too much in float16), so these kinds do not use ``ctx.autocast()``.

Both register a *candidate* model version and never activate it: a manager promotes it through
the gate (:func:`db.model_versions.promote_model_version`). Both evaluate the candidate and
the active model on the same held-out labelled parts (see :mod:`services.training.training_data`)
with :func:`services.training.candidate_evaluation.evaluate_candidate`, and store both sets of
numbers with the gate's verdict (:class:`db.model_metrics.GateRecord`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from adcore.errors import DatasetError
from adcore.holdout import DEFAULT_HOLDOUT_FRACTION
from adcore.persistence import CONFIG_FILE
from db import Label, ModelVersion, Project
from db.model_families import detector_lineage
from db.model_metrics import new_version_metrics
from services.audit_sampling import project_miss_rate
from services.project_settings import clip_setting
from services.training.candidate_evaluation import evaluate_candidate
from services.training.candidates import project_and_active_detector, save_candidate
from services.training.context import JobContext, JobOutcome
from services.training.evaluation import rates, score_parts
from services.training.threshold_choice import (
    CHECK_SHARE,
    safe_threshold,
    split_choose_check,
    threshold_ceiling,
)
from services.training.training_data import (
    LabelledPart,
    TrainingImage,
    held_out_parts,
    labelled_parts,
    locate_snapshot_images,
    snapshot_digests,
)

_MAX_TARGET_FNR = 0.999


def refit_detector(ctx: JobContext) -> JobOutcome:
    """Refit the project's detector on its training images plus the confirmed-good parts.

    Same kind and configuration as the active version (or ``detector_kind`` / ``config``
    parameters when there is none). Parameters: ``holdout_fraction`` (default 0.2),
    ``train_folder`` (where the original training images are, when they are not stored in
    Loupe), ``fpr_margin``.

    Returns:
        The outcome, with the candidate's id.
    """
    params = ctx.parameters
    holdout = float(params.get("holdout_fraction", DEFAULT_HOLDOUT_FRACTION))
    ctx.progress(0.0, "Collecting the training images and labelled parts")
    with ctx.session_factory() as session:
        project, base = project_and_active_detector(session, ctx)
        parts = labelled_parts(session, project.id, ctx.data_dir)
        audit = project_miss_rate(session, project.id)
        snapshot = dict(base.training_snapshot or {}) if base else {}
        snapshot_images, missing = locate_snapshot_images(
            session, project.id, snapshot, ctx.data_dir, params.get("train_folder")
        )
    kind, config = _kind_and_config(base, params)
    if kind == "clip" and base is None:  # the project's CLIP option, then the job's overrides
        config = {**clip_setting(project).detector_config(project.object_name or ""), **config}
    base_trained = set(snapshot_digests(snapshot))
    heldout = held_out_parts(parts, base_trained, holdout)
    training, excluded = _training_set(snapshot_images, parts, heldout, base_trained)
    if missing:
        ctx.log(f"{len(missing)} training image(s) of the base version were not found")
    if excluded:
        ctx.log(f"{len(excluded)} training image(s) now labelled defect were left out")
    if not training and kind != "clip":  # CLIP without references is zero-shot
        raise DatasetError("No good image to refit on: label some parts good first.")
    n_confirmed = sum(image.source == "confirmed_good" for image in training)
    ctx.log(f"Refitting {kind} on {len(training)} images ({n_confirmed} confirmed good)")
    ctx.raise_if_cancelled()
    detector = _fresh_detector(kind, config, base, ctx.device, has_images=bool(training))
    fit = detector.fit([image.path for image in training], ctx.scaled_progress(0.05, 0.7))
    choose, check = split_choose_check(heldout)
    scored = score_parts(detector, choose, ctx.scaled_progress(0.7, 0.75))
    checked = score_parts(detector, check, ctx.scaled_progress(0.75, 0.8))
    notes: list[str] = []
    rule = "calibration"
    if scored.labels.sum() > 0:
        decision = safe_threshold(
            scored,
            ceiling=threshold_ceiling(detector, detector.threshold),
            target_fnr=_target_fnr(project),
            audit=audit,
        )
        detector.with_threshold(decision.value)
        rule = "fnr_target_capped" if decision.capped else "fnr_target"
        notes += [
            decision.note,
            "The candidate's threshold was chosen on one share of the held-out parts (FNR "
            "first) and is checked here on the others.",
        ]
    evaluation = evaluate_candidate(
        ctx,
        checked,
        detector.threshold,
        base=base,
        heldout=check,
        good_share=holdout * CHECK_SHARE,
        notes=notes,
        target_fnr=_target_fnr(project),
    )
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "base_version_id": base.id if base else None,
        "n_train": fit.n_images,
        "n_confirmed_good": n_confirmed,
        "fit_seconds": round(fit.seconds, 3),
        "skipped": [{"name": name, "reason": reason} for name, reason in fit.skipped],
        "missing_training_images": len(missing),
        "excluded_now_defect": len(excluded),
        "threshold_rule": rule,
        "heldout": evaluation.candidate.to_json(),
        **{k: fit.details[k] for k in ("memory_bank_size",) if k in fit.details},
    }
    metrics = new_version_metrics(facts, gate=evaluation.gate)
    new_snapshot = {
        "training_hash": detector.training_hash,
        "base_version_id": base.id if base else None,
        "images": [
            {"sha256": i.sha256, "label": Label.GOOD.value, "source": i.source, "path": str(i.path)}
            for i in training
        ],
        "calibration": [{"sha256": p.sha256, "label": p.label} for p in choose],
        "heldout": [{"sha256": p.sha256, "label": p.label} for p in check],
    }
    ctx.progress(0.9, "Saving the candidate")
    version = save_candidate(ctx, project, detector, metrics, new_snapshot, "Refit")
    return evaluation.outcome(version, "Refit")


def recalibrate_threshold(ctx: JobContext) -> JobOutcome:
    """Choose the active detector's threshold again from the labelled parts, FNR first, safely.

    The labelled parts the detector did not train on are split by content hash
    (:func:`services.training.threshold_choice.split_choose_check`): one share chooses the
    threshold with :func:`adcore.thresholds.select_threshold` for the project's ``target_fnr``,
    the other checks it against the active threshold for the gate. The chosen value may go below
    the detector's calibrated threshold freely, but above it only with audit evidence
    (:func:`adcore.thresholds.cap_censored_raise`). The same detector with the new threshold is
    saved as a candidate version.

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: No active detector, or too few readable labelled parts to both choose
            and check a threshold.
    """
    from adcore.detectors.registry import load_detector

    ctx.progress(0.0, "Collecting the labelled parts")
    with ctx.session_factory() as session:
        project, base = project_and_active_detector(session, ctx)
        if base is None:
            raise DatasetError("The project has no active detector to recalibrate.")
        parts = labelled_parts(session, project.id, ctx.data_dir)
        audit = project_miss_rate(session, project.id)
    base_trained = set(snapshot_digests(base.training_snapshot or {}))
    choose, check = split_choose_check(held_out_parts(parts, base_trained, 1.0))
    if not choose or not check:
        raise DatasetError(
            "Too few labelled parts outside the training set to choose a threshold on some and "
            f"check it on others ({len(choose)} + {len(check)}): label more parts first."
        )
    detector = load_detector(base.artifact_path, device=ctx.device)
    scored = score_parts(detector, choose, ctx.scaled_progress(0.1, 0.5))
    checked = score_parts(detector, check, ctx.scaled_progress(0.5, 0.8))
    if scored.scores.size == 0 or checked.scores.size == 0:
        raise DatasetError("Too few of the labelled parts could be read to choose and check.")
    ceiling = threshold_ceiling(detector, base.threshold)  # the version's threshold in force
    target = _target_fnr(project)
    decision = safe_threshold(scored, ceiling=ceiling, target_fnr=target, audit=audit)
    ctx.log(f"{decision.note} Threshold {decision.value:.6g} (was {base.threshold})")
    evaluation = evaluate_candidate(
        ctx,
        checked,
        decision.value,
        base=base,
        heldout=check,
        good_share=CHECK_SHARE,
        notes=[
            decision.note,
            "The threshold was chosen on one share of the labelled parts and is checked here "
            "on the others.",
        ],
        active_rates=rates(checked.scores, checked.labels, base.threshold),  # same detector
        target_fnr=target,
    )
    detector.with_threshold(decision.value)
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "base_version_id": base.id,
        "threshold_rule": "fnr_target_capped" if decision.capped else "fnr_target",
        "target_fnr": target,
        "previous_threshold": base.threshold,
        "chosen_threshold": decision.chosen,
        "threshold_ceiling": decision.ceiling,
        "audit": {"n_audited": audit.n_audited, "n_missed": audit.n_missed, "high": audit.high},
        "heldout": evaluation.candidate.to_json(),
    }
    metrics = new_version_metrics(
        facts,
        gate=evaluation.gate,
        same_model_as=detector_lineage(base),  # same scores: the scorer still fits
    )
    snapshot = {
        **dict(base.training_snapshot or {}),
        "base_version_id": base.id,
        "calibration": [{"sha256": p.sha256, "label": p.label} for p in choose],
        "heldout": [{"sha256": p.sha256, "label": p.label} for p in check],
    }
    ctx.progress(0.9, "Saving the candidate")
    version = save_candidate(ctx, project, detector, metrics, snapshot, "Recalibrated")
    return evaluation.outcome(version, "Recalibrated")


def _kind_and_config(base: ModelVersion | None, params: dict) -> tuple[str, dict[str, Any]]:
    if base is None:
        return str(params.get("detector_kind", "patchcore")), dict(params.get("config") or {})
    document = json.loads((Path(base.artifact_path) / CONFIG_FILE).read_text())
    return base.kind, dict(document.get("config") or {})


def _fresh_detector(
    kind: str, config: dict[str, Any], base: ModelVersion | None, device: str, has_images: bool
):
    """An unfitted detector of the base's kind and settings.

    For CLIP: an adapted base keeps its adapters (fit re-embeds the references), and a
    zero-shot one becomes few-shot when there are good images (they all become references).
    """
    from adcore.detectors.registry import build_detector, load_detector

    if kind != "clip":
        return build_detector(kind, device=device, **config)
    if has_images and not config.get("shots", 1):
        config = {**config, "shots": None}
    detector = None
    if base is not None:
        document = json.loads((Path(base.artifact_path) / CONFIG_FILE).read_text())
        if document.get("adapter"):
            detector = load_detector(base.artifact_path, device=device)
            detector.config = replace(detector.config, shots=config.get("shots"))
    return detector or build_detector(kind, device=device, **config)


def _training_set(
    snapshot_images: list[TrainingImage],
    parts: list[LabelledPart],
    heldout: list[LabelledPart],
    base_trained: set[str],
) -> tuple[list[TrainingImage], list[str]]:
    """Snapshot images not now labelled defect, plus the confirmed-good parts not held out."""
    defects = {p.sha256 for p in parts if p.is_defect}
    heldout_digests = {p.sha256 for p in heldout}
    kept = [image for image in snapshot_images if image.sha256 not in defects]
    excluded = [image.sha256 for image in snapshot_images if image.sha256 in defects]
    seen = {image.sha256 for image in kept} | base_trained
    for part in parts:
        if part.is_defect or part.sha256 in heldout_digests or part.sha256 in seen:
            continue
        kept.append(TrainingImage(part.sha256, part.path, "confirmed_good"))
        seen.add(part.sha256)
    return kept, excluded


def _target_fnr(project: Project) -> float:
    return min(float(project.target_fnr), _MAX_TARGET_FNR)
