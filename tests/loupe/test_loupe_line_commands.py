"""``loupe watch`` takes the hot folders set on the Line page; ``loupe deliver`` sends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from active_model import fit_small_patchcore, project_with_active_model
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png
from webhook_receiver import receiving

from db.models import HotFolderFile, OutboundMessage
from db.outbound_messages import OUTBOUND_KEY, OutboundConfig, WebhookConfig, enqueue
from loupe import cli
from services.line_settings import HOT_FOLDER_KEY
from services.project_settings import store_option
from services.server_folders import ROOTS_ENV

LOUPE = Path(sys.executable).with_name("loupe")


def test_watch_without_a_configured_folder_says_where_to_set_one(
    project_id: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["watch", "--project", "cells"]) == 2
    assert "no hot folder switched on" in capsys.readouterr().err
    assert cli.main(["watch"]) == 2
    assert "no project has a hot folder switched on" in capsys.readouterr().err
    assert cli.main(["watch", "--project", "nope"]) == 2
    assert "no project named 'nope'" in capsys.readouterr().err


def test_watch_takes_parts_from_the_folder_set_for_the_project(
    factory: sessionmaker[Session],
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))  # the hot folder lies under a root
    project_id = project_with_active_model(
        factory, "widgets", fit_small_patchcore(), tmp_path / "models"
    )
    folder = tmp_path / "camera"
    with factory() as session, session.begin():
        store_option(session, project_id, HOT_FOLDER_KEY, {"enabled": True, "folder": str(folder)})
    folder.mkdir()
    (folder / "p-1.png").write_bytes(png(make_part(40)))
    watcher = subprocess.Popen(
        [str(LOUPE), "watch"], env=os.environ.copy(), stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (folder / "processed" / "p-1.png").exists():
            assert time.monotonic() < deadline, "loupe watch took no part within 60 s"
            assert watcher.poll() is None, "loupe watch stopped"
            time.sleep(0.1)
    finally:
        watcher.terminate()
        watcher.wait(timeout=20)
    with factory() as session:
        row = session.scalars(select(HotFolderFile)).one()
        assert (row.project_id, row.name, row.status) == (project_id, "p-1.png", "processed")


def test_deliver_sends_the_outbox_without_the_api(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with receiving() as receiver:
        with session_factory() as session, session.begin():
            config = OutboundConfig(webhook=WebhookConfig(True, receiver.url))
            store_option(session, project_id, OUTBOUND_KEY, config.to_json())
            session.flush()
            enqueue(session, project_id, "verdict", {"verdict": "good", "part_id": "Q-1"})
        sender = subprocess.Popen([str(LOUPE), "deliver"], env=os.environ.copy())
        try:
            (body,) = receiver.wait_for(1, timeout=30)
            deadline = time.monotonic() + 10  # the receiver answered; the sender records it
            while statuses(session_factory) != ["delivered"] and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            sender.terminate()
            sender.wait(timeout=20)
    assert body["part_id"] == "Q-1"
    assert statuses(session_factory) == ["delivered"]


def statuses(factory: sessionmaker[Session]) -> list[str]:
    with factory() as session:
        return list(session.scalars(select(OutboundMessage.status)))
