"""Explanations in the app: the language-model rewrite, accept / edit notes, the Models option."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apptest_support import INSPECTOR, MANAGER, Workbench, first_queued, signed_in_app
from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from tiny_language_model import build_tiny_language_model

import db
from adcore.explain.language_model import LanguageModelExplainer, clear_explainer_cache
from db.explanation_notes import MIN_TRAINING_NOTES, add_explanation_note
from pages.routing import pages_for_role
from services.project_settings import (
    LanguageModelSetting,
    language_model_setting,
    set_language_model,
)


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_language_model(tmp_path_factory.mktemp("tiny_llm_app"))


@pytest.fixture(autouse=True)
def fresh_explainer_cache() -> Iterator[None]:
    clear_explainer_cache()
    yield
    clear_explainer_cache()


def notes(workbench: Workbench) -> list[db.ExplanationNote]:
    with workbench.factory() as session:
        return list(session.scalars(select(db.ExplanationNote).order_by(db.ExplanationNote.id)))


def use_language_model(workbench: Workbench, source: str, *, enabled: bool = True) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        set_language_model(
            session,
            workbench.project_id,
            LanguageModelSetting(enabled=enabled, source=source),
            user=manager,
        )


def open_review(role: str = "inspector") -> AppTest:
    at = signed_in_app(role)
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    return at


def captions(at: AppTest) -> list[str]:
    return [caption.value for caption in at.caption]


def run_until(at: AppTest, done: Callable[[AppTest], bool], seconds: float = 120.0) -> AppTest:
    """Re-run the page until ``done(at)`` (the background rewrite has been picked up)."""
    deadline = time.monotonic() + seconds
    while True:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"Still waiting; captions: {captions(at)}")
        time.sleep(0.3)


@pytest.fixture(autouse=True)
def whole_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn off the verdict lead: fake generations here write whole answers.

    The random model must stay rejected (with the verdict words written first, its neutral
    words would pass).
    """
    monkeypatch.setattr(LanguageModelExplainer, "verdict_lead", False)


def test_accept_stores_a_note(workbench: Workbench) -> None:
    prediction = first_queued(workbench)
    text = prediction.explanation["text"]
    at = open_review()

    at.button(key=f"accept_explanation_{prediction.id}").click().run()

    assert not at.exception, at.exception
    [note] = notes(workbench)
    assert (note.prediction_id, note.action, note.source) == (prediction.id, "accepted", "grounded")
    assert note.text == note.shown_text == text
    assert note.author_id == workbench.users[INSPECTOR]
    assert any(f"Accepted by {INSPECTOR}" in caption for caption in captions(at))


def test_edit_stores_the_edited_text(workbench: Workbench) -> None:
    prediction = first_queued(workbench)
    at = open_review()

    at.button(key=f"edit_explanation_{prediction.id}").click().run()
    box = at.text_area(key=f"explanation_wording_{prediction.id}")
    assert box.value == prediction.explanation["text"]
    box.input("A dark scratch on the upper edge: reject it.").run()
    at.button(key=f"save_wording_{prediction.id}").click().run()

    assert not at.exception, at.exception
    [note] = notes(workbench)
    assert (note.action, note.source) == ("edited", "grounded")
    assert note.text == "A dark scratch on the upper edge: reject it."
    assert note.shown_text == prediction.explanation["text"]
    assert any(
        c.endswith("Your wording: A dark scratch on the upper edge: reject it.")
        for c in captions(at)
    )
    assert not at.text_area  # the edit box closed


def test_manager_turns_the_option_on_and_an_inspector_cannot(
    workbench: Workbench, tiny_llm_dir: Path
) -> None:
    at = signed_in_app("manager")
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    assert "Explanations" in [header.value for header in at.subheader]
    project_id = workbench.project_id

    at.text_input(key=f"language_model_source_{project_id}").input(str(tiny_llm_dir)).run()
    at.toggle(key=f"language_model_enabled_{project_id}").set_value(True).run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        setting = language_model_setting(session.get(db.Project, project_id))
    assert setting == LanguageModelSetting(enabled=True, source=str(tiny_llm_dir))

    assert "pages/models.py" not in [page.path for page in pages_for_role("inspector")]
    with workbench.factory() as session, pytest.raises(db.PermissionDenied):
        set_language_model(
            session,
            project_id,
            LanguageModelSetting(enabled=False),
            user=session.get(db.User, workbench.users[INSPECTOR]),
        )


