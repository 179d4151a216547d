"""Job kind ``tune_explainer``: a LoRA adapter of the explanation language model, from the notes.

The project's inspectors' notes (:func:`db.explanation_notes.training_notes`: each explained
prediction's latest accepted or edited text) are split by a stable hash of the note id; the
language model named by the project's setting (or the ``source`` parameter) is evaluated on the
held-out notes untuned, trained with LoRA on the rest (:mod:`adcore.explain.lora_tuning`) and
evaluated again. The adapter is saved under the project's models folder and registered as a
*candidate* version of kind ``explainer`` (:class:`db.model_families.ModelFamily.EXPLAINER`),
never activated: like detector and classifier candidates, a manager promotes it through the
gate (:func:`db.model_versions.promote_model_version`).

The gate (:class:`db.model_metrics.GateRecord`) passes when, on the held-out notes, the tuned
model's ROUGE-L F1 is above the untuned model's and at least :data:`MIN_FACT_CHECK_PASS_RATE` of
its texts pass the fact-check. When the project already has an active explainer adapter for the
same language model, it is evaluated on the same notes too and the candidate's ROUGE-L must not
be lower.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adcore.errors import DatasetError, ExplainerUnavailable
from adcore.explain.language_model import (
    LanguageModelExplainer,
    language_model_unavailable,
    load_language_model,
)
from adcore.explain.lora_tuning import (
    Evaluation,
    LoraTuningConfig,
    NotePair,
    evaluate_explainer,
    folder_size_mb,
    note_pairs,
    save_adapter,
    split_heldout,
    train_lora,
    training_examples,
)
from db.explanation_notes import MIN_TRAINING_NOTES, training_notes
from db.model_families import ModelFamily, active_version
from db.model_lineages import label_of
from db.model_metrics import new_version_metrics, read_metrics
from services.project_settings import language_model_setting
from services.training.candidates import (
    candidate_outcome,
    project_and_active_detector,
    save_candidate,
)
from services.training.context import JobContext, JobOutcome

EXPLAINER_KIND = "explainer"
"""The model kind of explanation adapters (:data:`db.model_families.EXPLAINER_KINDS`)."""
MIN_FACT_CHECK_PASS_RATE = 0.95
"""Share of the tuned model's held-out texts that must pass the fact-check."""
_EXAMPLES_KEPT = 5
"""Held-out generations stored in the metrics, for a manager to read."""


class _AdapterArtifact:
    """What :func:`services.training.candidates.save_candidate` saves: the tuned adapter."""

    kind = EXPLAINER_KIND
    threshold = None

    def __init__(self, explainer: Any) -> None:
        self.explainer = explainer

    def save(self, directory: Path) -> None:
        save_adapter(self.explainer, directory)


