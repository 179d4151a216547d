"""Start-up: the demo project is seeded once per server process, and a failure is survivable."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_support import open_app

import services.demo


def test_demo_is_seeded_once_unless_skipped(
    app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(
        services.demo, "seed_demo", lambda factory, *, models_root: calls.append(models_root)
    )
    monkeypatch.delenv("LOUPE_SKIP_DEMO")

    open_app().run()
    open_app().run()  # another browser session of the same server process

    assert calls == [tmp_path / "models"]


def test_demo_is_not_seeded_with_loupe_skip_demo(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(services.demo, "seed_demo", lambda *args, **kwargs: calls.append(1))

    at = open_app().run()

    assert not at.exception
    assert calls == []


def test_a_failed_demo_seed_leaves_the_workbench_usable(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("ELPV data missing")

    monkeypatch.setattr(services.demo, "seed_demo", broken)
    monkeypatch.delenv("LOUPE_SKIP_DEMO")

    at = open_app().run()

    assert not at.exception
    assert [w.value for w in at.sidebar.warning] == [
        "The demo project is not available: RuntimeError: ELPV data missing"
    ]
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]


def test_a_too_short_admin_password_stops_with_a_message(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", "short")

    at = open_app().run()

    assert not at.exception
    assert at.error and at.error[0].value.startswith("Loupe cannot start:")
    assert not at.text_input
