"""A part posted by a camera station: score it once, store it like an upload, answer.

The inspection API (:mod:`api`) calls :func:`inspect_station_part` for each post. The part is
scored by the project's active model version and stored through
:func:`services.inspection.inspect_uploads`, so it enters the same tables as a browser upload:
review queue, dashboard, audits and the learning loop. A station that posts the same part id
again, or the same bytes within the duplicate window, gets the first result back and nothing
new is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Project
from db.station_inspections import StationRecord, find_earlier_post, get_post, record_post
from db.verdict_events import announce_verdict
from services.inspection import inspect_uploads

DEFAULT_DUPLICATE_WINDOW = timedelta(minutes=10)
"""Posts of the same bytes by the same station within this time count as one (no part id)."""


class NoActiveModel(LookupError):  # noqa: N818 - reads as the situation
    """The project has no active model version to score with."""


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
        part_id: The line's id of the part, if it sent one (idempotency key).
        captured_at: When the camera took the picture, if it said.
        detector_for: Loads the detector of a model directory (cached by the caller).
        data_dir: The data directory; default :func:`db.data_dir`.
        window: How long the same bytes without a part id count as the same post.

    Returns:
        A :class:`StationPost`.

    Raises:
        NoActiveModel: The project has no active model version.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    key = {"project_id": station.project_id, "station": station.name, "part_id": part_id}
    with Session() as session:
        earlier = find_earlier_post(session, **key, sha256=sha256, window=window)
        if earlier is not None:
            return StationPost(get_post(session, station.project_id, earlier), duplicate=True)
        project = session.get(Project, station.project_id)
        version = project.active_model_version if project is not None else None
        if version is None:
            raise NoActiveModel("The project has no active model yet: train one first.")
        version_id, artifact = version.id, version.artifact_path
    (result,) = inspect_uploads(
        Session,
        project_id=station.project_id,
        detector=detector_for(artifact),
        model_version_id=version_id,
        uploads=[(filename, data)],
        data_dir=data_dir,
        announce=False,  # announced below, with the station's part id, once the post is stored
    )
    if not result.ok:
        return StationPost(None, error=result.error)
    try:
        with Session() as session, session.begin():
            post_id = record_post(
                session,
                **key,
                api_key_id=station.api_key_id,
                captured_at=captured_at,
                sha256=sha256,
                image_id=result.image_id,
                prediction_id=result.prediction_id,
            )
            announce_verdict(
                session,
                result.prediction_id,
                station=station.name,
                part_id=part_id,
                inspection_id=post_id,
            )
    except IntegrityError:  # the same part id posted twice at once: the first one won
        with Session() as session:
            earlier = find_earlier_post(session, **key, sha256=sha256, window=window)
            return StationPost(get_post(session, station.project_id, earlier), duplicate=True)
    with Session() as session:
        return StationPost(get_post(session, station.project_id, post_id))


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
