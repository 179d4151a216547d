"""Stored images and the model predictions made on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    Select,
    String,
    UniqueConstraint,
    event,
    false,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, aliased, mapped_column, object_session, relationship
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from db.base import ENUM_LENGTH, Base, DecisionRegion, ImageSource, Label, sql_in, utcnow
from db.models.projects import PATH_LENGTH, ModelVersion, Project

SHA256_HEX_LENGTH = 64
ORIGINAL_NAME_LENGTH = 255


class Image(Base):
    """One image file, stored once per project under a path derived from its sha256.

    ``stored_path`` is relative to the data directory and built from the hash and an extension
    sniffed from the bytes, never from ``original_name`` (which is display metadata only).

    ``current_review_id`` is a denormalised copy of what the review log says: the image's latest
    counting review (``NULL`` when unlabelled). It is never written by application code: the
    mapper events in :mod:`db.models.reviews` recompute it from the log in the same transaction
    (and flush) as every review or undo row inserted through the ORM. The foreign key closes a
    cycle with ``reviews.image_id`` (``use_alter``).
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        CheckConstraint(sql_in("source", ImageSource), name="source"),
        CheckConstraint(f"length(sha256) = {SHA256_HEX_LENGTH}", name="sha256_length"),
        CheckConstraint("width > 0 AND height > 0", name="positive_size"),
        CheckConstraint("size_bytes > 0", name="positive_size_bytes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Its own index (besides the unique one with sha256): in id order, so a project's images
    # are read sequentially and their predictions' index in order (SQLite, no ANALYZE).
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    stored_path: Mapped[str] = mapped_column(String(PATH_LENGTH))
    original_name: Mapped[str] = mapped_column(String(ORIGINAL_NAME_LENGTH))
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int]
    source: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    current_review_id: Mapped[int | None] = mapped_column(
        ForeignKey("reviews.id", use_alter=True), index=True
    )

    project: Mapped[Project] = relationship()

    def __repr__(self) -> str:
        return f"Image(id={self.id!r}, sha256={self.sha256[:12]!r}..., path={self.stored_path!r})"


class Prediction(Base):
    """A model version's score and verdict for one image (plus optional map and explanation)."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint(sql_in("verdict", Label), name="verdict"),
        CheckConstraint(
            "defect_probability IS NULL OR (defect_probability >= 0 AND defect_probability <= 1)",
            name="defect_probability_range",
        ),
        CheckConstraint(
            "decision_region IS NULL OR " + sql_in("decision_region", DecisionRegion),
            name="decision_region",
        ),
        CheckConstraint(
            "audit_probability IS NULL OR (audit_probability > 0 AND audit_probability <= 1)",
            name="audit_probability_range",
        ),
        Index("ix_predictions_image_id_created_at", "image_id", "created_at"),
        # Covers "the latest prediction of this image by this version" (no table read).
        Index(
            "ix_predictions_image_id_model_version_id_created_at",
            "image_id",
            "model_version_id",
            "created_at",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    score: Mapped[float]
    threshold: Mapped[float]
    verdict: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    anomaly_map_path: Mapped[str | None] = mapped_column(String(PATH_LENGTH))
    explanation: Mapped[dict[str, Any] | None]
    # The part's global feature vector (float16 bytes; see adcore.explain.neighbours), used to
    # find the confirmed defects it resembles. NULL for models that give none.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The part passed its first inspection and was drawn at random for review (adcore.audit);
    # later predictions of a drawn part (re-scoring) carry the flag. See db.audits.
    audit: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Where the cascade put the part at its first inspection (db.base.DecisionRegion) and the
    # known probability that a part of that region is looked at by a human (1 for parts sent
    # to a human, the region's audit odds otherwise). Re-scoring carries both from the part's
    # first prediction: the line decided the part once. NULL for predictions stored before
    # regions existed (services.loop_rates treats them as one stratum of their own).
    decision_region: Mapped[str | None] = mapped_column(String(ENUM_LENGTH))
    audit_probability: Mapped[float | None]
    # The active feedback scorer that decided the verdict, and its p(defect); both NULL when
    # the detector alone decided (score against threshold). See services.scoring.feedback.
    scorer_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    defect_probability: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # True once the same model version has scored the image again (a later prediction of the
    # same image and version exists): "latest per image and version" is then a plain filter,
    # which the dashboard's queries join cheaply. Kept by the mapper event below; writers that
    # insert around the ORM call db.predictions.rebuild_superseded.
    superseded: Mapped[bool] = mapped_column(default=False, server_default=false())

    image: Mapped[Image] = relationship()
    model_version: Mapped[ModelVersion] = relationship(foreign_keys=[model_version_id])

    def __repr__(self) -> str:
        return (
            f"Prediction(id={self.id!r}, image_id={self.image_id!r}, "
            f"score={self.score!r}, verdict={self.verdict!r})"
        )


@event.listens_for(Prediction, "after_insert")
def _refresh_superseded(
    _mapper: Mapper[Prediction], connection: Connection, prediction: Prediction
) -> None:
    """Recompute ``superseded`` over the inserted prediction's (image, version) pair.

    One indexed read when the pair has no other prediction (the usual case); otherwise one
    UPDATE of the pair, and loaded rows of the pair are kept in step.
    """
    predictions = Prediction.__table__
    pair = (
        predictions.c.image_id == prediction.image_id,
        predictions.c.model_version_id == prediction.model_version_id,
    )
    newest_first = connection.scalars(
        select(predictions.c.id)
        .where(*pair)
        .order_by(predictions.c.created_at.desc(), predictions.c.id.desc())
    ).all()
    if len(newest_first) < 2:
        return  # the only one: not superseded (the column's default)
    newest = newest_first[0]
    connection.execute(
        update(predictions).where(*pair).values(superseded=predictions.c.id != newest)
    )
    session = object_session(prediction)
    if session is None:
        return
    for prediction_id in newest_first:
        loaded = session.identity_map.get(identity_key(Prediction, prediction_id))
        if loaded is not None:
            set_committed_value(loaded, "superseded", prediction_id != newest)


def newest_prediction_id(image_id: Any, model_version_id: Any) -> Select[tuple[int]]:
    """SELECT the id of an image's latest prediction by a version (``created_at``, then id).

    Args:
        image_id: A value, or an outer query's column (the select then correlates to it).
        model_version_id: The same for the version.
    """
    candidate = aliased(Prediction, name="newest_prediction")
    return (
        select(candidate.id)
        .where(candidate.image_id == image_id, candidate.model_version_id == model_version_id)
        .order_by(candidate.created_at.desc(), candidate.id.desc())
        .limit(literal_column("1"))
    )
