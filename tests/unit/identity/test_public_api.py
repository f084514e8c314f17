"""``shared.identity`` modules stay small and never import Azure Functions (every export resolving is checked for all
packages in tests/unit/test_boundaries.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shared.identity

PACKAGE = Path(shared.identity.__file__).parent
MINE = ("__init__.py", "authenticate.py", "caller.py", "easy_auth.py", "jwks.py", "settings.py", "tokens.py")


@pytest.mark.parametrize("name", MINE)
def test_modules_stay_small_and_never_import_azure_functions(name: str) -> None:
    path = PACKAGE / name
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in imported if n.startswith("azure.functions")}
    assert len(path.read_text().splitlines()) < 300
