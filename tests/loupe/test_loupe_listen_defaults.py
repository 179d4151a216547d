"""Both servers listen on this machine only unless told otherwise (nothing is really served).

``loupe api`` defaults to ``--host 127.0.0.1``; the workbench's Streamlit settings bind
``127.0.0.1``; ``make demo`` passes ``$(HOST)`` (default ``127.0.0.1``) to both, and
``make demo HOST=0.0.0.0`` is the switch for the plant network.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import uvicorn
from streamlit import config as streamlit_config

from loupe import cli

ROOT = Path(__file__).resolve().parents[2]


def test_loupe_api_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.build_parser().parse_args(["api"]).host == "127.0.0.1"
    assert cli.build_parser().parse_args(["api", "--host", "0.0.0.0"]).host == "0.0.0.0"
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.update(kwargs))
    assert cli.main(["api"]) == 0
    assert served["host"] == "127.0.0.1"


def test_the_workbench_settings_bind_loopback() -> None:
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert settings["server"]["address"] == "127.0.0.1"
    assert "server.address" in streamlit_config.get_config_options()  # a real Streamlit option


def make_demo_commands(*overrides: str) -> str:
    """The commands ``make demo`` would run (a dry run: nothing is installed or served)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        [make, "--dry-run", "demo", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_demo_serves_both_on_loopback_unless_host_is_given() -> None:
    commands = make_demo_commands()
    assert "loupe api --host 127.0.0.1 &" in commands
    assert "streamlit run serve.py --server.address 127.0.0.1 " in commands

    plant = make_demo_commands("HOST=0.0.0.0")
    assert "loupe api --host 0.0.0.0 &" in plant
    assert "streamlit run serve.py --server.address 0.0.0.0 " in plant
