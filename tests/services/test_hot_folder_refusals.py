"""Hot folders: only under the roots; links and oversize files are refused unread, then moved."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adcore.image_io import MAX_FILE_BYTES
from db import Project, Role, User
from db.models import HotFolderFile
from services.hot_folder import HotFolder
from services.line_settings import HotFolderSetting, hot_folder_setting, set_hot_folder
from services.server_folders import ServerFolderError, allowed_folder


def no_model(artifact: str) -> None:
    raise AssertionError("a refused file reached the model")


@pytest.fixture
def hot(session_factory: sessionmaker[Session], project_id: int, root: Path) -> HotFolder:
    """A hot folder under the root; nothing here should reach the model."""
    return HotFolder(
        session_factory, project_id=project_id, folder=root / "line-2", detector_for=no_model
    )


def rows(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(HotFolderFile))


def test_a_hot_folder_outside_the_roots_is_refused_when_set_and_when_watched(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
    root: Path,
    tmp_path: Path,
) -> None:
    manager = make_user("mia", Role.MANAGER)
    outside = str(tmp_path / "outside")
    with pytest.raises(ServerFolderError) as missing:
        allowed_folder(root / "nowhere")
    with session_factory() as session, session.begin():
        user = session.get(User, manager)
        with pytest.raises(ServerFolderError) as info:
            set_hot_folder(session, project_id, HotFolderSetting(True, outside), user=user)
        same = str(missing.value).replace(str(root / "nowhere"), outside)
        assert str(info.value) == same  # the message a missing folder gets
        set_hot_folder(session, project_id, HotFolderSetting(False, outside), user=user)  # off
        set_hot_folder(session, project_id, HotFolderSetting(True, str(root / "cam")), user=user)
    with session_factory() as session:
        setting = hot_folder_setting(session.get(Project, project_id))
    assert setting == HotFolderSetting(True, str(root / "cam"))
    with pytest.raises(ServerFolderError, match="under the server folders"):
        HotFolder(session_factory, project_id=project_id, folder=outside, detector_for=no_model)
    assert not (tmp_path / "outside" / "processed").exists()


def test_a_link_is_refused_unread_and_its_target_left_alone(
    hot: HotFolder, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    secret = tmp_path / "outside" / "secret.png"
    before = (secret.read_bytes(), secret.stat().st_mtime_ns)
    victim = tmp_path / "outside" / "victim.txt"
    victim.write_text("keep me")
    (hot.folder / "part.png").symlink_to(secret)
    (hot.folder / "refused" / "part.png.reason.txt").symlink_to(victim)  # planted: not followed

    (outcome,) = hot.scan()

    assert (outcome.name, outcome.status, outcome.scored) == ("part.png", "refused", False)
    assert "symbolic link" in outcome.reason
    moved = hot.folder / "refused" / "part.png"
    assert moved.is_symlink() and not (hot.folder / "part.png").exists()
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before
    reason = hot.folder / "refused" / "part.png.reason.txt"
    assert not reason.is_symlink() and "symbolic link" in reason.read_text()
    assert victim.read_text() == "keep me"
    assert rows(session_factory) == 0


def test_a_file_over_the_size_cap_is_refused_without_being_read(
    hot: HotFolder, session_factory: sessionmaker[Session]
) -> None:
    huge = hot.folder / "huge.png"
    with huge.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk space

    (outcome,) = hot.scan()

    assert (outcome.status, outcome.scored) == ("refused", False)
    assert "larger than the 50 MB limit" in outcome.reason
    assert (hot.folder / "refused" / "huge.png").stat().st_size == MAX_FILE_BYTES + 1
    reason = (hot.folder / "refused" / "huge.png.reason.txt").read_text()
    assert "50 MB limit" in reason
    assert rows(session_factory) == 0


def test_a_linked_refused_folder_stops_the_watcher_from_starting(
    session_factory: sessionmaker[Session], project_id: int, root: Path, tmp_path: Path
) -> None:
    (root / "cam").mkdir()
    os.symlink(tmp_path / "outside", root / "cam" / "refused")
    with pytest.raises(ServerFolderError, match="not a folder of the hot folder"):
        HotFolder(
            session_factory, project_id=project_id, folder=root / "cam", detector_for=no_model
        )


def test_a_dangling_link_dropped_while_watching_is_refused_not_lost(
    hot: HotFolder, tmp_path: Path
) -> None:
    hot.settle_seconds = 0.0
    link = hot.folder / "late.png"
    link.symlink_to(tmp_path / "outside" / "gone.png")
    waiting = {link: -1}
    assert hot._quiet(waiting) == []  # first look: its size is noted
    assert hot._quiet(waiting) == [link]
    outcome = hot.take(link)
    assert outcome is not None and outcome.status == "refused"
    assert (hot.folder / "refused" / "late.png").is_symlink()
