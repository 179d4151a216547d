"""``loupe api-key``: a station key printed once, listed without its secret, revoked."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.api_keys import authenticate
from loupe import cli


def test_create_prints_the_key_once_list_hides_it_and_revoke_stops_it(
    session_factory: sessionmaker[Session], project_id: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["api-key", "create", "--project", "cells", "--station", "line-2", "--scope", "inspect"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    key = next(line for line in printed.splitlines() if line.startswith("loupe_"))
    assert "shown only now" in printed
    with session_factory() as session, session.begin():
        number = authenticate(session, key, scope="inspect").id

    assert cli.main(["api-key", "list", "--project", "cells"]) == 0
    listed = capsys.readouterr().out
    assert "line-2" in listed and "active" in listed and key not in listed

    assert cli.main(["api-key", "revoke", str(number)]) == 0
    assert "revoked" in capsys.readouterr().out
    with session_factory() as session, pytest.raises(PermissionError, match="revoked"):
        authenticate(session, key, scope="read")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "--project", "nope", "--station", "s", "--scope", "read"], "no project"),
        (["create", "--project", "cells", "--station", " ", "--scope", "read"], "1 to 64"),
        (["revoke", "999"], "no API key with id 999"),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_code_2(
    project_id: int, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(["api-key", *argv]) == 2
    assert message in capsys.readouterr().err
