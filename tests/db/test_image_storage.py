"""Images: one row and one file per content, paths never derived from user input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import db.images
from db import Image, Project, absolute_image_path
from db.image_store import sniff_extension, stored_path_for
from db.images import get_or_create_image

Factory = sessionmaker[Session]


def _store(
    factory: Factory, data: bytes, project_id: int, name: str = "part.png"
) -> tuple[int, str, bool]:
    with factory() as session, session.begin():
        image, created = get_or_create_image(
            session,
            data=data,
            original_name=name,
            project_id=project_id,
            source="upload",
            width=8,
            height=8,
        )
        return image.id, image.stored_path, created


def _files(data_dir: Path) -> list[Path]:
    return sorted(path for path in (data_dir / "images").rglob("*") if path.is_file())


def test_same_bytes_twice_reuse_one_row_and_one_file(
    session_factory: Factory, project_id: int, data_dir: Path, png: Callable[..., bytes]
) -> None:
    data = png(7)
    first_id, stored_path, created = _store(session_factory, data, project_id, "a.png")
    second_id, _, created_again = _store(session_factory, data, project_id, "b.png")
    assert (created, created_again) == (True, False)
    assert first_id == second_id
    assert _files(data_dir) == [data_dir / stored_path]
    assert (data_dir / stored_path).read_bytes() == data
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
        assert session.get_one(Image, first_id).original_name == "a.png"


def test_stored_path_comes_from_the_hash_not_the_name(
    session_factory: Factory, project_id: int, data_dir: Path, png: Callable[..., bytes]
) -> None:
    data = png(9)
    _, stored_path, _ = _store(session_factory, data, project_id, "../../etc/passwd.png")
    with session_factory() as session:
        image = session.scalars(select(Image)).one()
    assert image.original_name == "../../etc/passwd.png"
    assert "passwd" not in stored_path and ".." not in stored_path
    assert stored_path == f"images/{image.sha256[:2]}/{image.sha256}.png"
    assert absolute_image_path(stored_path).is_relative_to(data_dir)
    assert not (data_dir.parent.parent / "etc").exists()
    assert _files(data_dir) == [data_dir / stored_path]


def test_same_bytes_in_another_project_get_a_row_but_share_the_file(
    session_factory: Factory, project_id: int, data_dir: Path, png: Callable[..., bytes]
) -> None:
    with session_factory() as session, session.begin():
        other = Project(name="tiles")
        session.add(other)
        session.flush()
        other_id = other.id
    data = png(3)
    first_id, first_path, _ = _store(session_factory, data, project_id)
    second_id, second_path, created = _store(session_factory, data, other_id)
    assert created and first_id != second_id
    assert first_path == second_path
    assert len(_files(data_dir)) == 1


def test_a_lost_file_is_written_again(
    session_factory: Factory, project_id: int, data_dir: Path, png: Callable[..., bytes]
) -> None:
    data = png(5)
    _, stored_path, _ = _store(session_factory, data, project_id)
    (data_dir / stored_path).unlink()
    _, _, created = _store(session_factory, data, project_id)
    assert not created
    assert (data_dir / stored_path).read_bytes() == data


def test_concurrent_insert_is_resolved_with_a_savepoint(
    session_factory: Factory,
    project_id: int,
    png: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup misses a row another session just committed: the insert fails, we recover."""
    data = png(11)
    winner_id, _, _ = _store(session_factory, data, project_id)
    real_find = db.images._find_image
    calls: list[int] = []

    def stale_first_lookup(session: Session, project: int, digest: str) -> Image | None:
        calls.append(project)
        return None if len(calls) == 1 else real_find(session, project, digest)

    monkeypatch.setattr(db.images, "_find_image", stale_first_lookup)
    with session_factory() as session, session.begin():
        session.add(Project(name="made-in-the-same-transaction"))
        image, created = get_or_create_image(
            session,
            data=data,
            original_name="again.png",
            project_id=project_id,
            source="folder",
            width=8,
            height=8,
        )
        assert (image.id, created) == (winner_id, False)
        # the failed INSERT did not abort the transaction (PostgreSQL would refuse this query)
        assert session.scalar(select(Image.id).where(Image.id == winner_id)) == winner_id
    assert len(calls) == 2
    with session_factory() as session:  # the outer transaction survived the failed insert
        assert session.scalars(select(Project.name).where(Project.id != project_id)).all() == [
            "made-in-the-same-transaction"
        ]
        assert session.scalar(select(func.count()).select_from(Image)) == 1


def test_bad_arguments_are_refused(
    session_factory: Factory, project_id: int, png: Callable[..., bytes]
) -> None:
    with pytest.raises(ValueError), session_factory() as session:
        get_or_create_image(
            session,
            data=b"",
            original_name="empty.png",
            project_id=project_id,
            source="upload",
            width=1,
            height=1,
        )
    with pytest.raises(ValueError), session_factory() as session:
        get_or_create_image(
            session,
            data=png(1),
            original_name="x.png",
            project_id=project_id,
            source="camera",
            width=8,
            height=8,
        )


def test_extension_is_sniffed_from_the_bytes(png: Callable[..., bytes]) -> None:
    assert sniff_extension(png(0)) == ".png"
    assert sniff_extension(b"\xff\xd8\xff\xe0rest") == ".jpg"
    assert sniff_extension(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ".webp"
    assert sniff_extension(b"<?php evil") == ".bin"
    assert stored_path_for("ab" * 32, b"BM....") == f"images/ab/{'ab' * 32}.bmp"
    with pytest.raises(ValueError):
        stored_path_for("../" * 20, b"")


def test_stored_paths_cannot_escape_the_data_dir(data_dir: Path) -> None:
    for hostile in ("../outside.png", "/etc/passwd", "images/../../x.png"):
        with pytest.raises(ValueError):
            absolute_image_path(hostile)
