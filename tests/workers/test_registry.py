"""The registry maps every job kind to a use case in services.training, and names kinds once.

Workers run jobs; they do not define them: each :class:`JobKind` is registered with a function
of :mod:`services.training`, the registry imports those modules only on first use (so a worker
starts without torch), and no module but :mod:`services.training.job_kinds` spells a kind's name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from services.training.job_kinds import JobKind
from workers.registry import BUILTIN_RETRY_SAFETY, job_function, known_kinds

ROOT = Path(__file__).resolve().parents[2]
KIND_NAMES = {kind.value for kind in JobKind}


def test_every_job_kind_runs_a_function_of_services_training() -> None:
    assert set(JobKind) <= set(known_kinds())
    for kind in JobKind:
        function = job_function(kind)
        assert function.__module__.startswith("services.training."), (kind, function.__module__)
        assert job_function(kind.value) is function  # the stored string finds the same function


def test_every_declared_retry_is_a_job_kind() -> None:
    assert set(BUILTIN_RETRY_SAFETY) <= set(JobKind)
    assert all(isinstance(kind, JobKind) for kind in BUILTIN_RETRY_SAFETY)


def test_importing_the_runtime_loads_no_job_module_and_no_torch() -> None:
    code = (
        "import sys, workers, workers.registry, workers.worker\n"
        "loaded = [m for m in sys.modules if m.endswith('_jobs') or m == 'torch']\n"
        "print(','.join(sorted(loaded)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def _string_constants(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_job_kind_names_are_spelled_only_in_job_kinds() -> None:
    owner = ROOT / "services" / "training" / "job_kinds.py"
    files = [
        path
        for folder in ("services", "workers", "pages", "api", "loupe")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ] + [ROOT / "app.py"]
    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for path in files
        if path != owner and path.is_file()
        for node in _string_constants(ast.parse(path.read_text(), filename=str(path)))
        if node.value in KIND_NAMES
    ]
    assert not spelled, "use services.training.job_kinds.JobKind: " + ", ".join(spelled)
