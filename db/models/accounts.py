"""People who use the workbench."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import ENUM_LENGTH, Base, Role, sql_in, utcnow

USER_NAME_LENGTH = 64


class User(Base):
    """A person with a role; the password is stored only as an argon2 hash."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(sql_in("role", Role), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(USER_NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r}, role={self.role!r})"
