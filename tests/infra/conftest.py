"""Offline models of the Bicep templates and the app's settings reads, shared by the infra tests.

The templates are parsed with pycep-parser (the project venv's 0.7.1) into JSON; helpers here resolve the few
indirections the templates use (variables, ``union``/ternary of setting objects, module parameters), so the tests can
state policy as plain assertions. Everything is exposed through session fixtures: the tests never import this file.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
SHARED_DIR = REPO_ROOT / "shared"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"


def bicep_files() -> list[Path]:
    """Every ``.bicep`` file under ``infra/``, sorted."""
    return sorted(INFRA_DIR.rglob("*.bicep"))


# ------------------------------------------------------------------------------------------------- template model


def function_call(value: Any, name: str | None = None) -> dict[str, Any] | None:
    """The ``{"type": ..., "parameters": ...}`` of a pycep function-call node (optionally only if named ``name``)."""
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        call = value["function"]
        if name is None or call.get("type") == name:
            return call
    return None


def operator(value: Any, kind: str) -> dict[str, Any] | None:
    """The operands of a pycep operator node of ``kind`` (``conditional``, ``property_accessor``, ...)."""
    if isinstance(value, dict) and isinstance(value.get("operator"), dict) and value["operator"].get("type") == kind:
        return value["operator"]["operands"]
    return None


def accessor_path(value: Any) -> str | None:
    """``a.b.c`` for a pycep property-accessor chain, or the bare identifier/string itself."""
    if isinstance(value, str):
        return value
    operands = operator(value, "property_accessor")
    if operands is None:
        return None
    head, tail = accessor_path(operands["operand_1"]), accessor_path(operands["operand_2"])
    return None if head is None or tail is None else f"{head}.{tail}"


@dataclass(frozen=True)
class RoleAssignment:
    """One ``Microsoft.Authorization/roleAssignments`` resource, with its role variable resolved to a GUID."""

    file: str
    symbol: str
    role_id: str | None
    role_variable: str | None
    scope: str | None
    principal_id: Any
    principal_type: Any
    name: Any
    condition: Any


@dataclass
class BicepTemplate:
    """One parsed Bicep file."""

    rel: str
    tree: dict[str, Any]
    source: str

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("resources", {})

    @property
    def modules(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("modules", {})

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("parameters", {})

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("variables", {})

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("outputs", {})

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res["type"].lower() == resource_type.lower()}

    def resource(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        """The single resource of ``resource_type`` in this file (fails the test otherwise)."""
        found = self.resources_of_type(resource_type)
        assert len(found) == 1, f"{self.rel}: expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))

    @staticmethod
    def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
        """The declaration body, looking through ``= if (cond) { ... }``."""
        config = resource_or_module["config"]
        if "condition" in config and isinstance(config.get("config"), dict):
            return config["config"]
        return config

    @staticmethod
    def condition(resource_or_module: dict[str, Any]) -> Any:
        config = resource_or_module["config"]
        return config.get("condition") if isinstance(config.get("config"), dict) else None

    def variable(self, name: str) -> Any:
        assert name in self.variables, f"{self.rel}: no variable {name!r}"
        return self.variables[name]["value"]

    def parameter_default(self, name: str) -> Any:
        assert name in self.parameters, f"{self.rel}: no parameter {name!r}"
        return self.parameters[name].get("default")

    def role_assignments(self) -> list[RoleAssignment]:
        found = []
        for symbol, res in self.resources_of_type(ROLE_ASSIGNMENT_TYPE).items():
            body = self.body(res)
            props = body.get("properties", {})
            call = function_call(props.get("roleDefinitionId"), "subscription_resource_id") or {}
            params = call.get("parameters", {})
            role_variable = (
                params.get("resource_name_1")
                if params.get("resource_type") == ("Microsoft.Authorization/roleDefinitions")
                else None
            )
            role_id = None
            if isinstance(role_variable, str):
                role_id = self.variables[role_variable]["value"] if role_variable in self.variables else role_variable
            found.append(
                RoleAssignment(
                    file=self.rel,
                    symbol=symbol,
                    role_id=role_id,
                    role_variable=role_variable,
                    scope=body.get("scope"),
                    principal_id=props.get("principalId"),
                    principal_type=props.get("principalType"),
                    name=body.get("name"),
                    condition=self.condition(res),
                )
            )
        return found


@dataclass
class InfraTemplates:
    """All templates under ``infra/``, keyed by path relative to ``infra/`` (``main.bicep``, ``modules/x.bicep``)."""

    templates: dict[str, BicepTemplate] = field(default_factory=dict)
    path = staticmethod(accessor_path)

    def __getitem__(self, rel: str) -> BicepTemplate:
        assert rel in self.templates, f"no template infra/{rel}; have {sorted(self.templates)}"
        return self.templates[rel]

    def __iter__(self) -> Iterator[BicepTemplate]:
        return iter(self.templates.values())

    @property
    def main(self) -> BicepTemplate:
        return self["main.bicep"]

    def module_for(self, symbol: str) -> tuple[BicepTemplate, dict[str, Any]]:
        """The template a ``module <symbol> '...'`` in main.bicep points to, and that module's body."""
        module = self.main.modules[symbol]
        path = module["detail"]["path"]
        return self[path], BicepTemplate.body(module)

    def role_assignments(self) -> list[RoleAssignment]:
        return [ra for template in self for ra in template.role_assignments()]

    def app_setting_names(self) -> set[str]:
        """Every app setting name the templates set on the function app (platform + app-specific)."""
        template, body = self.module_for("functionApp")
        names = set()
        for item in template.variable("platformSettings"):
            names.add(item["name"])
        names |= set(self.setting_object_keys(self.main, body["params"]["appSettings"]))
        return names

    def setting_object_keys(self, template: BicepTemplate, value: Any) -> list[str]:
        """Keys of an object expression built from literals, variables, ``union(...)`` and ``cond ? a : b``."""
        if isinstance(value, dict) and "function" not in value and "operator" not in value:
            return list(value)
        if isinstance(value, str) and value in template.variables:
            return self.setting_object_keys(template, template.variable(value))
        if isinstance(value, str) and value in template.parameters:
            return self.setting_object_keys(template, template.parameter_default(value) or {})
        call = function_call(value, "union")
        if call is not None:
            return [key for arg in call["parameters"].values() for key in self.setting_object_keys(template, arg)]
        branches = operator(value, "conditional")
        if branches is not None:
            return self.setting_object_keys(template, branches["true_value"]) + self.setting_object_keys(
                template, branches["false_value"]
            )
        raise AssertionError(f"{template.rel}: cannot read app setting names from {value!r}")


