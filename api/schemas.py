"""What the inspection API returns (pydantic models, in the OpenAPI description)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from db.station_inspections import StationRecord


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code`` and a sentence for the line's operator."""

    code: str
    message: str
    fields: list[dict[str, str]] | None = None


class ErrorOut(BaseModel):
    """Every error the API answers, 4xx or 5xx: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` entries for the given error statuses, all in :class:`ErrorOut`."""
    reasons = {
        401: "No key, or an unknown or revoked one",
        403: "The key lacks the scope",
        404: "No such project for this key, or no such inspection",
        409: "A conflict with what is stored",
        410: "The file is no longer stored",
        413: "The body is too large",
        415: "The body is declared as JSON or text, not an image",
        422: "A bad parameter or body",
    }
    return {
        status: {"model": ErrorOut, "description": reasons.get(status, "An error")}
        for status in statuses
    }


class HumanLabel(BaseModel):
    """The part's current human label (the final decision once reviewed)."""

    label: str
    defect_type: str | None
    reviewer: str | None
    reviewed_at: datetime | None


class InspectionOut(BaseModel):
    """One inspected part."""

    id: int
    project_id: int
    station: str
    part_id: str | None
    captured_at: datetime | None
    inspected_at: datetime
    verdict: str
    score: float
    threshold: float
    model_version: int
    model_label: str = Field(description='The model revision as people read it, e.g. "v2.14".')
    explanation: str | None
    image_url: str
    map_url: str | None
    review: HumanLabel | None
    duplicate: bool = False


class InspectionList(BaseModel):
    """A page of inspections; ``next_offset`` is ``None`` on the last page."""

    items: list[InspectionOut]
    next_offset: int | None


def inspection_out(
    record: StationRecord, *, image_url: str, map_url: str | None, duplicate: bool = False
) -> InspectionOut:
    """The API's view of a stored post (the record's fields, its links and its human label)."""
    review = None
    if record.label is not None:
        review = HumanLabel.model_validate(record, from_attributes=True)
    fields = {**asdict(record), "image_url": image_url, "map_url": map_url}
    return InspectionOut.model_validate({**fields, "review": review, "duplicate": duplicate})
