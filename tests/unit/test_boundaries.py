"""Architectural boundaries, checked on the source: who may import what, and what function_app.py may do."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_folders_exist() -> None:
    for folder in ("shared", "orchestrations", "activities", "devhost"):
        assert python_files(folder), folder


@pytest.mark.parametrize("folder", ["shared", "orchestrations"])
def test_core_and_orchestrators_never_import_azure_functions(folder: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                            if m == "azure.functions" or m.startswith("azure.functions."))
        for path in python_files(folder)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_devhost_imports_nothing_from_the_app() -> None:
    app_packages = ("shared", "orchestrations", "activities", "function_app")
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] in app_packages)
        for path in python_files("devhost")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_function_app_only_builds_the_app_and_registers_blueprints() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["app"]:
            continue
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr in ("register_functions", "register_blueprint")):
            continue
        pytest.fail(f"function_app.py line {node.lineno} does more than build the app and register blueprints")
