"""Parts posted by camera stations through the inspection API, for idempotency and read-back.

Each row ties one API call to the image and prediction it stored (the same tables as an
upload in the browser, so the part enters the review queue, the dashboard and the learning
loop). A station that sends the same part id twice gets the first result back: the
``(project, station, part_id)`` triple is unique; rows without a part id are matched by the
image's bytes within a time window instead (:mod:`db.station_inspections`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, utcnow
from db.models.api_keys import STATION_LENGTH, ApiKey
from db.models.images import SHA256_HEX_LENGTH, Image, Prediction

PART_ID_LENGTH = 128


class StationInspection(Base):
    """One part a station posted, and what Loupe stored for it."""

    __tablename__ = "station_inspections"
    __table_args__ = (
        UniqueConstraint("project_id", "station", "part_id"),
        Index(
            "ix_station_inspections_project_id_station_sha256_created_at",
            "project_id",
            "station",
            "sha256",
            "created_at",
        ),
        Index("ix_station_inspections_project_id_created_at", "project_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    station: Mapped[str] = mapped_column(String(STATION_LENGTH))
    part_id: Mapped[str | None] = mapped_column(String(PART_ID_LENGTH))
    captured_at: Mapped[datetime | None]
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    api_key: Mapped[ApiKey] = relationship()
    image: Mapped[Image] = relationship()
    prediction: Mapped[Prediction] = relationship()
