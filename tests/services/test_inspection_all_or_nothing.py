"""One transaction per inspection, on every path: a part's rows and messages commit together.

Uploads, server folders, the hot folder, station posts and re-scores store a part in one
transaction: its image, its prediction, the station's post, the hot-folder file's row and the
verdict's outbox message. A failure between scoring and commit leaves nothing of the part, and
the retry stores exactly one of everything; so does a process killed (SIGKILL) inside that
transaction. A tiny stand-in detector scores (no model is fitted); SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from active_model import send_verdicts_to, station_key
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker
from stand_in_detector import (
    GreyLevelDetector,
    grey_part,
    project_with_stand_in,
    stand_in_for,
    storing,
)

from db import Image, Prediction, Role, User
from db.models import HotFolderFile, StationInspection
from db.models.outbound_messages import OutboundMessage
from services.hot_folder import HotFolder
from services.inspection import (
    InspectionRequest,
    InspectionResult,
    inspect_folder,
    inspect_uploads,
    rescore_images,
)
from services.scoring.predictor import Predictor
from services.station_inspection import Station, StationPost, inspect_station_part

STORED = (Image, Prediction, StationInspection, OutboundMessage)
FLAGGED = grey_part(150)  # scored 1.5 against 1.0: flagged (never drawn for audit)
SUPPORT = Path(__file__).resolve().parents[1] / "support"
REPO_ROOT = Path(__file__).resolve().parents[2]
KILL_TIMEOUT = 120.0


@dataclass
class Line:
    """A project whose active version the stand-in plays, its webhook on, a station, a manager."""

    factory: sessionmaker[Session]
    project_id: int
    version_id: int
    station: Station
    manager: User
    root: Path

    def request(self) -> InspectionRequest:
        """A request to store what the active version decides, announced as a first look."""
        predictor = Predictor.active(self.factory, self.project_id, stand_in_for)
        assert predictor is not None
        return InspectionRequest(predictor)

    def post(self, data: bytes) -> StationPost:
        """The station posts ``data`` as part ``P-1``."""
        return inspect_station_part(
            self.factory,
            self.station,
            data,
            filename="part.png",
            part_id="P-1",
            captured_at=None,
            detector_for=stand_in_for,
        )


@pytest.fixture
def line(factory: sessionmaker[Session], root: Path, make_user: Callable[..., int]) -> Line:
    project_id, version_id = project_with_stand_in(factory, "widgets")
    send_verdicts_to(factory, project_id, "http://127.0.0.1:9/hook")  # written, never sent
    with factory() as session:
        manager = session.get(User, make_user("max", Role.MANAGER))
    key = station_key(factory, project_id)
    return Line(
        factory, project_id, version_id, Station(key.id, project_id, "line-1"), manager, root
    )


def counts(factory: sessionmaker[Session]) -> list[int]:
    """Images, predictions, station posts and outbox messages stored."""
    with factory() as session:
        return [session.scalar(select(func.count()).select_from(model)) for model in STORED]


def map_files(data_dir: Path) -> int:
    return len(list((data_dir / "maps").glob("*.npy")))


@contextmanager
def failing_commit(factory: sessionmaker[Session]) -> Iterator[None]:
    """Fail every part's storing transaction once all its rows are written, before it commits."""

    def fail(session: Session) -> None:
        if storing(session):
            session.flush()
            raise RuntimeError("the process died between scoring and commit")

    event.listen(factory, "before_commit", fail)
    try:
        yield
    finally:
        event.remove(factory, "before_commit", fail)


def upload(line: Line) -> list[InspectionResult]:
    return inspect_uploads(line.factory, line.request(), [("part.png", FLAGGED)])


def server_folder(line: Line) -> list[InspectionResult]:
    (line.root / "part.png").write_bytes(FLAGGED)
    return inspect_folder(line.factory, line.request(), line.root, user=line.manager)


def hot_folder(line: Line) -> object:
    hot = HotFolder(
        line.factory,
        project_id=line.project_id,
        folder=line.root / "hot",
        detector_for=stand_in_for,
    )
    path = hot.folder / "part.png"
    if not path.exists():  # a failed take leaves the file where it was
        path.write_bytes(FLAGGED)
    return hot.take(path)


def station_post(line: Line) -> StationPost:
    return line.post(FLAGGED)


def rescore(line: Line) -> list[InspectionResult]:
    with line.factory() as session:
        image_ids = list(session.scalars(select(Image.id)))
    return rescore_images(
        line.factory,
        project_id=line.project_id,
        detector=GreyLevelDetector(),
        model_version_id=line.version_id,
        image_ids=image_ids,
    )


PATHS: dict[str, tuple[Callable[[Line], object], list[int]]] = {
    "upload": (upload, [1, 1, 0, 1]),
    "server folder": (server_folder, [1, 1, 0, 1]),
    "hot folder": (hot_folder, [1, 1, 0, 1]),
    "station post": (station_post, [1, 1, 1, 1]),
    "re-score": (rescore, [0, 1, 0, 0]),  # the line had the verdict at the first inspection
}
"""Each path, and what one part adds: images, predictions, station posts, outbox messages."""


@pytest.mark.parametrize("path", list(PATHS))
def test_a_failure_before_commit_leaves_nothing_and_the_retry_stores_one_of_everything(
    line: Line, data_dir: Path, path: str
) -> None:
    inspect, added = PATHS[path]
    if path == "re-score":
        upload(line)  # the part's first inspection
    before, maps_before = counts(line.factory), map_files(data_dir)

    with failing_commit(line.factory), pytest.raises(RuntimeError, match="between scoring"):
        inspect(line)
    assert counts(line.factory) == before
    assert map_files(data_dir) == maps_before  # the map file went with its rows

    inspect(line)
    assert counts(line.factory) == [b + a for b, a in zip(before, added, strict=True)]
    assert map_files(data_dir) == maps_before + 1
    with line.factory() as session:
        latest = session.scalars(select(Prediction).order_by(Prediction.id.desc())).first()
        assert latest.verdict == "defect"
        if path == "hot folder":  # finished in the part's own transaction
            (row,) = session.scalars(select(HotFolderFile)).all()
            assert (row.status, row.prediction_id) == ("processed", latest.id)


def test_a_process_killed_inside_the_storing_transaction_leaves_nothing_and_the_retry_one(
    line: Line, engine: Engine, tmp_path: Path
) -> None:
    image = tmp_path / "part.png"
    image.write_bytes(FLAGGED)
    url = engine.url.render_as_string(hide_password=False)
    child = [sys.executable, str(SUPPORT / "post_then_die.py"), url]
    child += [str(line.station.api_key_id), str(line.project_id), line.station.name, "P-1"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    died = subprocess.run(
        [*child, str(image)], cwd=REPO_ROOT, env=env, timeout=KILL_TIMEOUT, capture_output=True
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    assert counts(line.factory) == [0, 0, 0, 0]

    first = line.post(FLAGGED)  # the station posts the part again
    again = line.post(FLAGGED)
    assert first.record is not None and not first.duplicate
    assert again.duplicate and again.record.id == first.record.id
    assert counts(line.factory) == [1, 1, 1, 1]
    with line.factory() as session:
        message = session.scalars(select(OutboundMessage)).one()
        assert (message.payload["part_id"], message.payload["verdict"]) == ("P-1", "defect")