def unquote_keys(value: Any) -> Any:
    """pycep keeps the quotes of quoted object keys (``'azd-env-name'``); drop them so keys compare as written."""
    if isinstance(value, dict):
        return {
            (key[1:-1] if isinstance(key, str) and len(key) > 1 and key[0] == key[-1] == "'" else key): unquote_keys(v)
            for key, v in value.items()
        }
    if isinstance(value, list):
        return [unquote_keys(item) for item in value]
    return value


@pytest.fixture(scope="session")
def infra() -> InfraTemplates:
    from pycep import BicepParser

    parser = BicepParser()
    templates = InfraTemplates()
    for path in bicep_files():
        rel = path.relative_to(INFRA_DIR).as_posix()
        templates.templates[rel] = BicepTemplate(
            rel, unquote_keys(parser.parse(file_path=path)), path.read_text(encoding="utf-8")
        )
    assert "main.bicep" in templates.templates, "infra/main.bicep is missing"
    return templates


# ----------------------------------------------------------------------------------------------- settings reads

ENV_HELPERS = frozenset({"env_str", "env_int", "env_float", "env_bool"})
"""``shared.settings`` helpers; the setting name is their second argument: ``env_int(env, "NAME", default)``."""

_ENV_RECEIVER = re.compile(r"(^|\.)(_?env|environ)$")
"""Environment mappings whose ``.get(NAME)`` / ``[NAME]`` is a setting read: ``env``, ``self._env``, ``os.environ``."""


@dataclass(frozen=True)
class EnvRead:
    """One place the code reads a setting."""

    name: str | None
    """The setting name, or None when the scanner cannot tell it (a computed name)."""
    where: str
    """``path:line``."""


