"""Server folders: read only under the configured roots, after resolution, capped, one message.

The store-using tests score a server folder through :func:`services.inspection.inspect_folder`
(both backends): who may, which files are read, and what a refusal says.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from active_model import fit_small_patchcore
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.errors import DatasetError, ImageTooLargeError
from adcore.image_io import MAX_FILE_BYTES
from db import Image, PermissionDenied, Prediction, Project, Role, User
from services.inspect_options import InspectOptions, inspect_options, set_inspect_options
from services.inspection import InspectionRequest, inspect_folder
from services.scoring.predictor import Predictor
from services.server_folders import (
    MAX_FOLDER_FILES,
    ROOTS_ENV,
    ServerFolderError,
    allowed_folder,
    read_server_file,
    server_folder_roots,
)


@pytest.fixture(scope="module")
def detector() -> object:
    return fit_small_patchcore()[0]


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space."""
    with path.open("wb") as out:
        out.truncate(size)
    return path


def request(
    factory: sessionmaker[Session], project_and_version: tuple[int, int], detector: object
) -> InspectionRequest:
    """The request to store what ``detector`` of the project's version decides."""
    project_id, version_id = project_and_version
    predictor = Predictor.load(
        factory, project_id=project_id, model_version_id=version_id, detector=detector
    )
    return InspectionRequest(predictor)


def refusal(folder: Path | str) -> str:
    """The message of :func:`allowed_folder` for ``folder``, with the path taken out."""
    with pytest.raises(ServerFolderError) as info:
        allowed_folder(folder)
    assert str(folder) in str(info.value)
    return str(info.value).replace(str(folder), "<folder>")


# --------------------------------------------------------------------------- the roots


