"""The package's boundaries (checked on the source where that is the observable); every export resolving is checked
for all packages in tests/unit/test_boundaries.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from shared import errors, suggestions
from shared.sandbox import DynamicSessionsExecutor, ProcessSandbox, _format, _tools
from shared.sandbox.executor import CodeExecutor

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "shared" / "sandbox"
WORKER_MODULES = ("_wire", "_loop", "_format", "_shims", "_audit", "_tools", "_rewrite", "_runtime", "_confine",
                  "_zygote")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add("." * node.level + node.module)
        elif isinstance(node, ast.ImportFrom):
            names.update("." * node.level + alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_nothing_imports_azure_functions(path: Path) -> None:
    assert not [m for m in _imports(path) if m.startswith("azure.functions")]


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_worker_modules_use_only_the_stdlib_and_each_other(module: str) -> None:
    """They run inside a clean ``-I -S`` interpreter and are shipped as source to dynamic sessions."""
    stdlib = set(sys.stdlib_module_names)
    for name in _imports(PACKAGE / f"{module}.py"):
        if name.startswith("."):
            assert name[1:] in WORKER_MODULES, name
        else:
            assert name.split(".")[0] in stdlib, name


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) < 500


def test_importing_the_package_starts_no_process() -> None:
    script = (
        "import os, shared.sandbox, shared.sandbox.executor as e\n"
        "assert e._default is None\n"
        "children = os.popen(f'ps -o pid= --ppid {os.getpid()}').read().split()\n"
        "print(len(children))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"  # only the ps started by the script itself


def test_executors_satisfy_the_seam() -> None:
    assert isinstance(ProcessSandbox(), CodeExecutor)
    assert isinstance(DynamicSessionsExecutor("http://127.0.0.1:9", credential=object()), CodeExecutor)  # type: ignore[arg-type]


def test_the_workers_copies_of_parent_constants_match() -> None:
    """The worker cannot import ``shared``: its did-you-mean bounds and its quoting copy the parent's values."""
    assert (_tools.MAX_CANDIDATES, _tools.MAX_NAME_CHARS) == (suggestions.MAX_CANDIDATES, suggestions.MAX_NAME_CHARS)
    assert _format.QUOTED_CHARS == errors.QUOTED_CHARS
