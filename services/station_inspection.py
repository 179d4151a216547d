"""A part posted by a camera station: score it once, store it like an upload, answer.

The inspection API (:mod:`api`) calls :func:`inspect_station_part` for each post. The part is
decided by the predictor of the project's active model version
(:meth:`services.scoring.predictor.Predictor.active`) and stored through
:func:`services.inspection.inspect_uploads`, so it enters the same tables as a browser upload:
review queue, dashboard, audits and the learning loop.

Idempotency, as HTTP's Idempotency-Key convention has it, with the station's part id as key:

* The same station and part id with the *same* bytes returns the first result (``duplicate``);
  with *different* bytes it is refused (:class:`PartIdConflict`, naming the first inspection)
  and nothing is stored: one part id names one part.
* Without a part id, the same bytes (sha256 of the file) from the same station within
  :data:`DEFAULT_DUPLICATE_WINDOW` of its first post are a retry and get the first result; any
  other post is a new part.

All or nothing: the image, its prediction, the station's post and the verdict's outbox
messages commit in one transaction. The post's announcer (:class:`_StationAnnouncer`, the
request's ``announce``) records the post and announces the verdict with the station's part id
inside the transaction that stores the part. Posts of one project are stored one at a time
(the project's write lock, :func:`db.project_lock.locked_project`), and the earlier-post check
is made again under that lock, so concurrent posts of one part (several API processes, SQLite
or PostgreSQL) leave exactly one image, prediction, post and message; the others get the first
result back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.project_lock import locked_project
from db.station_inspections import (
    EarlierPost,
    StationRecord,
    find_earlier_post,
    get_post,
    record_post,
)
from db.verdict_events import announce_verdict
from services.inspection import InspectionRequest, StoredPart, inspect_uploads
from services.scoring.predictor import Predictor

DEFAULT_DUPLICATE_WINDOW = timedelta(minutes=10)
"""Posts of the same bytes by the same station within this time count as one (no part id)."""


class NoActiveModel(LookupError):  # noqa: N818 - reads as the situation
    """The project has no active model version to score with."""


class PartIdConflict(Exception):  # noqa: N818 - reads as the situation
    """The station posted this part id before with other bytes: nothing was stored.

    Attributes:
        inspection_id: The first post of the part id.
    """

    def __init__(self, station: str, part_id: str, inspection_id: int) -> None:
        super().__init__(
            f"Part id {part_id!r} of station {station!r} was inspected before with a different "
            f"image (inspection {inspection_id}); nothing was stored. A part id names one part: "
            "post a new part under a new id, or the same image to read its verdict again."
        )
        self.inspection_id = inspection_id


class _PostedMeanwhile(Exception):  # noqa: N818 - control flow inside the storing transaction
    """Another request stored this part first (found under the project's write lock)."""

    def __init__(self, earlier: EarlierPost) -> None:
        super().__init__(f"posted meanwhile as inspection {earlier.id}")
        self.earlier = earlier


@dataclass(frozen=True)
class Station:
    """Who posts: the API key's row id, its project and its station name."""

    api_key_id: int
    project_id: int
    name: str


@dataclass(frozen=True)
class StationPost:
    """The answer to one post.

    Attributes:
        record: The stored inspection (``None`` when the image was refused).
        duplicate: True when an earlier post of the same part was returned.
        error: Why the image was refused (unreadable, too large...), else ``None``.
    """

    record: StationRecord | None
    duplicate: bool = False
    error: str | None = None


def normalise_part_id(part_id: str | None) -> str | None:
    """The part id as stored: trimmed; ``None`` when not given.

    Raises:
        ValueError: Given but empty after trimming, or holding control characters.
    """
    if part_id is None:
        return None
    trimmed = part_id.strip()
    if not trimmed:
        raise ValueError(
            "part_id is empty: leave it out when the part has no id (e.g. its barcode was not "
            "read), never send it empty."
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in trimmed):
        raise ValueError("part_id holds control characters.")
    return trimmed


def inspect_station_part(
    Session: sessionmaker[Session],  # noqa: N803 - the app's session factory
    station: Station,
    data: bytes,
    *,
    filename: str,
    part_id: str | None,
    captured_at: datetime | None,
    detector_for: Callable[[str], Any],
    data_dir: Path | None = None,
    window: timedelta = DEFAULT_DUPLICATE_WINDOW,
) -> StationPost:
    """Score and store one posted part, or return the station's earlier post of it.

    Args:
        Session: The application's session factory.
        station: The posting station (from its API key).
        data: The image file's bytes.
        filename: A name for the image (display only).
        part_id: The line's id of the part, if it sent one (idempotency key; trimmed).
        captured_at: When the camera took the picture, if it said.
        detector_for: Loads the detector of a model directory (cached by the caller).
        data_dir: The data directory; default :func:`db.data_dir`.
        window: How long the same bytes without a part id count as the same post.

    Returns:
        A :class:`StationPost`.

    Raises:
        NoActiveModel: The project has no active model version.
        PartIdConflict: The part id was posted before with other bytes (nothing stored).
        ValueError: An empty part id (see :func:`normalise_part_id`).
    """
    part_id = normalise_part_id(part_id)
    sha256 = hashlib.sha256(data).hexdigest()
    announcer = _StationAnnouncer(station, part_id, sha256, captured_at, window)
    with Session() as session:
        earlier = find_earlier_post(session, **announcer.key, sha256=sha256, window=window)
        if earlier is not None:
            return _earlier_answer(session, station, part_id, earlier, sha256)
    predictor = Predictor.active(Session, station.project_id, detector_for)
    if predictor is None:
        raise NoActiveModel("The project has no active model yet: train one first.")
    request = InspectionRequest(predictor, data_dir=data_dir, announce=announcer)
    try:
        (result,) = inspect_uploads(Session, request, [(filename, data)])
    except _PostedMeanwhile as race:
        with Session() as session:
            return _earlier_answer(session, station, part_id, race.earlier, sha256)
    if not result.ok or announcer.record is None:
        return StationPost(None, error=result.error)
    return StationPost(announcer.record)


@dataclass
class _StationAnnouncer:
    """Announces a station's part in the transaction that stores it: its post, then its verdict.

    Posts of the project queue up on the project's write lock, and the earlier-post check is
    made again under it: a post stored meanwhile by another request rolls this one back
    (:class:`_PostedMeanwhile`).
    """

    station: Station
    part_id: str | None
    sha256: str
    captured_at: datetime | None
    window: timedelta
    record: StationRecord | None = None  # the stored post, read back in its transaction

    @property
    def key(self) -> dict[str, Any]:
        """Who posted which part: the idempotency key of :mod:`db.station_inspections`."""
        return {
            "project_id": self.station.project_id,
            "station": self.station.name,
            "part_id": self.part_id,
        }

    def __call__(self, session: Session, stored: StoredPart) -> None:
        locked_project(session, self.station.project_id)  # posts of the project queue up here
        meanwhile = find_earlier_post(session, **self.key, sha256=self.sha256, window=self.window)
        if meanwhile is not None:
            raise _PostedMeanwhile(meanwhile)
        post_id = record_post(
            session,
            **self.key,
            api_key_id=self.station.api_key_id,
            captured_at=self.captured_at,
            sha256=self.sha256,
            image_id=stored.image_id,
            prediction_id=stored.prediction_id,
        )
        announce_verdict(
            session,
            stored.prediction_id,
            station=self.station.name,
            part_id=self.part_id,
            inspection_id=post_id,
        )
        self.record = get_post(session, self.station.project_id, post_id)


def _earlier_answer(
    session: Session,
    station: Station,
    part_id: str | None,
    earlier: EarlierPost,
    sha256: str,
) -> StationPost:
    """The first result for a repeated post, or :class:`PartIdConflict` for other bytes."""
    if part_id is not None and earlier.sha256 != sha256:
        raise PartIdConflict(station.name, part_id, earlier.id)
    return StationPost(get_post(session, station.project_id, earlier.id), duplicate=True)


def map_overlay_png(session: Session, record: StationRecord, data_dir: Path | None = None) -> bytes:
    """The part with its anomaly map over it at half opacity, on its version's colour scale.

    Raises:
        OSError: The image or the map file is gone.
        ValueError: The record has no map.
        adcore.errors.ImageLoadError: The image cannot be decoded.
    """
    import io

    from PIL import Image as PILImage

    from adcore.anomaly_maps import overlay_image
    from adcore.image_io import load_image
    from adcore.map_scale import own_scale
    from db.image_store import absolute_image_path
    from services.map_scales import prediction_map_scale
    from services.map_store import load_anomaly_map

    if record.anomaly_map_path is None:
        raise ValueError("this inspection stored no anomaly map")
    pixels = load_image(absolute_image_path(record.stored_path, data_dir))
    anomaly_map = load_anomaly_map(record.anomaly_map_path, data_dir)
    scale = prediction_map_scale(session, record.prediction_id) or own_scale(anomaly_map)
    buffer = io.BytesIO()
    PILImage.fromarray(overlay_image(pixels, anomaly_map, 0.5, scale=scale)).save(buffer, "PNG")
    return buffer.getvalue()