class _NameResolver:
    """Works out the string(s) a setting-name expression can take, without running the code.

    Understood: string literals; ``+`` and f-string concatenation; ``.upper()``/``.lower()``; names assigned earlier in
    an enclosing block or at module level; loop variables over a literal (``for name in ("A", "B")``,
    ``for attr, name in names.items()`` / ``names.values()`` with ``names`` a dict literal of strings); and the
    dataclass idiom ``for field in dataclasses.fields(cls): name = PREFIX + field.name.upper()``.
    Anything else resolves to None (a computed name the test reports).
    """

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents = {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}

    def values(self, node: ast.AST | None) -> list[str] | None:
        if isinstance(node, ast.Constant):
            return [node.value] if isinstance(node.value, str) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._product([node.left, node.right])
        if isinstance(node, ast.JoinedStr):
            parts = [
                p.value if isinstance(p, ast.FormattedValue) and p.conversion == -1 and p.format_spec is None else p
                for p in node.values
            ]
            return self._product(parts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.args:
            inner = self.values(node.func.value)
            if inner is not None and node.func.attr in {"upper", "lower"}:
                return [getattr(v, node.func.attr)() for v in inner]
            return None
        if isinstance(node, ast.Attribute) and node.attr == "name" and isinstance(node.value, ast.Name):
            return self._dataclass_field_names(node.value)
        if isinstance(node, ast.Name):
            loop = self._loop_binding(node)
            if loop is not None:
                return self._loop_values(node, *loop)
            assigned = self._assignment_before(node)
            return self.values(assigned) if assigned is not None else None
        return None

    def _product(self, parts: list[ast.AST]) -> list[str] | None:
        results = [""]
        for part in parts:
            options = self.values(part)
            if options is None:
                return None
            results = [prefix + option for prefix in results for option in options]
        return results

    def _loop_binding(self, node: ast.Name) -> tuple[ast.expr, ast.expr] | None:
        """(target, iter) of the innermost for-loop or comprehension that binds ``node.id`` around ``node``."""
        current: ast.AST | None = node
        while (current := self.parents.get(id(current))) is not None:
            generators = getattr(current, "generators", None)
            loops = generators if generators else [current] if isinstance(current, ast.For) else []
            for loop in loops:
                if any(isinstance(t, ast.Name) and t.id == node.id for t in ast.walk(loop.target)):
                    return loop.target, loop.iter
        return None

    def _loop_values(self, node: ast.Name, target: ast.expr, iterable: ast.expr) -> list[str] | None:
        if isinstance(iterable, ast.Tuple | ast.List | ast.Set):
            return self._product_each(iterable.elts) if isinstance(target, ast.Name) else None
        if not (
            isinstance(iterable, ast.Call)
            and isinstance(iterable.func, ast.Attribute)
            and isinstance(iterable.func.value, ast.Name)
            and iterable.func.attr in {"items", "values"}
        ):
            return None
        table = self._assignment_before(iterable.func.value)
        if not isinstance(table, ast.Dict):
            return None
        if iterable.func.attr == "items":
            is_value = (
                isinstance(target, ast.Tuple)
                and len(target.elts) == 2
                and isinstance(target.elts[1], ast.Name)
                and target.elts[1].id == node.id
            )
            if not is_value:
                return None  # the loop variable is the key, not the setting name
        elif not isinstance(target, ast.Name):
            return None
        return self._product_each(table.values)

    def _product_each(self, nodes: list[ast.expr]) -> list[str] | None:
        found = []
        for item in nodes:
            options = self.values(item)
            if options is None:
                return None
            found += options
        return found

    def _dataclass_field_names(self, variable: ast.Name) -> list[str] | None:
        """Field names when ``variable`` loops over ``dataclasses.fields(cls | self | ClassName)``."""
        loop = self._loop_binding(variable)
        if loop is None or not isinstance(loop[0], ast.Name):
            return None
        call = loop[1]
        if not (
            isinstance(call, ast.Call)
            and ast.unparse(call.func) in {"fields", "dataclasses.fields"}
            and len(call.args) == 1
            and isinstance(call.args[0], ast.Name)
        ):
            return None
        owner = call.args[0].id
        if owner in {"cls", "self"}:
            cls_node = self._enclosing(variable, ast.ClassDef)
        else:
            cls_node = next((n for n in self.tree.body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls_node is None:
            return None
        return [
            stmt.target.id
            for stmt in cls_node.body
            if isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and not re.search(r"\b(ClassVar|InitVar)\b", ast.unparse(stmt.annotation))
        ]

    def _enclosing(self, node: ast.AST, kind: type) -> Any:
        current: ast.AST | None = node
        while (current := self.parents.get(id(current))) is not None:
            if isinstance(current, kind):
                return current
        return None

    def _assignment_before(self, node: ast.Name) -> ast.expr | None:
        """The value of the last ``name = value`` that precedes ``node`` in an enclosing block, else at module level."""
        current: ast.AST = node
        while (parent := self.parents.get(id(current))) is not None:
            for block in ("body", "orelse", "finalbody"):
                statements = getattr(parent, block, None)
                if isinstance(statements, list) and current in statements:
                    earlier = statements[: statements.index(current)]
                    found = [value for stmt in earlier for value in self._assigns(stmt, node.id)]
                    if found:
                        return found[-1]
            current = parent
        return None

    @staticmethod
    def _assigns(stmt: ast.stmt, name: str) -> list[ast.expr]:
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets = [stmt.target]
        else:
            return []
        return [stmt.value] if any(isinstance(t, ast.Name) and t.id == name for t in targets) else []


def _read_name_node(node: ast.AST) -> tuple[bool, ast.expr | None]:
    """Whether ``node`` reads a setting, and the expression naming it."""
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        return bool(_ENV_RECEIVER.search(ast.unparse(node.value))), node.slice
    if not isinstance(node, ast.Call):
        return False, None
    func = node.func
    func_name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if func_name in ENV_HELPERS:
        keyword = next((kw.value for kw in node.keywords if kw.arg == "name"), None)
        return True, node.args[1] if len(node.args) > 1 else keyword
    if isinstance(func, ast.Attribute):
        receiver = ast.unparse(func.value)
        if (func.attr == "get" and _ENV_RECEIVER.search(receiver)) or (func.attr == "getenv" and receiver == "os"):
            return True, node.args[0] if node.args else None
    return False, None


def scan_env_reads(source: str, filename: str = "<source>") -> list[EnvRead]:
    """Find setting reads in Python source.

    Recognised: ``env_str/env_int/env_float/env_bool(env, NAME, ...)``, ``<env>.get(NAME)``, ``<env>[NAME]`` and
    ``os.getenv(NAME)``, where ``<env>`` is ``env``, ``self._env``, ``os.environ`` and the like. NAME is resolved as
    described in :class:`_NameResolver`; what it cannot resolve is reported with ``name=None``. Reads inside the
    ``env_*`` helper definitions themselves (which take the name as a parameter) are not reads of a setting.
    """
    tree = ast.parse(source, filename=filename)
    resolver = _NameResolver(tree)
    helper_bodies = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in ENV_HELPERS
        for inner in ast.walk(node)
    }
    reads = []
    for node in ast.walk(tree):
        if id(node) in helper_bodies:
            continue
        is_read, name_node = _read_name_node(node)
        if is_read:
            where = f"{filename}:{node.lineno}"
            reads += [EnvRead(name, where) for name in resolver.values(name_node) or [None]]
    return reads


@pytest.fixture(scope="session")
def env_scanner():  # -> Callable[[str, str], list[EnvRead]]
    return scan_env_reads


@pytest.fixture(scope="session")
def shared_env_reads() -> list[EnvRead]:
    """Setting reads in every module under ``shared/``."""
    reads = []
    for path in sorted(SHARED_DIR.rglob("*.py")):
        reads += scan_env_reads(path.read_text(encoding="utf-8"), path.relative_to(REPO_ROOT).as_posix())
    return reads


# ----------------------------------------------------------------------------------------------- operations doc


def markdown_table(markdown: str, heading: str) -> list[dict[str, str]]:
    """Rows of the first table under the heading whose text is ``heading`` (any level), as dicts keyed by header."""
    lines = markdown.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if re.fullmatch(rf"#+\s+{re.escape(heading)}\s*", line.strip())), None
    )
    assert start is not None, f"docs/operations.md has no heading {heading!r}"
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            break
        if stripped.startswith("|"):
            rows.append([cell.strip() for cell in stripped.strip("|").split("|")])
        elif rows:
            break
    assert len(rows) >= 2, f"docs/operations.md: no table under {heading!r}"
    header, body = rows[0], [row for row in rows[2:]]
    return [dict(zip(header, row, strict=False)) for row in body]


def setting_names_in_cell(cell: str) -> list[str]:
    """Setting names written as code spans in a table cell (`` `NAME` ``)."""
    return re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cell)


@pytest.fixture(scope="session")
def operations_doc() -> str:
    assert OPERATIONS_DOC.is_file(), "docs/operations.md is missing"
    return OPERATIONS_DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def doc_tables():  # -> (table reader, cell parser)
    return markdown_table, setting_names_in_cell
