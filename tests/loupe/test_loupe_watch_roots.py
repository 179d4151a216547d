"""``loupe watch`` refuses to start on a hot folder outside the server folder roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from loupe import cli
from services.line_settings import HOT_FOLDER_KEY
from services.project_settings import store_option
from services.server_folders import ROOTS_ENV


def test_watch_refuses_a_folder_outside_the_roots_with_exit_2(
    session_factory: sessionmaker[Session],
    project_id: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path / "root"))
    outside = tmp_path / "outside"
    with session_factory() as session, session.begin():  # stored before the roots existed
        store_option(session, project_id, HOT_FOLDER_KEY, {"enabled": True, "folder": str(outside)})

    assert cli.main(["watch"]) == 2
    err = capsys.readouterr().err
    assert f"cells: No folder {outside} under the server folders" in err
    assert ROOTS_ENV in err
    assert cli.main(["watch", "--project", "cells", "--folder", "/etc"]) == 2
    assert "No folder /etc under the server folders" in capsys.readouterr().err
    assert not outside.exists()  # nothing was created outside the roots
