"""``loupe report``: the shift report files a scheduler asks for, and clear refusals."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfReader
from shift_history import build_shift_history
from sqlalchemy.orm import Session, sessionmaker

from loupe import cli
from services.shift_report import SHIFTS


@pytest.fixture
def history(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> dict[str, int]:
    return build_shift_history(session_factory, project_id, make_user)


def test_the_command_writes_the_shift_pdf_and_csv(
    history: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports"
    argv = ["report", "--project", "cells", "--day", "2025-03-03", "--shift", "early"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    pdf, table = out / "cells-2025-03-03-early.pdf", out / "cells-2025-03-03-early.csv"
    assert sorted(path.name for path in out.iterdir()) == [table.name, pdf.name]
    assert f"Wrote {pdf} and {table}" in capsys.readouterr().out
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Parts scored 8" in text and "2 of 4 reviewed defects" in text
    summary, parts = table.read_text("utf-8").split("\n\n", 1)
    assert summary.splitlines()[1].startswith("Estimated FNR of the line")
    rows = list(csv.DictReader(io.StringIO(parts)))
    assert len(rows) == 8 and sum(row["missed"] == "1" for row in rows) == 2


def test_without_a_shift_the_command_reports_the_whole_day(
    history: dict[str, int], tmp_path: Path
) -> None:
    argv = ["report", "--project", "cells", "--day", "2025-03-03", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    parts = (tmp_path / "cells-2025-03-03.csv").read_text("utf-8").split("\n\n", 1)[1]
    assert len(list(csv.DictReader(io.StringIO(parts)))) == 9
    assert (tmp_path / "cells-2025-03-03.pdf").read_bytes().startswith(b"%PDF")


def test_an_unknown_project_is_refused_with_the_known_ones(
    history: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "--project", "bolts", "--day", "2025-03-03", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    assert "no project named 'bolts' (projects: cells)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--day", "03/03/2025", "'03/03/2025' is not a date: write it as YYYY-MM-DD"),
        ("--day", "2025-02-30", "'2025-02-30' is not a date"),
        ("--shift", "noon", "invalid choice: 'noon'"),
    ],
)
def test_bad_input_exits_with_code_2_and_says_why(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "--project", "cells", "--day", "2025-03-03", "--out", str(tmp_path)]
    argv += [option, value]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_command_offers_the_shifts_the_report_knows() -> None:
    assert tuple(SHIFTS) == cli.REPORT_SHIFTS
