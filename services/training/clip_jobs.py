"""Job kinds for the CLIP detector: start it (zero-/few-shot) and adapt it with LoRA.

* ``train_clip``: a CLIP detector from the project's CLIP option
  (:func:`services.project_settings.clip_setting`): zero-shot (``shots=0``, no image needed) or
  few-shot from a folder of good images and/or the confirmed-good parts.
* ``tune_clip``: the active CLIP detector adapted to the product with LoRA on both towers and a
  learnable prompt context (:mod:`adcore.detectors.clip.lora`), trained on the inspectors'
  labelled parts with an image-level loss.

Both evaluate on held-out labelled parts (AUROC, FNR/FPR at the FNR-first threshold), register
a gated *candidate* of the detector family (kind ``clip``) and never activate it. A saved CLIP
version holds only text embeddings, few-shot memories and adapter tensors (MBs); the CLIP
weights stay referenced by model name and checkpoint (see :mod:`adcore.detectors.clip.detector`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adcore.audit import MissRateEstimate
from adcore.errors import DatasetError
from adcore.holdout import DEFAULT_HOLDOUT_FRACTION, in_evaluation_share
from adcore.image_io import is_image_path
from adcore.metrics import image_metrics
from adcore.persistence import TENSORS_FILE, file_sha256
from adcore.thresholds import cap_censored_raise, select_threshold
from db import Label, ModelVersion, Project
from db.model_lineages import label_of
from db.model_metrics import new_version_metrics
from services.audit_sampling import project_miss_rate
from services.project_settings import clip_setting
from services.training.candidate_evaluation import evaluate_candidate
from services.training.candidates import project_and_active_detector, save_candidate
from services.training.context import JobContext, JobOutcome
from services.training.evaluation import ScoredParts, rates, score_parts
from services.training.threshold_choice import CHECK_SHARE, split_choose_check, threshold_ceiling
from services.training.training_data import (
    LabelledPart,
    held_out_parts,
    labelled_parts,
    locate_snapshot_images,
    snapshot_digests,
)

DEFAULT_SHOTS = 4
ZERO_SHOT_THRESHOLD = 0.5
"""Score in [0, 1] is an anomalous probability; 0.5 until labelled parts give a better one."""
DEFAULT_TUNE_HOLDOUT = 0.25
"""Share of the labelled parts (both classes) kept out of adapter training for the gate."""
_CONFIG_OVERRIDES = ("window_sizes", "window_stride", "image_size", "batch_size", "seed")
_MAX_TARGET_FNR = 0.999


def train_clip_job(ctx: JobContext) -> JobOutcome:
    """Start a zero-shot or few-shot CLIP detector from the project's CLIP option.

    Parameters (``ctx.parameters``): ``shots`` (0 = zero-shot, the default; N = at most N good
    images become references), ``train_folder`` (a folder of good images on the server),
    ``use_confirmed_good`` (default true: confirmed-good parts outside the held-out share are
    references too), ``holdout_fraction`` (default 0.2), ``fpr_margin``, and the CLIP settings
    ``window_stride``/``window_sizes``/``image_size``/``batch_size``/``seed``.

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: The CLIP weights are not available, or few-shot has no good image.
    """
    from adcore.detectors.registry import build_detector

    params = ctx.parameters
    shots = int(params.get("shots", 0) or 0)
    if shots < 0:
        raise DatasetError("shots must be 0 (zero-shot) or a positive number of good images.")
    holdout = float(params.get("holdout_fraction", DEFAULT_HOLDOUT_FRACTION))
    ctx.progress(0.0, "Reading the CLIP option and the labelled parts")
    with ctx.session_factory() as session:
        project, base = project_and_active_detector(session, ctx)
        config = _clip_config(project, params)
        parts = labelled_parts(session, project.id, ctx.data_dir)
        audit = project_miss_rate(session, project.id)
    _refuse_unavailable(config)
    heldout = held_out_parts(parts, set(), holdout)
    references: list[tuple[str, Path, str]] = []
    if shots:
        references = _few_shot_images(ctx, parts, heldout)
        if not references:
            raise DatasetError(
                "Few-shot CLIP needs good images: give a folder of good images or label some "
                "parts good (or start the zero-shot detector, which needs none)."
            )
    mode = f"few-shot ({shots} shots)" if shots else "zero-shot"
    ctx.log(f"Starting a {mode} CLIP detector {config['model_name']} ({config['pretrained']})")
    ctx.raise_if_cancelled()
    detector = build_detector("clip", device=ctx.device, shots=shots, **config)
    fit = detector.fit([path for _, path, _ in references], ctx.scaled_progress(0.05, 0.6))
    ctx.log(f"{fit.details.get('shots', 0)} reference image(s), mode {fit.details.get('mode')}")
    trained = set(detector.training_digests)
    heldout = [part for part in heldout if part.sha256 not in trained]
    calibration = _calibrate(ctx, project, detector, heldout, (0.6, 0.8), audit)
    if detector.threshold is None:  # nothing labelled: CLIP's own normal/anomalous boundary
        detector.with_threshold(ZERO_SHOT_THRESHOLD)
        calibration.notes[-1] = (
            f"No labelled part to calibrate on: the threshold is {ZERO_SHOT_THRESHOLD} (CLIP's "
            "own normal/anomalous boundary); recalibrate once parts are labelled."
        )
        calibration.facts["threshold_rule"] = "clip_default"
    evaluation = evaluate_candidate(
        ctx,
        calibration.scored,
        detector.threshold,
        base=base,
        heldout=calibration.check,
        good_share=holdout * CHECK_SHARE,
        notes=calibration.notes,
        target_fnr=float(project.target_fnr),
    )
    used = [r for r in references if r[0] in trained]
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "base_version_id": base.id if base else None,
        "mode": fit.details.get("mode"),
        "shots": fit.details.get("shots", 0),
        "clip_model": config["model_name"],
        "clip_pretrained": config["pretrained"],
        "object_name": config["object_name"],
        "n_train": fit.n_images,
        "fit_seconds": round(fit.seconds, 3),
        "skipped": [{"name": name, "reason": reason} for name, reason in fit.skipped],
        **calibration.facts,
        "heldout": evaluation.candidate.to_json(),
    }
    metrics = new_version_metrics(facts, gate=evaluation.gate)
    snapshot = {
        "training_hash": detector.training_hash,
        "base_version_id": base.id if base else None,
        "clip": config,
        "images": [
            {"sha256": digest, "label": Label.GOOD.value, "source": source, "path": str(path)}
            for digest, path, source in used
        ],
        "calibration": [{"sha256": p.sha256, "label": p.label} for p in calibration.choose],
        "heldout": [{"sha256": p.sha256, "label": p.label} for p in calibration.check],
    }
    ctx.progress(0.9, "Saving the candidate")
    what = f"CLIP {mode}"
    version = save_candidate(ctx, project, detector, metrics, snapshot, what)
    return evaluation.outcome(version, what)


def tune_clip_job(ctx: JobContext) -> JobOutcome:
    """Adapt the active CLIP detector with LoRA + learnable prompts on labelled parts.

    The labelled parts are split by a stable hash of their bytes: a held-out share
    (``holdout_fraction``, default 0.25, both classes; never parts the active detector used as
    references) compares the candidate with the active detector for the gate; the rest trains
    the adapters (image-level cross-entropy, :func:`adcore.detectors.clip.lora.train_adapters`).
    The active detector's few-shot references are embedded again with the adapted tower.

    Parameters (``ctx.parameters``): ``holdout_fraction``, ``fpr_margin``, and any
    :class:`~adcore.detectors.clip.lora.ClipAdapterConfig` field (``rank``, ``alpha``,
    ``towers``, ``n_context``, ``epochs``, ``learning_rate``, ``batch_size``, ``seed``).

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: The active detector is not CLIP, or the labelled parts lack a class.
    """
    from adcore.detectors.clip.lora import ClipAdapterConfig, adapter_state, train_adapters
    from adcore.detectors.registry import load_detector

    params = ctx.parameters
    holdout = float(params.get("holdout_fraction", DEFAULT_TUNE_HOLDOUT))
    try:
        adapter_config = ClipAdapterConfig.from_dict(params)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"Bad adapter settings: {err}") from err
    ctx.progress(0.0, "Collecting the labelled parts")
    with ctx.session_factory() as session:
        project, base = project_and_active_detector(session, ctx)
        if base is None or base.kind != "clip":
            now = "none" if base is None else f"{label_of(base)} ({base.kind})"
            raise DatasetError(
                "Adapting CLIP needs an active CLIP detector (the active detector is "
                f"{now}): start a CLIP detector and promote it first."
            )
        parts = labelled_parts(session, project.id, ctx.data_dir)
        audit = project_miss_rate(session, project.id)
        snapshot = dict(base.training_snapshot or {})
        reference_images, missing = locate_snapshot_images(
            session, project.id, snapshot, ctx.data_dir, params.get("train_folder")
        )
    base_trained = set(snapshot_digests(snapshot))
    heldout = [
        p for p in parts if in_evaluation_share(p.sha256, holdout) and p.sha256 not in base_trained
    ]
    heldout_digests = {p.sha256 for p in heldout}
    training = [p for p in parts if p.sha256 not in heldout_digests]
    n_defect = sum(p.is_defect for p in training)
    if n_defect == 0 or n_defect == len(training):
        raise DatasetError(
            "Adapting CLIP needs labelled good and defective parts to train on; there are "
            f"{len(training) - n_defect} good and {n_defect} defective (besides {len(heldout)} "
            "held out for evaluation). Label more parts in Review."
        )
    if missing:
        ctx.log(f"{len(missing)} reference image(s) of the active detector were not found")
    ctx.log(
        f"Adapting {label_of(base)} on {len(training)} parts ({n_defect} defective), "
        f"{len(heldout)} held out; LoRA rank {adapter_config.rank} on {adapter_config.towers}"
    )
    ctx.raise_if_cancelled()
    detector = load_detector(base.artifact_path, device=ctx.device)
    ctx.progress(0.02, "Scoring the held-out parts with the active detector")
    # The gate compares on the parts that check the threshold (_calibrate splits the same way);
    # the active detector scores them before the adapters change it in place.
    _, check = split_choose_check(heldout)
    active_scored = score_parts(detector, check)
    active_rates = rates(active_scored.scores, active_scored.labels, base.threshold)
    trained = train_adapters(
        detector,
        [p.path for p in training],
        [int(p.is_defect) for p in training],
        None if detector.adapter is not None else adapter_config,
        ctx.scaled_progress(0.05, 0.6),
    )
    settings = detector.adapter.config
    ctx.log(f"Loss {trained.losses[0]:.4f} -> {trained.losses[-1]:.4f}")
    if reference_images:
        ctx.progress(0.6, f"Embedding {len(reference_images)} references with the adapted tower")
        detector.update(
            [image.path for image in reference_images],
            digests=[image.sha256 for image in reference_images],
        )
    calibration = _calibrate(ctx, project, detector, heldout, (0.65, 0.9), audit, fallback=training)
    evaluation = evaluate_candidate(
        ctx,
        calibration.scored,
        detector.threshold,
        base=base,
        heldout=calibration.check,
        good_share=holdout * CHECK_SHARE,
        notes=calibration.notes,
        active_rates=active_rates,
        target_fnr=float(project.target_fnr),
    )
    adapter_bytes = sum(t.numel() * t.element_size() for t in adapter_state(detector).values())
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "base_version_id": base.id,
        "mode": "adapted (LoRA + prompt context)",
        "n_train": trained.n_images,
        "n_train_defect": n_defect,
        "train_seconds": round(trained.seconds, 3),
        "losses": [round(v, 6) for v in trained.losses],
        "trainable_parameters": trained.trainable_parameters,
        "adapter": {**asdict(settings), "towers": list(settings.towers)},
        "adapter_megabytes": round(adapter_bytes / 1e6, 3),
        "skipped": [{"name": name, "reason": reason} for name, reason in trained.skipped],
        "missing_reference_images": len(missing),
        **calibration.facts,
        "heldout": evaluation.candidate.to_json(),
    }
    metrics = new_version_metrics(facts, gate=evaluation.gate)
    new_snapshot = {
        **{k: v for k, v in snapshot.items() if k not in ("heldout", "calibration")},
        "training_hash": detector.training_hash,
        "base_version_id": base.id,
        "images": [
            {"sha256": i.sha256, "label": Label.GOOD.value, "source": i.source, "path": str(i.path)}
            for i in reference_images
        ],
        "adapter_training": [
            {"sha256": p.sha256, "label": p.label, "defect_type": p.defect_type} for p in training
        ],
        "calibration": [{"sha256": p.sha256, "label": p.label} for p in calibration.choose],
        "heldout": [{"sha256": p.sha256, "label": p.label} for p in calibration.check],
    }
    ctx.progress(0.9, "Saving the candidate")
    version = save_candidate(ctx, project, detector, metrics, new_snapshot, "CLIP adapted")
    _record_size(ctx, version)
    return evaluation.outcome(version, "CLIP adapted")


# --------------------------------------------------------------------------- helpers


def _clip_config(project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """The detector settings: the project's CLIP option plus allowed overrides."""
    config: dict[str, Any] = clip_setting(project).detector_config(project.object_name or "")
    config.update({k: params[k] for k in _CONFIG_OVERRIDES if params.get(k) is not None})
    return config


