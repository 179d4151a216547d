"""The ``loupe`` console command's argument handling (no command is really run)."""

from __future__ import annotations

import pytest

from loupe import cli


def test_demo_options_go_to_the_demo_seeder(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(cli, "cmd_demo", lambda args: seen.append(args.demo_args) or 0)
    assert cli.main(["demo", "--models-root", "/tmp/models", "--n-test", "5"]) == 0
    assert seen == [["--models-root", "/tmp/models", "--n-test", "5"]]


def test_an_unknown_worker_option_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["worker", "--bogus"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
