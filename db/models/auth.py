"""Signed-in sessions and the audit trail of sign-in attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import ENUM_LENGTH, Base, SessionEnd, SignInOutcome, sql_in, utcnow
from db.models.accounts import USER_NAME_LENGTH, User

#: A SHA-256 digest written as hexadecimal.
DIGEST_LENGTH = 64
#: Room for an IPv6 address or a short label such as ``local``.
CLIENT_LENGTH = 64


class AuthSession(Base):
    """One browser's signed-in session: what its cookie stands for.

    Only a digest of a secret is stored. While ``handoff_until`` is set, ``token_digest`` is
    the digest of a one-time hand-off code that the browser trades once, before that time,
    for its cookie; the trade replaces it with the digest of the cookie's token. A session is
    live until ``expires_at`` unless ``ended_at`` is set (sign-out, password or role change,
    deactivation: ``end_reason``).
    """

    __tablename__ = "auth_sessions"
    __table_args__ = (
        CheckConstraint(f"end_reason IS NULL OR {sql_in('end_reason', SessionEnd)}", name="end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), unique=True)
    client: Mapped[str] = mapped_column(String(CLIENT_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    handoff_until: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(ENUM_LENGTH))

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return (
            f"AuthSession(id={self.id!r}, user_id={self.user_id!r}, end_reason={self.end_reason!r})"
        )


class SignInAttempt(Base):
    """One sign-in attempt, kept for the throttle and for admins' audit.

    ``user_name`` is the name as typed (trimmed, cut to the longest possible name), whether or
    not such a user exists; ``client`` the address the attempt came from.
    """

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        CheckConstraint(sql_in("outcome", SignInOutcome), name="outcome"),
        Index("ix_sign_in_attempts_user_name_attempted_at", "user_name", "attempted_at"),
        Index("ix_sign_in_attempts_client_attempted_at", "client", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_name: Mapped[str] = mapped_column(String(USER_NAME_LENGTH))
    client: Mapped[str] = mapped_column(String(CLIENT_LENGTH))
    outcome: Mapped[str] = mapped_column(String(ENUM_LENGTH))

    def __repr__(self) -> str:
        return (
            f"SignInAttempt(id={self.id!r}, user_name={self.user_name!r}, outcome={self.outcome!r})"
        )
