"""The inspection API's query parameters, checked before anything is read or scored.

Each route's query is a pydantic model that forbids unknown parameters (a misspelt
``partid=`` or ``verdit=`` is a 422, not a part without id or an unfiltered list), and no
parameter may be given twice (``part_id=A&part_id=B`` names no one part). Numbers stay
within what every database stores, and times must carry a zone and lie in a plausible window,
so no value reaches SQL that it would overflow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.station_inspection import normalise_part_id

MAX_ROW_ID = 2**31 - 1
"""Largest row id or offset accepted (PostgreSQL's ``integer``)."""
PART_ID_MAX_LENGTH = 128
CAPTURED_AT_MAX_AGE = timedelta(days=30)
"""A picture taken longer ago than this is refused (a wrong clock, or a unit mix-up)."""
CAPTURED_AT_MAX_AHEAD = timedelta(hours=1)
"""How far a station's clock may run ahead of the server's."""
EARLIEST_QUERY_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_QUERY_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def refuse_repeated_parameters(request: Request) -> None:
    """Refuse a query that gives one parameter twice (``part_id=A&part_id=B``): which one?

    Raises:
        RequestValidationError: Naming the repeated parameters (a 422 like any bad parameter).
    """
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "given more than once", "type": "repeated"}
                for name in repeated
            ]
        )


def in_utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC, refusing a time without zone or one that overflows.

    Raises:
        ValueError: No time zone, or the instant lies outside 1970-9000.
    """
    if value.utcoffset() is None:
        raise ValueError(f"{name} needs a time zone, e.g. 2026-12-02T08:00:00Z.")
    try:
        utc = value.astimezone(UTC)
    except OverflowError as err:
        raise ValueError(f"{name} is out of range.") from err
    if not EARLIEST_QUERY_TIME <= utc < LATEST_QUERY_TIME:
        raise ValueError(f"{name} is out of range (1970 to 9000).")
    return utc


class PostQuery(BaseModel):
    """``POST .../inspections``: the part's id and when the camera took the picture."""

    model_config = ConfigDict(extra="forbid")

    part_id: Annotated[
        str | None,
        Field(
            max_length=PART_ID_MAX_LENGTH,
            description="The line's id of the part (trimmed; leave it out rather than empty). "
            "The same station and id with the same image returns the first result; with "
            "another image it is refused (409).",
        ),
    ] = None
    captured_at: Annotated[
        datetime | None,
        Field(
            description="When the camera took the picture, with a time zone; at most "
            f"{CAPTURED_AT_MAX_AGE.days} days ago and "
            f"{int(CAPTURED_AT_MAX_AHEAD.total_seconds() // 60)} minutes ahead."
        ),
    ] = None

    @field_validator("part_id")
    @classmethod
    def _part_id(cls, value: str | None) -> str | None:
        return normalise_part_id(value)

    @field_validator("captured_at")
    @classmethod
    def _captured_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        utc = in_utc(value, "captured_at")
        now = datetime.now(UTC)
        if utc < now - CAPTURED_AT_MAX_AGE or utc > now + CAPTURED_AT_MAX_AHEAD:
            raise ValueError(
                f"captured_at {utc.isoformat()} is not plausible: it must lie between "
                f"{CAPTURED_AT_MAX_AGE.days} days ago and "
                f"{int(CAPTURED_AT_MAX_AHEAD.total_seconds() // 60)} minutes from now "
                "(check the station's clock and time zone)."
            )
        return utc


class InspectionFilter(BaseModel):
    """``GET .../inspections``: a time window, a verdict and a page."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(None, description="Inspected at or after (with a zone).")
    until: datetime | None = Field(None, description="Inspected before (with a zone).")
    verdict: Literal["good", "defect"] | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_ROW_ID)

    @field_validator("since", "until")
    @classmethod
    def _zoned(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return None if value is None else in_utc(value, info.field_name or "time")
