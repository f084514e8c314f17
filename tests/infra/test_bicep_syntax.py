"""Syntax gate: every Bicep file under infra/ parses with tree-sitter-bicep without ERROR or missing nodes.

There is no Bicep CLI offline; tree-sitter-bicep is the closest syntax check (it reports the failing line), and
pycep-parser must read the files too because the policy tests and checkov are built on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
BICEP_FILES = sorted(INFRA_DIR.rglob("*.bicep"))
EXPECTED_FILES = {
    "main.bicep",
    "modules/alerts.bicep",
    "modules/budget.bicep",
    "modules/durable-task-scheduler.bicep",
    "modules/function-app.bicep",
    "modules/identity.bicep",
    "modules/keyvault.bicep",
    "modules/monitoring.bicep",
    "modules/openai.bicep",
    "modules/session-pool.bicep",
    "modules/storage.bicep",
    "modules/workbook.bicep",
}


def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def syntax_problems(source: bytes) -> list[str]:
    """``line:col kind`` for every ERROR or missing node in ``source`` (empty when the file is well formed)."""
    tree = _parser().parse(source)
    problems = []
    stack: list[Node] = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.type == "ERROR":
            problems.append(f"{node.start_point[0] + 1}:{node.start_point[1] + 1} unexpected syntax")
        elif node.is_missing:
            problems.append(f"{node.start_point[0] + 1}:{node.start_point[1] + 1} missing {node.type!r}")
        stack.extend(node.children)
    return sorted(problems)


def test_the_expected_templates_exist():
    found = {path.relative_to(INFRA_DIR).as_posix() for path in BICEP_FILES}
    assert found >= EXPECTED_FILES, f"missing: {sorted(EXPECTED_FILES - found)}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=[p.relative_to(INFRA_DIR).as_posix() for p in BICEP_FILES])
def test_bicep_file_parses_with_tree_sitter(path: Path):
    assert syntax_problems(path.read_bytes()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=[p.relative_to(INFRA_DIR).as_posix() for p in BICEP_FILES])
def test_bicep_file_parses_with_pycep(path: Path):
    from pycep import BicepParser

    tree = BicepParser().parse(file_path=path)
    assert tree.get("resources") or tree.get("modules"), "parsed, but no resource or module declared"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("param location string\nresource x 'A/b@2024-01-01' = {\n  name: 'x'\n", "2:1 unexpected syntax"),
        ("param location string =\nvar y = 1\n", "2:1 unexpected syntax"),
        ("resource x 'A/b@2024-01-01' = {\n  name: 'x'\n  properties: {\n    a: [1, 2\n  }\n}\n", "4:13 missing ']'"),
    ],
    ids=["unclosed-resource", "dangling-default", "unclosed-array"],
)
def test_syntax_gate_reports_broken_bicep(source: str, expected: str):
    problems = syntax_problems(source.encode())
    assert expected in problems, "a broken file must fail the gate at the right line"


def test_syntax_gate_accepts_well_formed_bicep():
    source = (
        b"param name string\nresource x 'A/b@2024-01-01' = {\n  name: name\n  properties: {\n    a: [\n      1\n    ]\n"
    )
    source += b"  }\n}\n"
    assert syntax_problems(source) == []
