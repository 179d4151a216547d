"""Fixtures of the use-case tests: a server folder root with a part outside it."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_parts import make_part, png

from services.server_folders import ROOTS_ENV


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The one server folder root, ``<tmp>/root``; ``<tmp>/outside`` holds a secret part."""
    directory = tmp_path / "root"
    directory.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(png(make_part(7)))
    monkeypatch.setenv(ROOTS_ENV, str(directory))
    return directory
