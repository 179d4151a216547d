"""Inspectors' accepted or edited explanations, and the (facts, text) pairs they make.

An inspector who reads a part's explanation can accept it as written or replace it with their
own words. Either way a :class:`db.models.ExplanationNote` is appended: the facts the
explanation came from, what was shown and what the inspector settled on. The latest note of
each prediction is one training example for explanation adapters (:func:`training_notes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.base import NoteAction
from db.models import ExplanationNote, Prediction, User
from db.permissions import CAN_REVIEW, require_session_role

MAX_NOTE_LENGTH = 2000
MIN_TRAINING_NOTES = 20
"""Fewest notes (one per prediction) an explanation-adapter training job accepts."""
NOTE_SOURCES = frozenset({"grounded", "model", "adapter"})
"""Who wrote the shown text: the fixed sentences, a language model, or a tuned adapter."""


@dataclass(frozen=True)
class TrainingNote:
    """One (facts -> text) example for explanation adapters.

    Attributes:
        note_id: The note's id.
        prediction_id: The prediction it explains.
        facts: The measured facts (``ExplanationFacts.to_json()``).
        text: The accepted or edited explanation.
        action: ``"accepted"`` or ``"edited"``.
    """

    note_id: int
    prediction_id: int
    facts: dict[str, Any]
    text: str
    action: str


def add_explanation_note(
    session: Session,
    *,
    prediction_id: int,
    shown_text: str,
    text: str | None,
    source: str,
    user: User,
) -> ExplanationNote:
    """Store an inspector's verdict on a shown explanation (accepted when ``text`` is None).

    Args:
        session: The caller's session (the caller commits).
        prediction_id: The prediction whose explanation was shown; its stored facts are copied.
        shown_text: The explanation the inspector saw.
        text: Their own words, or None to accept ``shown_text`` as it is. A text equal to
            ``shown_text`` (ignoring surrounding spaces) also counts as accepted.
        source: Who wrote ``shown_text``: ``grounded``, ``model`` or ``adapter``.
        user: The acting inspector, manager or admin.

    Returns:
        The new note (flushed).

    Raises:
        PermissionDenied: If the user may not review.
        LookupError: If the prediction does not exist or has no stored facts.
        ValueError: If the text is empty or too long, or the source is unknown.
    """
    author = require_session_role(session, user, *CAN_REVIEW)
    if source not in NOTE_SOURCES:
        raise ValueError(f"Unknown explanation source {source!r}: one of {sorted(NOTE_SOURCES)}.")
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        raise LookupError(f"No prediction with id {prediction_id}.")
    facts = (prediction.explanation or {}).get("facts")
    if not facts:
        raise LookupError(f"Prediction {prediction_id} has no stored facts to explain.")
    shown = shown_text.strip()
    final = shown if text is None else text.strip()
    if not final:
        raise ValueError("The explanation is empty: write a sentence or accept the shown one.")
    if len(final) > MAX_NOTE_LENGTH:
        raise ValueError(f"The explanation is longer than {MAX_NOTE_LENGTH} characters.")
    note = ExplanationNote(
        project_id=prediction.image.project_id,
        image_id=prediction.image_id,
        prediction_id=prediction.id,
        author_id=author.id,
        action=(NoteAction.ACCEPTED if final == shown else NoteAction.EDITED).value,
        source=source,
        facts=dict(facts),
        shown_text=shown,
        text=final,
    )
    session.add(note)
    session.flush()
    return note


def latest_note(session: Session, prediction_id: int) -> ExplanationNote | None:
    """The latest note on a prediction, or None."""
    return session.scalars(
        select(ExplanationNote)
        .where(ExplanationNote.prediction_id == prediction_id)
        .order_by(ExplanationNote.created_at.desc(), ExplanationNote.id.desc())
        .limit(1)
    ).first()


def training_notes(session: Session, project_id: int) -> list[TrainingNote]:
    """Each explained prediction's latest note in a project, oldest first.

    Args:
        session: The caller's session.
        project_id: The project.

    Returns:
        One :class:`TrainingNote` per prediction that has a note, ordered by note id.
    """
    latest = (
        select(func.max(ExplanationNote.id))
        .where(ExplanationNote.project_id == project_id)
        .group_by(ExplanationNote.prediction_id)
    )
    notes = session.scalars(
        select(ExplanationNote).where(ExplanationNote.id.in_(latest)).order_by(ExplanationNote.id)
    )
    return [
        TrainingNote(note.id, note.prediction_id, dict(note.facts), note.text, note.action)
        for note in notes
    ]


def note_counts(session: Session, project_id: int) -> dict[str, int]:
    """How many notes a project has, by action (``accepted``, ``edited``)."""
    rows = session.execute(
        select(ExplanationNote.action, func.count())
        .where(ExplanationNote.project_id == project_id)
        .group_by(ExplanationNote.action)
    ).all()
    return {action: count for action, count in rows}