def _refuse_unavailable(config: dict[str, Any]) -> None:
    from adcore.detectors.clip import clip_unavailable

    reason = clip_unavailable(config["model_name"], config["pretrained"])
    if reason is not None:
        raise DatasetError(f"The CLIP detector cannot start: {reason}")


def _few_shot_images(
    ctx: JobContext, parts: list[LabelledPart], heldout: list[LabelledPart]
) -> list[tuple[str, Path, str]]:
    """(sha256, path, source) of the folder's images, then the confirmed-good parts."""
    params = ctx.parameters
    found: dict[str, tuple[str, Path, str]] = {}
    folder = (params.get("train_folder") or "").strip()
    if folder:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise DatasetError(f"Folder not found: {path}")
        images = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
        for image in images:
            digest = file_sha256(image)
            found.setdefault(digest, (digest, image, "folder"))
    if params.get("use_confirmed_good", True):
        kept_out = {p.sha256 for p in heldout} | {p.sha256 for p in parts if p.is_defect}
        for part in parts:
            if part.sha256 not in kept_out:
                found.setdefault(part.sha256, (part.sha256, part.path, "confirmed_good"))
    return list(found.values())


@dataclass
class _Calibration:
    """How the candidate's threshold was chosen, and its scores on the parts that check it.

    Attributes:
        scored: The candidate's scores of ``check`` (what the gate compares).
        choose: The held-out parts the threshold was chosen on.
        check: The held-out parts it is checked on (never the ones it was chosen on).
        notes: Sentences for the UI.
        facts: ``threshold_rule``, ``chosen_threshold``, ``heldout_auroc`` (for the metrics).
    """

    scored: ScoredParts
    choose: list[LabelledPart]
    check: list[LabelledPart]
    notes: list[str]
    facts: dict[str, Any]


