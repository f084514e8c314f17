"""Architectural boundaries, checked on the source and on what imports really load: who may import what, what
function_app.py may do, what packages export, and whose ``_private`` names stay private."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("shared", "orchestrations", "activities", "devhost", "function_app")

IO_MODULES = (
    "shared.runtime", "shared.payloads", "shared.secrets", "shared.catalog.executor", "shared.catalog.breaker",
    "shared.sources", "shared.search", "shared.llm.providers", "shared.sandbox.process",
    "shared.sandbox.dynamic_sessions", "shared.identity.jwks", "shared.mcp_server",
    "azure.storage", "azure.data.tables", "azure.identity", "azure.keyvault", "openai", "httpx", "onnxruntime",
)
"""Modules that talk to the world (or build clients that do): an orchestrator replays, so it must reach none of them,
not even through a pure-looking helper. (``aiohttp`` is not listed: the Durable SDK itself imports it.)"""


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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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


def test_the_core_imports_no_orchestrator_or_activity() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                            if m.split(".")[0] in ("orchestrations", "activities", "function_app"))
        for path in python_files("shared")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


_PROBE = """
import importlib, json, sys
importers = {}

class Recorder:
    def find_spec(self, name, path=None, target=None):
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
            frame = frame.f_back
        importers.setdefault(name, frame.f_globals.get("__name__", "?") if frame is not None else "?")
        return None

sys.meta_path.insert(0, Recorder())
importlib.import_module(sys.argv[1])
io = tuple(json.loads(sys.argv[2]))
loaded = sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in io))
roots = [m for m in loaded if not any(m != p and m.startswith(p + ".") for p in loaded)]
chains = {}
for module in roots:
    chain, current = [module], module
    while current in importers and importers[current] not in chain and current != sys.argv[1]:
        current = importers[current]
        chain.append(current)
    chains[module] = " <- ".join(chain)
print(json.dumps(chains))
"""


@pytest.mark.parametrize("module", [module_name(p) for p in python_files("orchestrations")])
def test_orchestrators_reach_no_io_module_even_transitively(module: str) -> None:
    """Import each orchestration module alone in a fresh interpreter and list every I/O module it loaded, with the
    chain of imports that brought it in (``offender <- importer <- ... <- orchestration module``)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, module, json.dumps(IO_MODULES)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == {}


# ---------------------------------------------------------------------------------------------- public surfaces


def _public_modules() -> list[str]:
    """Every package of the app and every public module that declares ``__all__``."""
    found = []
    for path in python_files("shared"):
        if path.name.startswith("_") and path.name != "__init__.py":
            continue
        if path.name == "__init__.py" or "__all__" in path.read_text():
            found.append(module_name(path))
    return found


@pytest.mark.parametrize("module", _public_modules())
def test_every_exported_name_resolves(module: str) -> None:
    imported = importlib.import_module(module)
    exported = getattr(imported, "__all__", None)
    if module.count(".") == 1 and (ROOT / module.replace(".", "/") / "__init__.py").exists():
        assert exported, f"package {module} has no curated __all__"
    exported = list(exported or [])
    assert len(exported) == len(set(exported)), f"{module}.__all__ lists a name twice"
    assert [name for name in exported if not hasattr(imported, name)] == []
    assert [name for name in exported if name.startswith("_")] == []


@pytest.mark.parametrize("path", [p for p in python_files("shared") if p.name == "__init__.py"],
                         ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_package_inits_have_no_star_imports(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)]


# ---------------------------------------------------------------------------------------------- private names


def _owner(target: str) -> str | None:
    """The package a ``_private`` name belongs to, or None when ``target`` names nothing private of the app.

    Capability packages own their privates (``shared.sandbox._wire`` and ``shared.sources.loader._run`` belong to
    ``shared.sandbox`` / ``shared.sources``); a cross-cutting module of ``shared/`` owns its own
    (``shared.runtime._breaker_store``); ``orchestrations``, ``activities`` and ``devhost`` are one package each."""
    parts = target.split(".")
    if parts[0] not in APP_PACKAGES:
        return None
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return parts[0] if parts[0] != "shared" or index == 1 else ".".join(parts[:2])
    return None


def _private_imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, imported name, owning package)`` for each app-private name ``path`` imports."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            owner = _owner(target)
            if owner is not None:
                found.append((node.lineno, target, owner))
    return found


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_nothing_outside_a_package_imports_its_private_names() -> None:
    files = [*(p for folder in ("shared", "orchestrations", "activities", "devhost") for p in python_files(folder)),
             ROOT / "function_app.py"]
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {target} (private to {owner})"
                 for path in files for line, target, owner in _private_imports(path)
                 if not _inside(module_name(path), owner)]
    assert offenders == []


def test_a_test_white_boxes_at_most_the_one_package_it_tests() -> None:
    """Tests may import the private names of the package they test (to drive a worker module or a generator step
    by step), but of one package only: reaching into a second one means relying on its internals."""
    offenders = {}
    for path in python_files("tests"):
        owners = sorted({owner for _, _, owner in _private_imports(path)})
        if len(owners) > 1:
            offenders[str(path.relative_to(ROOT))] = owners
    assert offenders == {}


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
