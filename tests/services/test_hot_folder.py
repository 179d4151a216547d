"""The hot folder: each dropped image scored once and moved; a restart scores nothing twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from active_model import fit_small_patchcore, project_with_active_model
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.detectors.registry import load_detector
from db import Prediction
from db.hot_folder_files import claim_file
from db.models import HotFolderFile
from services.hot_folder import HotFolder
from services.inspection import InspectionRequest, inspect_uploads
from services.scoring.predictor import Predictor
from services.server_folders import ROOTS_ENV


@pytest.fixture(scope="module")
def fitted() -> tuple:
    return fit_small_patchcore()


@pytest.fixture
def watched(
    factory: sessionmaker[Session],
    tmp_path: Path,
    fitted: tuple,
    monkeypatch: pytest.MonkeyPatch,
) -> HotFolder:
    """A project with an active tiny model and its hot folder (empty, under the roots)."""
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    project_id = project_with_active_model(factory, "widgets", fitted, tmp_path / "models")
    return HotFolder(
        factory,
        project_id=project_id,
        folder=tmp_path / "line-2",
        detector_for=lambda artifact: load_detector(artifact, device="cpu"),
        settle_seconds=0.05,
    )


def predictions(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Prediction))


def test_files_in_the_folder_are_scored_and_moved_with_reasons_for_refusals(
    watched: HotFolder, factory: sessionmaker[Session]
) -> None:
    (watched.folder / "b-scratch.png").write_bytes(png(make_part(300, defect=True)))
    (watched.folder / "a-good.png").write_bytes(png(make_part(301)))
    (watched.folder / "c-notes.txt").write_bytes(b"not an image")
    outcomes = watched.scan()
    assert [(o.name, o.status, o.scored) for o in outcomes] == [
        ("a-good.png", "processed", True),
        ("b-scratch.png", "processed", True),
        ("c-notes.txt", "refused", True),
    ]
    assert sorted(p.name for p in watched.folder.iterdir() if p.is_file()) == []
    assert sorted(p.name for p in (watched.folder / "processed").iterdir()) == [
        "a-good.png",
        "b-scratch.png",
    ]
    reason = (watched.folder / "refused" / "c-notes.txt.reason.txt").read_text()
    assert reason.strip() == outcomes[2].reason and reason.strip()
    assert predictions(factory) == 2


def test_a_restart_moves_finished_files_and_finishes_claimed_ones_without_rescoring(
    watched: HotFolder, factory: sessionmaker[Session]
) -> None:
    data = png(make_part(310))
    (watched.folder / "done.png").write_bytes(data)
    watched.scan()
    scored = predictions(factory)
    (watched.folder / "done.png").write_bytes(data)  # moved back: as if the move was lost

    # Claimed and stored, but not finished: what a watcher of an earlier release, which
    # finished a file in a transaction of its own, left when it stopped in between.
    crashed = png(make_part(311))
    with factory() as session, session.begin():
        claim_file(session, watched.project_id, str(watched.folder), "crashed.png", _sha(crashed))
    predictor = Predictor.active(factory, watched.project_id, watched.detector_for)
    inspect_uploads(factory, InspectionRequest(predictor), [("crashed.png", crashed)])
    (watched.folder / "crashed.png").write_bytes(crashed)
    assert predictions(factory) == scored + 1

    outcomes = {o.name: o for o in watched.scan()}
    assert (outcomes["done.png"].status, outcomes["done.png"].scored) == ("processed", False)
    assert (outcomes["crashed.png"].status, outcomes["crashed.png"].scored) == ("processed", False)
    assert predictions(factory) == scored + 1  # nothing scored twice
    with factory() as session:
        states = session.scalars(select(HotFolderFile.status)).all()
    assert sorted(states) == ["processed", "processed"]
    assert (watched.folder / "processed" / f"done-{_sha(data)[:8]}.png").exists()


def test_a_claimed_file_that_was_never_stored_is_scored_after_a_restart(
    watched: HotFolder, factory: sessionmaker[Session]
) -> None:
    data = png(make_part(320))
    with factory() as session, session.begin():
        claim_file(session, watched.project_id, str(watched.folder), "half.png", _sha(data))
    (watched.folder / "half.png").write_bytes(data)
    (outcome,) = watched.scan()
    assert (outcome.status, outcome.scored) == ("processed", True)
    assert predictions(factory) == 1


def test_the_watcher_takes_new_files_as_they_arrive(
    watched: HotFolder, factory: sessionmaker[Session]
) -> None:
    (watched.folder / "before.png").write_bytes(png(make_part(330)))  # there at start
    stop, seen = threading.Event(), []
    thread = threading.Thread(target=watched.run, args=(stop, seen.append), daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        (watched.folder / "dropped.png").write_bytes(png(make_part(331, defect=True)))
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert sorted(o.name for o in seen) == ["before.png", "dropped.png"]
    assert (watched.folder / "processed" / "dropped.png").exists()
    assert predictions(factory) == 2


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_file_still_being_written_waits_and_a_burst_settles_together(
    watched: HotFolder,
) -> None:
    watched.settle_seconds = 0.3
    growing = watched.folder / "growing.png"
    growing.write_bytes(b"\x89PNG part one")
    burst = [watched.folder / f"burst-{i}.png" for i in range(20)]
    for path in burst:
        path.write_bytes(b"whole file")
    waiting = dict.fromkeys([growing, *burst], -1)
    assert watched._quiet(waiting) == []  # first look: sizes noted, nothing is quiet yet
    time.sleep(0.35)
    with growing.open("ab") as more:  # the camera is still writing this one
        more.write(b" and two")
    started = time.monotonic()
    assert watched._quiet(waiting) == burst  # all twenty at once, in arrival order
    assert time.monotonic() - started < 0.3
    assert list(waiting) == [growing]
    time.sleep(0.35)
    assert watched._quiet(waiting) == [growing]
    (watched.folder / "gone.png").write_bytes(b"x")
    waiting = {watched.folder / "gone.png": -1}
    (watched.folder / "gone.png").unlink()
    assert watched._quiet(waiting) == [] and waiting == {}
