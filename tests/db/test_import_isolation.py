"""The storage layer must stay light: importing it never loads torch, Streamlit or adcore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_importing_db_loads_no_heavy_package() -> None:
    code = (
        "import sys, db; db.init_db('sqlite://').dispose(); "
        "heavy = sorted(m for m in ('torch', 'streamlit', 'adcore') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
