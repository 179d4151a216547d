"""A station's post: idempotent by part id, and stored all or nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from active_model import (
    fit_small_patchcore,
    project_with_active_model,
    send_verdicts_to,
    station_key,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

import services.station_inspection as station_inspection
from db import Image, Prediction
from db.image_store import absolute_image_path
from db.models import StationInspection
from db.models.outbound_messages import OutboundMessage
from services.station_inspection import (
    PartIdConflict,
    Station,
    inspect_station_part,
    normalise_part_id,
)

STORED = (Image, Prediction, StationInspection, OutboundMessage)


@pytest.fixture(scope="module")
def fitted() -> tuple:
    return fit_small_patchcore()


@pytest.fixture
def station(factory: sessionmaker[Session], tmp_path: Path, fitted: tuple) -> Station:
    """Station ``line-1`` of a project with an active model and a webhook (never delivered)."""
    project_id = project_with_active_model(factory, "widgets", fitted, tmp_path / "models")
    send_verdicts_to(factory, project_id, "http://127.0.0.1:9/hook")
    return Station(station_key(factory, project_id).id, project_id, "line-1")


def counts(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return [session.scalar(select(func.count()).select_from(model)) for model in STORED]


def post(factory: sessionmaker[Session], station: Station, seed: int, part_id: str | None):
    from services.scoring.runtime import detector_loader

    return inspect_station_part(
        factory,
        station,
        png(make_part(seed)),
        filename="part.png",
        part_id=part_id,
        captured_at=None,
        detector_for=detector_loader("torch"),
    )


def test_a_failure_after_scoring_stores_nothing_and_the_retry_stores_one_of_everything(
    factory: sessionmaker[Session],
    station: Station,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the process died between scoring and commit")

    monkeypatch.setattr(station_inspection, "announce_verdict", crash)
    with pytest.raises(RuntimeError, match="between scoring and commit"):
        post(factory, station, 1, "P-1")
    assert counts(factory) == [0, 0, 0, 0]
    assert not list((data_dir / "maps").glob("*.npy"))  # the map file went with its row
    monkeypatch.undo()

    first = post(factory, station, 1, "P-1")
    again = post(factory, station, 1, "P-1")
    assert first.record is not None and not first.duplicate
    assert again.duplicate and again.record.id == first.record.id
    assert counts(factory) == [1, 1, 1, 1]
    assert absolute_image_path(first.record.stored_path).exists()


def test_a_part_id_posted_again_with_other_bytes_is_refused_and_nothing_is_stored(
    factory: sessionmaker[Session], station: Station
) -> None:
    first = post(factory, station, 2, " P-2 ")
    assert first.record.part_id == "P-2"
    with pytest.raises(PartIdConflict, match=f"inspection {first.record.id}"):
        post(factory, station, 3, "P-2")
    assert counts(factory) == [1, 1, 1, 1]
    retried = post(factory, station, 4, None)
    same_bytes = post(factory, station, 4, None)  # a camera's retry within the window
    assert same_bytes.duplicate and same_bytes.record.id == retried.record.id
    assert counts(factory) == [2, 2, 2, 2]


@pytest.mark.parametrize("bad", ["", "   ", "P\x00-1", "P-\n1"])
def test_an_empty_or_control_character_part_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_part_id(bad)
