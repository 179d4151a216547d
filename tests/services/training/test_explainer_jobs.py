"""The ``tune_explainer`` job kind: a gated explanation adapter from the inspectors' notes.

The language model is a tiny random Llama built here (``source`` parameter or the project's
setting); the notes are toy notes it can learn ("flagged the part" / "passed the part").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from job_support import StopDuringTraining, job_context, job_lab, run_job
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import FLAGGED_FACTS, make_part, png
from tiny_language_model import (
    NEUTRAL_WORDS,
    TOY_TRAINING,
    build_tiny_language_model,
    build_toy_language_model,
    passed_facts,
    toy_note,
)

from adcore.errors import JobCancelled
from adcore.explain.language_model import load_language_model
from adcore.explain.lora_tuning import Evaluation, note_pairs, split_heldout
from db import Job, ModelVersion, Prediction, Project, User, register_model_version
from db.explanation_notes import MIN_TRAINING_NOTES, add_explanation_note, training_notes
from db.images import get_or_create_image
from db.model_families import ModelFamily, active_version
from db.model_versions import GateRefusedError, promote_model_version
from services.project_settings import LanguageModelSetting, set_language_model
from services.training.explainer_jobs import (
    MIN_FACT_CHECK_PASS_RATE,
    explainer_gate_record,
    tune_explainer_job,
)
from services.training.job_kinds import JobKind
from workers.registry import job_function

pytestmark = pytest.mark.slow
N_NOTES = MIN_TRAINING_NOTES + 2
FAST = {**TOY_TRAINING, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that learns the toy notes."""
    return build_toy_language_model(tmp_path_factory.mktemp("toy_llm"))


