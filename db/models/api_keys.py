"""API keys: how a camera station or an MES proves who it is to the inspection API.

A key belongs to one project and one station and carries one scope: ``inspect`` (post parts
and read results) or ``read`` (read results only). Only a SHA-256 digest of the secret is
stored; the key itself is shown once, when it is created (:mod:`db.api_keys`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, utcnow
from db.models.accounts import User
from db.models.projects import Project

API_KEY_SCOPES = ("inspect", "read")
"""``inspect``: post parts and read results; ``read``: read results only."""
STATION_LENGTH = 64
KEY_ID_LENGTH = 16
DIGEST_LENGTH = 64


class ApiKey(Base):
    """One station's key to one project (revoked keys stay, for the record)."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("scope IN ('inspect', 'read')", name="scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The public half of the key (``loupe_<key_id>_<secret>``): finds the row in one lookup.
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), unique=True)
    # SHA-256 of the whole key, hex: the key itself is never stored.
    key_digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    station: Mapped[str] = mapped_column(String(STATION_LENGTH))
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship()
    created_by: Mapped[User | None] = relationship()

    @property
    def active(self) -> bool:
        """Whether the key still opens the API."""
        return self.revoked_at is None

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, key_id={self.key_id!r}, station={self.station!r})"