def tune_explainer_job(ctx: JobContext) -> JobOutcome:
    """Train an explanation adapter on the project's notes, evaluate it and gate it.

    Parameters (``ctx.parameters``): ``source`` (a language model other than the project's
    setting, e.g. a local folder), and any :class:`~adcore.explain.lora_tuning.LoraTuningConfig`
    field (``rank``, ``alpha``, ``epochs``, ``learning_rate``, ``max_length``, ``seed``,
    ``heldout_fraction``, ``max_new_tokens``, ...).

    Returns:
        The outcome, with the candidate's id.

    Raises:
        DatasetError: Fewer than :data:`db.explanation_notes.MIN_TRAINING_NOTES` usable notes.
        ExplainerUnavailable: The language model (or the active adapter) cannot be loaded.
    """
    params = ctx.parameters
    try:
        config = LoraTuningConfig.from_dict(params)
    except ValueError as error:
        raise DatasetError(f"Bad training option: {error}") from error
    ctx.progress(0.0, "Collecting the inspectors' notes")
    with ctx.session_factory() as session:
        project, _ = project_and_active_detector(session, ctx)
        notes = training_notes(session, project.id)
        source = str(params.get("source") or language_model_setting(project).source).strip()
        active = active_version(session, project.id, ModelFamily.EXPLAINER)
        active_facts = _version_facts(active)
    pairs, unreadable = note_pairs(notes)
    if len(pairs) < MIN_TRAINING_NOTES:
        raise DatasetError(
            f"An explanation adapter needs at least {MIN_TRAINING_NOTES} inspector notes "
            f"(accepted or edited explanations, one per part); the project has {len(pairs)}"
            + (f" ({len(unreadable)} more could not be read)" if unreadable else "")
            + ". Accept or edit more explanations first."
        )
    reason = language_model_unavailable(source)
    if reason is not None:
        raise ExplainerUnavailable(reason)
    training, heldout = split_heldout(pairs, config.heldout_fraction)
    ctx.log(f"{len(training)} notes to train on, {len(heldout)} held out; model {source}")
    if unreadable:
        ctx.log(f"{len(unreadable)} note(s) had unreadable facts or no text and were left out")

    ctx.progress(0.02, f"Loading the language model ({source})")
    explainer = load_language_model(source)
    if not isinstance(explainer, LanguageModelExplainer):
        raise ExplainerUnavailable(
            f"{source} is a vision-language model: explanation adapters are trained for "
            "text-only language models (e.g. smollm2). Choose one under Models → Explanations."
        )
    ctx.raise_if_cancelled()
    untuned = _evaluate(ctx, explainer, heldout, config, (0.05, 0.2), "untuned model")
    active_evaluation, gate_notes = _evaluate_active(ctx, active_facts, source, heldout, config)
    tuned_explainer, report = train_lora(
        explainer,
        training_examples(explainer, training),
        config,
        progress=ctx.scaled_progress(0.3, 0.8),
        should_stop=ctx.should_stop,
    )
    ctx.log(
        f"Trained {report.steps} steps in {report.seconds:.0f} s; loss per epoch "
        + ", ".join(f"{loss:.3f}" for loss in report.epoch_losses)
    )
    tuned = _evaluate(ctx, tuned_explainer, heldout, config, (0.8, 0.93), "tuned model")
    gate = explainer_gate_record(
        tuned=tuned,
        untuned=untuned,
        active=active_evaluation,
        active_facts=active_facts,
        n_heldout=len(heldout),
        notes=gate_notes,
    )
    facts = {
        "job_id": ctx.job_id,
        "job_kind": ctx.kind,
        "source": source,
        "rouge_l": {"tuned": tuned.rouge_l, "untuned": untuned.rouge_l},
        "fact_check_pass_rate": {
            "tuned": tuned.fact_check_pass_rate,
            "untuned": untuned.fact_check_pass_rate,
        },
        "n_train": len(training),
        "n_heldout": len(heldout),
        "n_unreadable_notes": len(unreadable),
        "config": config.to_json(),
        "training_report": report.to_json(),
        "examples": _examples(heldout, untuned, tuned),
    }
    metrics = new_version_metrics(facts, gate=gate)
    snapshot = {
        "source": source,
        "note_ids": [pair.note_id for pair in training],
        "heldout_note_ids": [pair.note_id for pair in heldout],
    }
    ctx.progress(0.95, "Saving the adapter")
    version = save_candidate(
        ctx, project, _AdapterArtifact(tuned_explainer), metrics, snapshot, "Explainer adapter"
    )
    ctx.log(f"Adapter size: {folder_size_mb(version.artifact_path):.2f} MiB")
    return candidate_outcome(version, gate, "Explainer adapter")


