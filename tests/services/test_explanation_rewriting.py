"""Rephrasing a stored prediction's explanation with the project's language model (once)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker
from stored_predictions import add_flagged_prediction, use_language_model
from synthetic_parts import FAITHFUL_REWRITE, FLAGGED_FACTS
from tiny_language_model import build_tiny_language_model

from adcore.explain.language_model import LanguageModelExplainer, clear_explainer_cache
from adcore.explain.sentences import render
from adcore.explain.vision_language import VisionLanguageExplainer
from db import Prediction, Project, activate_model_version, data_dir, register_model_version
from services.explanation_rewriting import (
    REWRITE_KEY,
    LanguageModelChoice,
    choice_unavailable,
    language_model_choice,
    rewrite_prediction,
    stored_rewrite,
    warm_up_language_models,
)
from services.map_store import save_anomaly_map


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer random Llama over neutral words saved to a folder (no download)."""
    return build_tiny_language_model(tmp_path_factory.mktemp("tiny_llm_rewriting"))


@pytest.fixture(autouse=True)
def fresh_explainer_cache() -> Iterator[None]:
    clear_explainer_cache()
    yield
    clear_explainer_cache()


def stored_explanation(factory: sessionmaker[Session], prediction_id: int) -> dict:
    with factory() as session:
        return session.get(Prediction, prediction_id).explanation