def test_an_unavailable_source_shows_the_reason(workbench: Workbench, tmp_path: Path) -> None:
    absent = str(tmp_path / "no-model-here")
    use_language_model(workbench, absent)
    prediction = first_queued(workbench)

    at = open_review()
    assert prediction.explanation["text"] in [markdown.value for markdown in at.markdown]
    assert any("rewrite unavailable" in c and "nothing is downloaded" in c for c in captions(at))

    use_language_model(workbench, absent, enabled=False)
    models = signed_in_app("manager")
    models.switch_page("pages/models.py").run()
    assert not models.exception, models.exception
    assert models.toggle(key=f"language_model_enabled_{workbench.project_id}").disabled
    assert any("cannot be used" in warning.value for warning in models.warning)


def test_the_rewrite_appears_and_can_be_accepted(
    workbench: Workbench, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prediction = first_queued(workbench)
    grounded = prediction.explanation["text"]
    rewrite = f"In short: {grounded}"
    monkeypatch.setattr(
        LanguageModelExplainer, "_generate", lambda self, prompt, max_new_tokens: rewrite
    )
    use_language_model(workbench, str(tiny_llm_dir))

    at = open_review()
    assert not at.exception, at.exception
    run_until(at, lambda at: any("Rephrased by" in c for c in captions(at)))

    assert rewrite in [markdown.value for markdown in at.markdown]
    assert f"Rephrased by {tiny_llm_dir}, fact-checked" in " ".join(captions(at))
    stored = first_queued(workbench).explanation["rewrite"]
    assert stored["text"] == rewrite and stored["used_model"] is True
    at.button(key=f"accept_explanation_{prediction.id}").click().run()
    [note] = notes(workbench)
    assert (note.source, note.text, note.action) == ("model", rewrite, "accepted")


def test_a_rejected_rewrite_shows_the_measured_text(
    workbench: Workbench, tiny_llm_dir: Path
) -> None:
    """The random model really generates; it cannot write a verdict word, so it is rejected."""
    prediction = first_queued(workbench)
    use_language_model(workbench, str(tiny_llm_dir))

    at = open_review()
    run_until(at, lambda at: any("rejected by the fact-check" in c for c in captions(at)))

    assert prediction.explanation["text"] in [markdown.value for markdown in at.markdown]
    rewrite = first_queued(workbench).explanation["rewrite"]
    assert rewrite["used_model"] is False
    if rewrite["draft"]:  # the random model may write nothing at all
        assert any(e.label.startswith("What the language model wrote") for e in at.expander)


def test_tuning_waits_for_enough_notes(
    workbench: Workbench, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_language_model(workbench, str(tiny_llm_dir))
    at = signed_in_app("manager")
    at.switch_page("pages/models.py").run()
    button = at.button(key="queue-tune_explainer")
    assert button.disabled and button.label == "Tune explainer on 0 notes"
    assert any(f"at least {MIN_TRAINING_NOTES}" in caption for caption in captions(at))

    monkeypatch.setattr("db.explanation_notes.MIN_TRAINING_NOTES", 2)
    monkeypatch.setattr("pages.explanation_settings_panel.MIN_TRAINING_NOTES", 2)
    with workbench.factory() as session, session.begin():
        inspector = session.get(db.User, workbench.users[INSPECTOR])
        for prediction in session.scalars(select(db.Prediction).limit(2)):
            add_explanation_note(
                session,
                prediction_id=prediction.id,
                shown_text=prediction.explanation["text"],
                text=None,
                source="grounded",
                user=inspector,
            )
    at.run()
    button = at.button(key="queue-tune_explainer")
    assert not button.disabled and button.label == "Tune explainer on 2 notes"
    button.click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        [job] = session.scalars(select(db.Job).where(db.Job.kind == "tune_explainer")).all()
        assert job.project_id == workbench.project_id and job.parameters == {}