@pytest.fixture(scope="module")
def mute_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model without verdict words: its texts never pass the fact-check."""
    return build_tiny_language_model(tmp_path_factory.mktemp("mute_llm"), NEUTRAL_WORDS)


def add_notes(factory: sessionmaker[Session], project_id: int, user_id: int, n: int) -> None:
    """``n`` explained predictions (alternately flagged and passed), each with a toy note."""
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="models/widgets/v1",
            metrics={},
            threshold=29.4,
            training_snapshot={},
        )
        user = session.get(User, user_id)
        for i in range(n):
            facts = FLAGGED_FACTS if i % 2 == 0 else passed_facts()
            image, _ = get_or_create_image(
                session,
                data=png(make_part(900 + i)),
                original_name=f"part-{i}.png",
                project_id=project_id,
                source="upload",
                width=64,
                height=64,
            )
            prediction = Prediction(
                image_id=image.id,
                model_version_id=version.id,
                score=facts.score,
                threshold=facts.threshold,
                verdict=facts.verdict,
                explanation={"facts": facts.to_json(), "text": "shown"},
            )
            session.add(prediction)
            session.flush()
            add_explanation_note(
                session,
                prediction_id=prediction.id,
                shown_text="shown",
                text=toy_note(facts),
                source="grounded",
                user=user,
            )


@pytest.fixture
def lab(session_factory: sessionmaker[Session], tmp_path: Path) -> dict:
    """A project with a manager and an inspector, no notes yet, and a worker."""
    return job_lab(session_factory, tmp_path, name="widgets")


def run(lab: dict, parameters: dict) -> Job:
    return run_job(lab, JobKind.TUNE_EXPLAINER, parameters)


def explainer_versions(lab: dict) -> list[ModelVersion]:
    with lab["factory"]() as session:
        return list(session.scalars(select(ModelVersion).where(ModelVersion.kind == "explainer")))


def test_the_kind_is_registered() -> None:
    assert job_function(JobKind.TUNE_EXPLAINER) is tune_explainer_job


def test_an_adapter_is_trained_gated_promoted_and_compared_next_time(
    lab: dict, toy_model: Path
) -> None:
    factory = lab["factory"]
    add_notes(factory, lab["project_id"], lab["inspector_id"], N_NOTES)
    job = run(lab, {"source": str(toy_model), **FAST})
    assert job.status == "succeeded", (job.message, job.log_tail)
    assert "passes the gate" in job.message
    with factory() as session:
        version = session.get(ModelVersion, job.result_model_version_id)
        notes = training_notes(session, lab["project_id"])
        assert version.kind == "explainer" and version.status == "candidate"
        assert version.threshold is None
        metrics, snapshot = version.metrics, version.training_snapshot
    training, heldout = split_heldout(note_pairs(notes)[0])
    assert snapshot["note_ids"] == [pair.note_id for pair in training]
    assert snapshot["heldout_note_ids"] == [pair.note_id for pair in heldout]
    assert (metrics["n_train"], metrics["n_heldout"]) == (len(training), len(heldout))
    assert metrics["source"] == str(toy_model)
    assert metrics["rouge_l"]["tuned"] == pytest.approx(1.0)
    assert metrics["rouge_l"]["tuned"] > metrics["rouge_l"]["untuned"]
    assert metrics["fact_check_pass_rate"]["tuned"] == 1.0
    assert 0.0 <= metrics["fact_check_pass_rate"]["untuned"] <= 1.0
    gate = metrics["gate"]
    assert gate["decision"]["passed"] and gate["active"] is None
    assert gate["candidate"]["rouge_l"] == metrics["rouge_l"]["tuned"]
    assert gate["untuned"]["rouge_l"] == metrics["rouge_l"]["untuned"]

    adapter = Path(version.artifact_path)
    assert (
        adapter.parent.parent == lab["models_root"] and (adapter / "adapter_config.json").is_file()
    )
    assert not any(adapter.glob("model*.safetensors"))  # the adapter only, not the base model
    reloaded = load_language_model(str(toy_model), adapter_path=adapter)
    assert reloaded.draft(FLAGGED_FACTS, max_new_tokens=6) == "flagged the part"

    with factory() as session, session.begin():
        promote_model_version(session, version.id, session.get(User, lab["manager_id"]))
    with factory() as session:
        assert active_version(session, lab["project_id"], ModelFamily.EXPLAINER).id == version.id
        assert session.get(Project, lab["project_id"]).active_model_version_id is None

    second = run(lab, {"source": str(toy_model), **FAST, "epochs": 1})
    assert second.status == "succeeded", (second.message, second.log_tail)
    with factory() as session:
        gate = session.get(ModelVersion, second.result_model_version_id).metrics["gate"]
    assert gate["active"]["version_id"] == version.id
    assert gate["active"]["rouge_l"] == pytest.approx(1.0)  # the active adapter, evaluated again
    assert not gate["decision"]["passed"]  # one epoch does not learn the notes as well


def test_an_unfaithful_adapter_is_left_as_a_refused_candidate(lab: dict, mute_model: Path) -> None:
    factory = lab["factory"]
    add_notes(factory, lab["project_id"], lab["inspector_id"], N_NOTES)
    with factory() as session, session.begin():
        set_language_model(
            session,
            lab["project_id"],
            LanguageModelSetting(enabled=True, source=str(mute_model)),
            user=session.get(User, lab["manager_id"]),
        )
    job = run(lab, {"epochs": 1, "max_new_tokens": 4})  # the source comes from the setting
    assert job.status == "succeeded", (job.message, job.log_tail)
    assert "does not pass the gate" in job.message
    with factory() as session:
        version = session.get(ModelVersion, job.result_model_version_id)
        assert version.metrics["source"] == str(mute_model)
        assert version.metrics["fact_check_pass_rate"]["tuned"] == 0.0
        reasons = version.metrics["gate"]["decision"]["reasons"]
    assert any("fact-check" in reason for reason in reasons)
    with factory() as session, session.begin(), pytest.raises(GateRefusedError):
        promote_model_version(session, version.id, session.get(User, lab["manager_id"]))
    with factory() as session:
        assert active_version(session, lab["project_id"], ModelFamily.EXPLAINER) is None


def test_too_few_notes_are_refused_and_nothing_is_written(lab: dict, toy_model: Path) -> None:
    add_notes(lab["factory"], lab["project_id"], lab["inspector_id"], MIN_TRAINING_NOTES - 1)
    job = run(lab, {"source": str(toy_model), **FAST})
    assert job.status == "failed"
    assert f"at least {MIN_TRAINING_NOTES} inspector notes" in job.message
    assert f"has {MIN_TRAINING_NOTES - 1}" in job.message
    assert job.result_model_version_id is None
    assert explainer_versions(lab) == []
    assert not lab["models_root"].exists() or not any(lab["models_root"].rglob("*"))


def test_a_missing_language_model_is_refused_clearly(lab: dict, tmp_path: Path) -> None:
    add_notes(lab["factory"], lab["project_id"], lab["inspector_id"], N_NOTES)
    job = run(lab, {"source": str(tmp_path / "absent-model")})
    assert job.status == "failed"
    assert "No language model at" in job.message and "nothing is downloaded" in job.message
    assert explainer_versions(lab) == []


def test_a_vision_language_model_is_refused_before_any_work(lab: dict, tmp_path: Path) -> None:
    from tiny_language_model import build_tiny_vision_language_model

    add_notes(lab["factory"], lab["project_id"], lab["inspector_id"], N_NOTES)
    vlm = build_tiny_vision_language_model(tmp_path / "tiny-vlm")
    job = run(lab, {"source": str(vlm), **FAST})
    assert job.status == "failed"
    assert "vision-language model" in job.message and "text-only" in job.message
    assert explainer_versions(lab) == []


def test_a_cancelled_job_stops_in_training_and_registers_nothing(
    lab: dict, toy_model: Path
) -> None:
    add_notes(lab["factory"], lab["project_id"], lab["inspector_id"], N_NOTES)
    reporter = StopDuringTraining()
    ctx = job_context(lab, JobKind.TUNE_EXPLAINER, {"source": str(toy_model), **FAST}, reporter)
    with pytest.raises(JobCancelled):
        tune_explainer_job(ctx)
    assert sum(message.startswith("Epoch") for message in reporter.messages) == 1
    assert explainer_versions(lab) == []


def evaluation(rouge: float, pass_rate: float) -> Evaluation:
    return Evaluation(
        rouge_l=rouge, fact_check_pass_rate=pass_rate, n=10, seconds=1.0, generations=()
    )


@pytest.mark.parametrize(
    ("tuned", "untuned", "passed", "reason"),
    [
        ((0.6, 1.0), (0.3, 1.0), True, None),
        ((0.6, MIN_FACT_CHECK_PASS_RATE), (0.3, 1.0), True, None),
        ((0.3, 1.0), (0.3, 1.0), False, "not closer"),
        ((0.6, 0.9), (0.3, 1.0), False, "fact-check"),
    ],
)
def test_the_gate_rules(tuned: tuple, untuned: tuple, passed: bool, reason: str | None) -> None:
    gate = explainer_gate_record(
        tuned=evaluation(*tuned),
        untuned=evaluation(*untuned),
        active=None,
        active_facts=None,
        n_heldout=10,
    )
    assert gate["decision"]["passed"] is passed
    if reason:
        assert any(reason in text for text in gate["decision"]["reasons"])
    assert gate["active"] is None


def test_the_gate_compares_with_the_active_adapter() -> None:
    gate = explainer_gate_record(
        tuned=evaluation(0.6, 1.0),
        untuned=evaluation(0.3, 1.0),
        active=evaluation(0.7, 1.0),
        active_facts={"version_id": 7, "version": 3, "label": "v2.1"},
        n_heldout=10,
    )
    assert not gate["decision"]["passed"]
    assert "active adapter's (v2.1)" in gate["decision"]["reasons"][0]
    assert gate["active"]["version_id"] == 7 and gate["active"]["rouge_l"] == 0.7