@pytest.fixture(autouse=True)
def whole_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake generations below write whole answers: no verdict words written before them."""
    monkeypatch.setattr(LanguageModelExplainer, "verdict_lead", False)


def test_faithful_rewrite_is_stored_once(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    tiny_llm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prediction_id = add_flagged_prediction(factory, project_and_version)
    use_language_model(factory, project_and_version[0], str(tiny_llm_dir))
    calls: list[str] = []

    def faithful(self: LanguageModelExplainer, prompt: str, max_new_tokens: int) -> str:
        calls.append(prompt)
        return FAITHFUL_REWRITE

    monkeypatch.setattr(LanguageModelExplainer, "_generate", faithful)
    outcome = rewrite_prediction(factory, prediction_id)

    assert outcome.reason is None and not outcome.reused
    rewrite = stored_explanation(factory, prediction_id)["rewrite"]
    assert rewrite == outcome.rewrite
    assert rewrite["text"] == FAITHFUL_REWRITE and rewrite["used_model"] is True
    assert rewrite["problems"] == [] and rewrite["model"] == str(tiny_llm_dir)
    assert rewrite["source"] == "model" and rewrite["seconds"] >= 0
    assert stored_explanation(factory, prediction_id)["text"] == render(FLAGGED_FACTS)

    again = rewrite_prediction(factory, prediction_id)
    assert again.reused and again.rewrite == rewrite
    assert len(calls) == 1


def test_rejected_rewrite_is_logged_and_recorded(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    tiny_llm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prediction_id = add_flagged_prediction(factory, project_and_version)
    use_language_model(factory, project_and_version[0], str(tiny_llm_dir))
    monkeypatch.setattr(
        LanguageModelExplainer,
        "_generate",
        lambda self, prompt, max_new_tokens: "The part passed with a score of 75.",
    )
    with caplog.at_level(logging.WARNING, logger="services.explanation_rewriting"):
        outcome = rewrite_prediction(factory, prediction_id)

    rewrite = stored_explanation(factory, prediction_id)["rewrite"]
    assert outcome.rewrite == rewrite
    assert rewrite["used_model"] is False and rewrite["text"] == render(FLAGGED_FACTS)
    assert rewrite["problems"]
    assert rewrite["draft"] == "The part passed with a score of 75."  # kept for audit
    assert f"Prediction {prediction_id}" in caplog.text and "rejected" in caplog.text


def test_random_model_runs_end_to_end(
    factory: sessionmaker[Session], project_and_version: tuple[int, int], tiny_llm_dir: Path
) -> None:
    """Real generation: the random model cannot write a verdict word, so it is rejected."""
    prediction_id = add_flagged_prediction(factory, project_and_version)
    use_language_model(factory, project_and_version[0], str(tiny_llm_dir))
    outcome = rewrite_prediction(factory, prediction_id, max_new_tokens=6)
    assert outcome.rewrite is not None and outcome.rewrite["used_model"] is False


def test_reasons_instead_of_errors(
    factory: sessionmaker[Session], project_and_version: tuple[int, int], tmp_path: Path
) -> None:
    prediction_id = add_flagged_prediction(factory, project_and_version)
    assert "off" in rewrite_prediction(factory, prediction_id).reason

    use_language_model(factory, project_and_version[0], str(tmp_path / "absent"))
    outcome = rewrite_prediction(factory, prediction_id)
    assert outcome.rewrite is None and "nothing is downloaded" in outcome.reason
    assert "rewrite" not in stored_explanation(factory, prediction_id)

    bare = add_flagged_prediction(factory, project_and_version, facts=False)
    assert "no stored facts" in rewrite_prediction(factory, bare).reason
    assert "No prediction" in rewrite_prediction(factory, 9999).reason


def test_active_explainer_adapter_is_applied(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    tiny_llm_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    project_id = project_and_version[0]
    adapter_dir = tmp_path / "explainer" / "v2"
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    get_peft_model(base, lora).save_pretrained(adapter_dir)
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind="explainer",
            artifact_path=str(adapter_dir),
            metrics={},
            threshold=None,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        number, label = version.version, f"v{version.model_number}.{version.revision}"
    use_language_model(factory, project_id, str(tiny_llm_dir))
    prediction_id = add_flagged_prediction(factory, project_and_version)
    with factory() as session:
        choice = language_model_choice(session, project_id)
    assert choice == LanguageModelChoice(str(tiny_llm_dir), str(adapter_dir), number, label)
    assert choice_unavailable(choice) is None

    monkeypatch.setattr(
        LanguageModelExplainer, "_generate", lambda self, prompt, max_new_tokens: FAITHFUL_REWRITE
    )
    rewrite = rewrite_prediction(factory, prediction_id).rewrite
    assert rewrite["source"] == "adapter"
    assert rewrite["model"] == f"{tiny_llm_dir} + explainer {label}" and label == "v2.0"
    explanation = stored_explanation(factory, prediction_id)
    assert stored_rewrite(explanation, choice) == rewrite
    # a rewrite stored before model lineages named the internal version number: still valid
    earlier = {**explanation, REWRITE_KEY: {**rewrite, "model": f"{tiny_llm_dir} + explainer v2"}}
    assert stored_rewrite(earlier, choice) == earlier[REWRITE_KEY]
    assert stored_rewrite(explanation, LanguageModelChoice(str(tiny_llm_dir))) is None

    missing = LanguageModelChoice(str(tiny_llm_dir), str(tmp_path / "gone"), 7)
    assert "adapter_config.json is missing" in choice_unavailable(missing)


def test_warm_up_loads_enabled_models_once_and_skips_the_rest(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    tiny_llm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert warm_up_language_models(factory) == []  # the option is off
    use_language_model(factory, project_and_version[0], str(tiny_llm_dir))
    assert warm_up_language_models(factory) == [str(tiny_llm_dir)]

    def no_second_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the warmed-up model must come from the cache")

    monkeypatch.setattr("services.explanation_rewriting.load_language_model", no_second_load)
    monkeypatch.setattr(LanguageModelExplainer, "_generate", lambda self, p, n: FAITHFUL_REWRITE)
    prediction_id = add_flagged_prediction(factory, project_and_version)
    assert rewrite_prediction(factory, prediction_id).rewrite["used_model"] is True

    with factory() as session, session.begin():
        other = Project(name="other line", object_name="tile")
        session.add(other)
        session.flush()
        other_id = other.id
    use_language_model(factory, other_id, "/no/such/model")
    assert warm_up_language_models(factory) == [str(tiny_llm_dir)]  # the absent one is skipped


def test_rewrite_prediction_sends_the_stored_image_and_overlay(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    tiny_vlm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored = Path(data_dir()) / "images" / "part.png"
    stored.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (64, 48), (120, 120, 120)).save(stored)
    hot = np.zeros((8, 8), dtype=np.float32)
    hot[:3, :3] = 50.0
    map_path = save_anomaly_map(hot)
    prediction_id = add_flagged_prediction(
        factory, project_and_version, width=64, height=48, anomaly_map_path=map_path
    )
    use_language_model(factory, project_and_version[0], str(tiny_vlm_dir))
    seen: list[list[PILImage.Image]] = []

    def faithful(
        self: VisionLanguageExplainer, request: str, images: list, max_new_tokens: int
    ) -> str:
        seen.append(images)
        return FAITHFUL_REWRITE

    monkeypatch.setattr(VisionLanguageExplainer, "_generate", faithful)
    outcome = rewrite_prediction(factory, prediction_id)

    assert outcome.reason is None
    assert outcome.rewrite["text"] == FAITHFUL_REWRITE and outcome.rewrite["used_model"] is True
    (images,) = seen
    part, overlay = images
    assert part.size == overlay.size == (64, 48)
    assert np.asarray(part).std() == 0  # the stored grey part
    coloured = np.asarray(overlay)
    assert not np.array_equal(coloured[2, 2], coloured[-2, -2])  # hot corner, cool rest


def test_a_part_the_scorer_passed_is_not_rephrased_from_the_detectors_facts(
    factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    tiny_llm_dir: Path,
) -> None:
    """The facts say "flagged" (the detector's); the scorer passed the part: no rewrite."""
    prediction_id = add_flagged_prediction(factory, project_and_version)
    use_language_model(factory, project_and_version[0], str(tiny_llm_dir))
    with factory() as session, session.begin():
        scorer = register_model_version(
            session,
            project_id=project_and_version[0],
            kind="feedback_scorer",
            artifact_path="models/scorer",
            metrics={},
            threshold=0.5,
            training_snapshot={},
        )
        prediction = session.get(Prediction, prediction_id)
        # a new prediction row like inspection stores when the scorer decides
        session.add(
            Prediction(
                image_id=prediction.image_id,
                model_version_id=prediction.model_version_id,
                score=prediction.score,
                threshold=prediction.threshold,
                verdict="good",
                scorer_version_id=scorer.id,
                defect_probability=0.2,
                explanation=prediction.explanation,
            )
        )
        session.flush()
        passed_id = session.query(Prediction.id).order_by(Prediction.id.desc()).first()[0]
    outcome = rewrite_prediction(factory, passed_id)
    assert outcome.rewrite is None and "feedback scorer decided" in outcome.reason
    assert "rewrite" not in stored_explanation(factory, passed_id)
