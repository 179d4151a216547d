"""Page scripts show only what they draw: no bare string that Streamlit's magic would render."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pages.routing import LOGIN_PAGE, PAGES

ROOT = Path(__file__).resolve().parents[2]


def page_scripts() -> list[Path]:
    """app.py and the scripts st.navigation runs.

    Helper modules under pages/ are imported, and magic only applies to the script being run.
    """
    return [ROOT / "app.py", ROOT / LOGIN_PAGE.path, *(ROOT / page.path for page in PAGES)]


@pytest.mark.parametrize("path", page_scripts(), ids=lambda p: p.name)
def test_no_bare_string_after_the_docstring(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stray = [
        node.lineno
        for node in tree.body[1:]
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]
    assert stray == [], f"{path.name}: Streamlit magic would show the strings at lines {stray}"
