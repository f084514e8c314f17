"""``shared.sources`` modules stay small and never import Azure Functions (every export resolving is checked for all
packages in tests/unit/test_boundaries.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shared.sources

PACKAGE = Path(shared.sources.__file__).parent


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small_and_never_import_azure_functions(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.startswith("azure.functions")}
    assert len(path.read_text().splitlines()) < 600
