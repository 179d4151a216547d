"""Declarative base, naming convention, UTC timestamps and the enumerations stored as text.

Enumerations are stored as short strings guarded by CHECK constraints (portable to every
backend, readable in raw SQL); the Python ``StrEnum`` classes below are the single source of
the allowed values for the models. The migrations spell the values out literally on purpose:
a migration must keep describing the schema as it was when it was written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

#: Width of every column holding an enumeration value (all values are shorter).
ENUM_LENGTH = 16

#: Deterministic constraint and index names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    Naive datetimes are refused on the way in (they are ambiguous). SQLite stores no offset, so
    values read back from it are labelled UTC; other backends return aware values, converted to
    UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC; refuse naive ones."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: use an aware UTC value (db.utcnow())")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Loupe table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Role(StrEnum):
    """What a user may do."""

    INSPECTOR = "inspector"
    MANAGER = "manager"
    ADMIN = "admin"


class ImageSource(StrEnum):
    """How an image entered Loupe."""

    UPLOAD = "upload"
    FOLDER = "folder"
    DEMO = "demo"


class Label(StrEnum):
    """A judgement of a part: an inspector's label or a model's verdict.

    One enum for ``Review.label`` and ``Prediction.verdict`` (the rule:
    :func:`adcore.verdicts.verdict_for`), so that a label and a verdict compare as they read.
    """

    GOOD = "good"
    DEFECT = "defect"


class DecisionRegion(StrEnum):
    """Where the line's decision put a part at its first inspection (the decision cascade).

    Each region has a known probability that a part in it is looked at by a human
    (:mod:`services.audit_sampling`), stored with the part (``Prediction.audit_probability``):

    * ``sent_to_human``: flagged by the screen (the detector) and not auto-accepted: reviewed
      with certainty (probability 1).
    * ``auto_accepted``: flagged by the screen, accepted as good by the triage model (stage 2).
    * ``near_pass``: passed by the screen, its score just below the threshold.
    * ``deep_pass``: passed by the screen, far below the threshold.

    The values are the region names of :mod:`adcore.audit` (the core knows no storage).
    """

    SENT_TO_HUMAN = "sent_to_human"
    AUTO_ACCEPTED = "auto_accepted"
    NEAR_PASS = "near_pass"
    DEEP_PASS = "deep_pass"


class ModelStatus(StrEnum):
    """Life cycle of a trained model version."""

    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class NoteAction(StrEnum):
    """What an inspector did with a shown explanation."""

    ACCEPTED = "accepted"
    EDITED = "edited"


class SessionEnd(StrEnum):
    """Why a signed-in session was ended before it expired."""

    SIGNED_OUT = "signed_out"
    PASSWORD_CHANGED = "password"
    ROLE_CHANGED = "role"
    DEACTIVATED = "deactivated"


class SignInOutcome(StrEnum):
    """What became of one sign-in attempt."""

    SUCCESS = "success"
    FAILURE = "failure"  # wrong password, unknown or inactive user
    REFUSED = "refused"  # not checked: the user name or the client was locked


class JobStatus(StrEnum):
    """Life cycle of a background job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def sql_in(column: str, allowed: type[StrEnum]) -> str:
    """Return the SQL condition ``column IN ('a', 'b', ...)`` for a CHECK constraint.

    Args:
        column: Column name (a trusted identifier from the models).
        allowed: The enumeration whose values are allowed.

    Returns:
        Portable SQL text.
    """
    values = ", ".join(f"'{member.value}'" for member in allowed)
    return f"{column} IN ({values})"