def _calibrate(
    ctx: JobContext,
    project: Project,
    detector: Any,
    heldout: list[LabelledPart],
    span: tuple[float, float],
    audit: MissRateEstimate,
    fallback: list[LabelledPart] | None = None,
) -> _Calibration:
    """Choose the threshold FNR-first on one share of the held-out parts, check on the other.

    The held-out parts are split by content hash (:func:`split_choose_check`). The threshold is
    chosen on the choosing share when it holds a defect; otherwise on the ``fallback`` parts
    (the adapter's training parts), otherwise on the choosing share's good-score quantile; with
    no labelled part at all the detector keeps its own (possibly none). Whatever is chosen may
    not exceed the detector's calibrated threshold (or, without one, the threshold in force, or
    :data:`ZERO_SHOT_THRESHOLD`) unless audits allow it (:func:`cap_censored_raise`).
    """
    choose, check = split_choose_check(heldout)
    middle = (span[0] + span[1]) / 2
    chosen_on = score_parts(detector, choose, ctx.scaled_progress(span[0], middle))
    scored = score_parts(detector, check, ctx.scaled_progress(middle, span[1]))
    ceiling = threshold_ceiling(detector, detector.threshold, ZERO_SHOT_THRESHOLD)
    target_fnr = min(float(project.target_fnr), _MAX_TARGET_FNR)
    notes: list[str] = []
    rule, choice = "detector", None
    if chosen_on.labels.sum() > 0:
        choice = select_threshold(chosen_on.scores, chosen_on.labels, target_fnr=target_fnr)
        rule = choice.rule
        notes.append("The threshold was chosen on one share of the held-out parts (FNR first).")
    elif fallback and any(p.is_defect for p in fallback):
        fit_scored = score_parts(detector, fallback)
        choice = select_threshold(fit_scored.scores, fit_scored.labels, target_fnr=target_fnr)
        rule = f"{choice.rule} (training parts)"
        notes.append("No held-out defect: the threshold was chosen on the training parts.")
    elif chosen_on.scores.size:
        choice = select_threshold(chosen_on.scores)
        rule = choice.rule
        notes.append("No labelled defect: the threshold is a quantile of held-out good scores.")
    if choice is not None:
        decision = cap_censored_raise(choice.value, ceiling, audit, target_fnr)
        detector.with_threshold(decision.value)
        notes.append(decision.note)
        rule += " (capped)" if decision.capped else ""
    if detector.threshold is None:
        notes.append(
            "No threshold yet: label some parts and recalibrate, or set one under Threshold."
        )
    scores, labels = scored.scores, scored.labels
    auroc = image_metrics(labels, scores).auroc if scores.size else math.nan
    facts = {
        "threshold_rule": rule,
        "chosen_threshold": None if choice is None else choice.value,
        "heldout_auroc": None if math.isnan(auroc) else round(float(auroc), 6),
    }
    return _Calibration(scored, choose, check, notes, facts)


def _record_size(ctx: JobContext, version: ModelVersion) -> None:
    """Log the saved file's size: adapters and embeddings only, no copy of CLIP."""
    path = Path(version.artifact_path) / TENSORS_FILE
    if path.is_file():
        ctx.log(f"Saved {path.stat().st_size / 1e6:.2f} MB (CLIP weights referenced, not copied)")