def test_without_configuration_the_one_root_is_incoming_in_the_data_dir(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    assert server_folder_roots() == (data_dir.resolve() / "incoming",)
    monkeypatch.setenv(ROOTS_ENV, " ")
    assert server_folder_roots() == (data_dir.resolve() / "incoming",)
    with pytest.raises(ServerFolderError, match="No folder"):
        allowed_folder(data_dir)  # the data directory itself is not readable


def test_roots_are_absolute_paths_separated_by_pathsep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv(ROOTS_ENV, f"{tmp_path / 'link'}{os.pathsep}/srv/line-2")
    assert server_folder_roots() == ((tmp_path / "real").resolve(), Path("/srv/line-2"))
    monkeypatch.setenv(ROOTS_ENV, "relative/root")
    with pytest.raises(ServerFolderError, match="absolute paths"):
        server_folder_roots()


def test_missing_and_outside_folders_get_the_same_message(root: Path, tmp_path: Path) -> None:
    (root / "parts").mkdir()
    (root / "file.png").write_bytes(b"x")
    (root / "escape").symlink_to(tmp_path / "outside")
    assert allowed_folder(root / "parts") == (root / "parts").resolve()
    messages = {
        refusal(root / "missing"),  # under the root, missing
        refusal(tmp_path / "outside"),  # exists, outside
        refusal(tmp_path / "nowhere"),  # missing, outside
        refusal(root / "escape"),  # a link in the root to a folder outside
        refusal(root / ".." / "outside"),
        refusal(root / "file.png"),  # not a folder
        refusal("parts"),  # relative
    }
    (message,) = messages
    assert message.startswith("No folder <folder> under the server folders this server may read")
    assert str(root.resolve()) in message


def test_a_link_in_a_root_to_a_file_outside_is_not_read(root: Path, tmp_path: Path) -> None:
    (root / "inside.png").write_bytes(b"inside")
    (root / "alias.png").symlink_to(root / "inside.png")
    (root / "leak.png").symlink_to(tmp_path / "outside" / "secret.png")
    (root / "dangling.png").symlink_to(tmp_path / "outside" / "gone.png")
    assert read_server_file(root / "alias.png") == b"inside"  # resolves inside: read
    for name in ("leak.png", "dangling.png"):  # the same refusal, target there or not
        with pytest.raises(ServerFolderError, match="not under the server folders"):
            read_server_file(root / name, name=name)


def test_a_file_over_the_cap_is_refused_from_its_size(root: Path) -> None:
    huge = sparse_file(root / "huge.png", MAX_FILE_BYTES + 1)
    with pytest.raises(ImageTooLargeError, match="larger than the 50 MB limit"):
        read_server_file(huge, name="huge.png")
    (root / "small.png").write_bytes(b"12345")
    assert read_server_file(root / "small.png", max_bytes=5) == b"12345"
    with pytest.raises(ImageTooLargeError, match=r"4 bytes limit for one image file \(5 bytes\)"):
        read_server_file(root / "small.png", max_bytes=4)


# --------------------------------------------------------------------------- scoring a folder


def test_inspectors_score_a_server_folder_only_when_a_manager_allows_it(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
    detector: object,
    root: Path,
) -> None:
    project_id = project_and_version[0]
    inspector, manager = make_user("ines"), make_user("max", Role.MANAGER)
    (root / "part.png").write_bytes(png(make_part(500)))

    def score(user_id: int, folder: Path) -> list:
        with session_factory() as session:
            user = session.get(User, user_id)
        return inspect_folder(
            session_factory,
            request(session_factory, project_and_version, detector),
            folder,
            user=user,
        )

    with pytest.raises(PermissionDenied, match="a manager can allow"):
        score(inspector, root / "missing")  # refused before the folder is looked at
    with session_factory() as session:
        assert inspect_options(session.get(Project, project_id)) == InspectOptions(False)
    assert [r.ok for r in score(manager, root)] == [True]
    with session_factory() as session, session.begin():
        with pytest.raises(PermissionDenied, match="Only managers"):
            set_inspect_options(
                session, project_id, InspectOptions(True), user=session.get(User, inspector)
            )
        set_inspect_options(
            session, project_id, InspectOptions(True), user=session.get(User, manager)
        )
    assert [r.ok for r in score(inspector, root)] == [True]


def test_each_file_is_checked_a_link_out_and_an_oversize_file_are_refused_alone(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
    detector: object,
    root: Path,
    tmp_path: Path,
) -> None:
    with session_factory() as session:
        manager = session.get(User, make_user("max", Role.MANAGER))
    (root / "a-good.png").write_bytes(png(make_part(501)))
    (root / "b-leak.png").symlink_to(tmp_path / "outside" / "secret.png")
    sparse_file(root / "c-huge.png", MAX_FILE_BYTES + 1)
    results = inspect_folder(
        session_factory,
        request(session_factory, project_and_version, detector),
        root,
        user=manager,
    )
    assert [(r.name, r.ok) for r in results] == [
        ("a-good.png", True),
        ("b-leak.png", False),
        ("c-huge.png", False),
    ]
    assert "not under the server folders" in results[1].error
    assert "c-huge.png" in results[2].error and "50 MB limit" in results[2].error
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
        assert session.scalar(select(func.count()).select_from(Prediction)) == 1


def test_folders_are_refused_alike_and_a_crowded_folder_up_front(
    session_factory: sessionmaker[Session],
    project_and_version: tuple[int, int],
    make_user: Callable[..., int],
    detector: object,
    root: Path,
    tmp_path: Path,
) -> None:
    with session_factory() as session:
        manager = session.get(User, make_user("max", Role.MANAGER))

    def score(folder: Path) -> list:
        return inspect_folder(
            session_factory,
            request(session_factory, project_and_version, detector),
            folder,
            user=manager,
        )

    messages = set()
    for folder in (tmp_path / "outside", root / "missing"):
        with pytest.raises(ServerFolderError) as info:
            score(folder)
        messages.add(str(info.value).replace(str(folder), "<folder>"))
    assert len(messages) == 1
    (root / "notes.txt").write_text("no image here")
    with pytest.raises(DatasetError, match="No image files in"):
        score(root)  # allowed and existing: it may say it holds no image
    for i in range(MAX_FOLDER_FILES + 1):
        (root / f"{i:04d}.png").touch()
    with pytest.raises(DatasetError, match=r"holds 1,001 image files; at most 1,000"):
        score(root)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 0