def explainer_gate_record(
    *,
    tuned: Evaluation,
    untuned: Evaluation,
    active: Evaluation | None,
    active_facts: dict[str, Any] | None,
    n_heldout: int,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON stored as an explainer candidate's gate (:class:`db.model_metrics.GateRecord`).

    It has the keys :func:`db.model_versions.gate_refusals` reads (``decision``, and
    ``active.version_id``: the explainer active at evaluation time, or ``None``).

    Args:
        tuned: The candidate (tuned model) on the held-out notes.
        untuned: The untuned model on the same notes.
        active: The active adapter on the same notes, when one was evaluated.
        active_facts: ``{"version_id", "version", "label", ...}`` of the active explainer, or
            None.
        n_heldout: Held-out notes.
        notes: Extra facts for the manager.

    Returns:
        ``{"evaluated_at", "heldout", "candidate", "untuned", "active", "decision",
        "min_fact_check_pass_rate"}``.
    """
    reasons: list[str] = []
    if not tuned.rouge_l > untuned.rouge_l:
        reasons.append(
            f"Its texts are not closer to the inspectors' notes than the untuned model's: "
            f"ROUGE-L {tuned.rouge_l:.3f} vs {untuned.rouge_l:.3f} on {n_heldout} held-out notes."
        )
    if tuned.fact_check_pass_rate < MIN_FACT_CHECK_PASS_RATE:
        reasons.append(
            f"Too few of its texts pass the fact-check: {100 * tuned.fact_check_pass_rate:.0f}% "
            f"(at least {100 * MIN_FACT_CHECK_PASS_RATE:.0f}% needed)."
        )
    if active is not None and active_facts is not None and tuned.rouge_l < active.rouge_l:
        reasons.append(
            f"Its texts are further from the inspectors' notes than the active adapter's "
            f"({active_facts['label']}): ROUGE-L {tuned.rouge_l:.3f} vs "
            f"{active.rouge_l:.3f}."
        )
    active_json = None
    if active_facts is not None:
        active_json = {
            "version_id": active_facts["version_id"],
            "version": active_facts["version"],
            **(active.summary() if active is not None else {}),
        }
    return {
        "evaluated_at": datetime.now(UTC).isoformat(),
        "min_fact_check_pass_rate": MIN_FACT_CHECK_PASS_RATE,
        "heldout": {"n_notes": n_heldout},
        "candidate": tuned.summary(),
        "untuned": untuned.summary(),
        "active": active_json,
        "decision": {"passed": not reasons, "reasons": reasons, "notes": list(notes or [])},
    }


def _evaluate(
    ctx: JobContext,
    explainer: Any,
    heldout: list[NotePair],
    config: LoraTuningConfig,
    span: tuple[float, float],
    what: str,
) -> Evaluation:
    ctx.progress(span[0], f"Evaluating the {what} on {len(heldout)} held-out notes")
    evaluation = evaluate_explainer(
        explainer,
        heldout,
        max_new_tokens=config.max_new_tokens,
        progress=ctx.scaled_progress(*span),
        should_stop=ctx.should_stop,
    )
    ctx.log(
        f"{what}: ROUGE-L {evaluation.rouge_l:.3f}, fact-check pass rate "
        f"{100 * evaluation.fact_check_pass_rate:.0f}%"
    )
    return evaluation


def _version_facts(version: Any) -> dict[str, Any] | None:
    """What the job needs of the active explainer, read while its session is open."""
    if version is None:
        return None
    return {
        "version_id": version.id,
        "version": version.version,
        "label": label_of(version),
        "artifact_path": version.artifact_path,
        "source": read_metrics(version).facts.get("source"),
        "note_ids": list((version.training_snapshot or {}).get("note_ids") or []),
    }


def _evaluate_active(
    ctx: JobContext,
    active: dict[str, Any] | None,
    source: str,
    heldout: list[NotePair],
    config: LoraTuningConfig,
) -> tuple[Evaluation | None, list[str]]:
    """The active adapter on the held-out notes (when it tunes the same model), and notes."""
    if active is None:
        return None, ["No active explainer adapter to compare with."]
    if active["source"] != source:
        return None, [
            f"The active adapter ({active['label']}) tunes another language model "
            f"({active['source']}): it was not compared."
        ]
    notes: list[str] = []
    overlap = set(active["note_ids"]) & {pair.note_id for pair in heldout}
    if overlap:
        notes.append(
            f"The active adapter trained on {len(overlap)} of the held-out notes: its ROUGE-L "
            "is optimistic."
        )
    try:
        current = load_language_model(source, active["artifact_path"])
    except ExplainerUnavailable as error:
        return None, [*notes, f"The active adapter could not be loaded: {error}"]
    evaluation = _evaluate(ctx, current, heldout, config, (0.2, 0.3), "active adapter")
    return evaluation, notes


def _examples(heldout: list[NotePair], untuned: Evaluation, tuned: Evaluation) -> list[dict]:
    return [
        {"note_id": pair.note_id, "note": pair.text, "untuned": before.text, "tuned": after.text}
        for pair, before, after in zip(
            heldout[:_EXAMPLES_KEPT],
            untuned.generations[:_EXAMPLES_KEPT],
            tuned.generations[:_EXAMPLES_KEPT],
            strict=True,
        )
    ]
