"""Inspect's server folder: managers always, inspectors when a manager allows it."""

from __future__ import annotations

from pathlib import Path

from apptest_support import Workbench, make_part, signed_in_app
from PIL import Image

from services.server_folders import ROOTS_ENV

SOURCE = "source"


def test_inspectors_get_the_server_folder_only_when_a_manager_allows_it(
    workbench: Workbench, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    Image.fromarray(make_part(410)).save(tmp_path / "part.png")
    inspector = signed_in_app("inspector")
    inspector.switch_page("pages/inspect.py").run()
    assert not inspector.exception, inspector.exception
    assert not [r for r in inspector.radio if r.key == SOURCE]  # uploads only
    assert not [t for t in inspector.toggle if t.key == "inspect_server_folder_toggle"]

    manager = signed_in_app("manager")
    manager.switch_page("pages/inspect.py").run()
    assert manager.radio(key=SOURCE).options == ["Upload images", "Server folder"]
    manager.toggle(key="inspect_server_folder_toggle").set_value(True).run()
    assert not manager.exception, manager.exception

    inspector.run()
    inspector.radio(key=SOURCE).set_value("Server folder").run()
    inspector.text_input(key="folder").input(str(tmp_path))
    inspector.button(key="score").click().run()
    assert not inspector.exception, inspector.exception
    assert list(inspector.dataframe[0].value["File"]) == ["part.png"]
