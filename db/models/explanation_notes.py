"""Inspectors' verdicts on shown explanations: the training data of explanation adapters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import ENUM_LENGTH, Base, NoteAction, sql_in, utcnow
from db.models.accounts import User
from db.models.images import Image, Prediction

SOURCE_LENGTH = 32


class ExplanationNote(Base):
    """One inspector's accepted or edited explanation of one prediction.

    ``facts`` is a copy of the facts the explanation was built from (``Prediction.explanation``
    may later gain a rewrite, the facts never change), ``shown_text`` what the inspector saw,
    ``text`` what they accepted (equal to ``shown_text``) or wrote instead. ``source`` says who
    wrote ``shown_text``: ``grounded`` (the fixed sentences), ``model`` (a language model) or
    ``adapter`` (a language model with a tuned adapter). Notes are appended, never edited; a
    prediction's latest note is the one that counts as training data.
    """

    __tablename__ = "explanation_notes"
    __table_args__ = (
        CheckConstraint(sql_in("action", NoteAction), name="action"),
        CheckConstraint("length(text) > 0", name="text_not_empty"),
        Index("ix_explanation_notes_project_id_created_at", "project_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    facts: Mapped[dict[str, Any]]
    shown_text: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship()
    prediction: Mapped[Prediction] = relationship()
    author: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return (
            f"ExplanationNote(id={self.id!r}, prediction_id={self.prediction_id!r}, "
            f"action={self.action!r})"
        )
