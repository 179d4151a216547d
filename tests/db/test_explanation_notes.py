"""Explanation notes (accepted or edited explanations) and the project language-model option."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import ExplanationNote, PermissionDenied, Prediction, Project, User, register_model_version
from db.explanation_notes import add_explanation_note, latest_note, note_counts, training_notes
from services.project_settings import (
    LanguageModelSetting,
    language_model_setting,
    set_language_model,
)

FACTS = {"verdict": "defect", "score": 1.5, "threshold": 1.0, "area_percent": 2.5}
SHOWN = "Flagged as defective: score 1.5 against threshold 1.0."


@pytest.fixture
def prediction_id(
    session_factory: sessionmaker[Session], project_id: int, make_image: Callable[[int], int]
) -> int:
    image_id = make_image(1)
    with session_factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="models/cells/v1",
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
        prediction = Prediction(
            image_id=image_id,
            model_version_id=version.id,
            score=1.5,
            threshold=1.0,
            verdict="defect",
            explanation={"facts": FACTS, "text": SHOWN},
        )
        session.add(prediction)
        session.flush()
        return prediction.id


def user(factory: sessionmaker[Session], user_id: int) -> User:
    with factory() as session:
        return session.get(User, user_id)


def note(factory, prediction_id: int, author: User, text: str | None, **extra) -> int:
    with factory() as session, session.begin():
        options = {"shown_text": SHOWN, "source": "grounded", **extra}
        row = add_explanation_note(
            session, prediction_id=prediction_id, text=text, user=author, **options
        )
        return row.id


def test_accepting_copies_the_facts_and_the_shown_text(
    session_factory, make_user, prediction_id
) -> None:
    inspector = user(session_factory, make_user("ines"))
    note_id = note(session_factory, prediction_id, inspector, None)
    with session_factory() as session:
        row = session.get(ExplanationNote, note_id)
        assert (row.action, row.text, row.shown_text) == ("accepted", SHOWN, SHOWN)
        assert row.facts == FACTS
        assert row.author_id == inspector.id


def test_an_edit_is_stored_and_only_the_latest_note_trains(
    session_factory, make_user, prediction_id, project_id
) -> None:
    inspector = user(session_factory, make_user("ines"))
    note(session_factory, prediction_id, inspector, None)
    edited = note(session_factory, prediction_id, inspector, "  Crack at the rim; reject.  ")
    with session_factory() as session:
        assert latest_note(session, prediction_id).id == edited
        pairs = training_notes(session, project_id)
        assert [(p.text, p.action, p.facts) for p in pairs] == [
            ("Crack at the rim; reject.", "edited", FACTS)
        ]
        assert note_counts(session, project_id) == {"accepted": 1, "edited": 1}


def test_same_text_as_shown_counts_as_accepted(session_factory, make_user, prediction_id) -> None:
    inspector = user(session_factory, make_user("ines"))
    note_id = note(session_factory, prediction_id, inspector, f" {SHOWN} ")
    with session_factory() as session:
        assert session.get(ExplanationNote, note_id).action == "accepted"


@pytest.mark.parametrize(
    ("text", "extra", "error"),
    [
        ("   ", {}, ValueError),
        ("x" * 2001, {}, ValueError),
        ("fine", {"source": "oracle"}, ValueError),
    ],
)
def test_bad_notes_are_refused_and_nothing_is_written(
    session_factory, make_user, prediction_id, text, extra, error
) -> None:
    inspector = user(session_factory, make_user("ines"))
    with pytest.raises(error):
        note(session_factory, prediction_id, inspector, text, **extra)
    with session_factory() as session:
        assert session.query(ExplanationNote).count() == 0


def test_unknown_or_unexplained_predictions_are_refused(
    session_factory, make_user, prediction_id
) -> None:
    inspector = user(session_factory, make_user("ines"))
    with pytest.raises(LookupError, match="No prediction"):
        note(session_factory, prediction_id + 99, inspector, None)
    with session_factory() as session, session.begin():
        session.get(Prediction, prediction_id).explanation = None
    with pytest.raises(LookupError, match="no stored facts"):
        note(session_factory, prediction_id, inspector, None)


def test_signed_out_users_cannot_write_notes(session_factory, prediction_id) -> None:
    with pytest.raises(PermissionDenied):
        note(session_factory, prediction_id, None, None)


def test_database_refuses_an_empty_text(session_factory, make_user, prediction_id) -> None:
    author_id = make_user("ines")
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        session.add(
            ExplanationNote(
                project_id=1,
                image_id=1,
                prediction_id=prediction_id,
                author_id=author_id,
                action="accepted",
                source="grounded",
                facts=FACTS,
                shown_text=SHOWN,
                text="",
            )
        )


def test_language_model_option_defaults_off_and_only_managers_change_it(
    session_factory, make_user, project_id
) -> None:
    with session_factory() as session:
        assert language_model_setting(session.get(Project, project_id)) == LanguageModelSetting()
    inspector = user(session_factory, make_user("ines"))
    manager = user(session_factory, make_user("mara", "manager"))
    wanted = LanguageModelSetting(enabled=True, source=" /models/plant-lm ")
    with pytest.raises(PermissionDenied), session_factory() as session, session.begin():
        set_language_model(session, project_id, wanted, user=inspector)
    with session_factory() as session, session.begin():
        set_language_model(session, project_id, wanted, user=manager)
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert language_model_setting(project) == LanguageModelSetting(True, "/models/plant-lm")
    with pytest.raises(ValueError), session_factory() as session, session.begin():
        set_language_model(session, project_id, LanguageModelSetting(True, "  "), user=manager)
