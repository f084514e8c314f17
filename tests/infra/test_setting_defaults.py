"""Every default documented in the ``Optional settings`` table of docs/operations.md is the code's default.

The code's defaults are observed, not parsed: every settings class under ``shared/`` with a ``from_env`` classmethod
is built from an empty environment while the ``env_str/env_int/env_float/env_bool`` helpers record the default they
are given for each name. A documented default is compared when its cell starts with a code span (`` `0.4` ``,
`` `""` (none) ``); a cell with a placeholder (`` `<WEFT_STATE_DIR>/discovery` ``) must belong to a setting whose
code default is empty (computed at run time); prose defaults ("inferred: ...") are listed in
:data:`DESCRIBED_DEFAULTS` with the reason they cannot be compared.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import shared.settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT / "shared"
OPTIONAL_HEADING = "Optional settings"
HELPERS = ("env_str", "env_int", "env_float", "env_bool")

DESCRIBED_DEFAULTS = {
    "LLM_PROVIDER": "inferred from the other LLM settings",
    "WEFT_SEARCH_MODEL_ID": "the packaged model, named in prose",
    "WEFT_SANDBOX_REQUIRE_SECCOMP": "computed at start-up: true where the seccomp filter exists (x86_64 Linux)",
    "AZURE_FUNCTIONS_DURABLE_STRICT_TYPING": "the Durable SDK's setting; orchestrations/durable.py sets 1 when unset",
}
"""Documented settings whose default is described in words, not a value the code passes to an ``env_*`` helper."""


def settings_classes() -> list[type]:
    """Classes under ``shared/`` with their own ``from_env`` classmethod (the modules that have one are imported)."""
    found = []
    for path in sorted(SHARED.rglob("*.py")):
        if "def from_env" not in path.read_text(encoding="utf-8"):
            continue
        module = importlib.import_module(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
        for value in vars(module).values():
            if (inspect.isclass(value) and value.__module__ == module.__name__
                    and isinstance(value.__dict__.get("from_env"), classmethod)):
                found.append(value)
    return found


@pytest.fixture(scope="module")
def code_defaults() -> dict[str, set[Any]]:
    """Setting name -> the defaults the code passes for it, from every settings class built from an empty env."""
    recorded: dict[str, set[Any]] = {}

    def recording(helper: Callable[..., Any]) -> Callable[..., Any]:
        def record(env: Any, name: str, default: Any, **kwargs: Any) -> Any:
            recorded.setdefault(name, set()).add(default)
            return helper(env, name, default, **kwargs)

        return record

    with pytest.MonkeyPatch.context() as patch:
        classes = settings_classes()
        originals = {name: getattr(shared.settings, name) for name in HELPERS}
        for module in {importlib.import_module(cls.__module__) for cls in classes} | {shared.settings}:
            for name in HELPERS:
                if getattr(module, name, None) is originals[name]:
                    patch.setattr(module, name, recording(originals[name]))
        for cls in classes:
            cls.from_env({})
    return recorded


@pytest.fixture(scope="module")
def documented_defaults(operations_doc: str, doc_tables: Any) -> dict[str, str]:
    read_table, names_in = doc_tables
    return {name: row["Default"].strip() for row in read_table(operations_doc, OPTIONAL_HEADING)
            for name in names_in(row["Setting"])}


def matches(documented: str, code: Any) -> bool:
    """Whether the documented literal (the text of a code span) is the code's default value."""
    if isinstance(code, bool):
        return documented == str(code).lower()
    if isinstance(code, int | float):
        try:
            return float(documented.replace(",", "")) == float(code)
        except ValueError:
            return False
    return documented == (f'"{code}"' if code == "" else code)


def test_the_recorder_sees_the_settings_classes(code_defaults: dict[str, set[Any]]) -> None:
    # Guards the observation itself: settings of the runtime, a subsystem and telemetry are all recorded.
    assert {"WEFT_MAX_FAN_OUT", "WEFT_SANDBOX_CPU_SECONDS", "WEFT_SEARCH_BM25_WEIGHT", "OTEL_SERVICE_NAME"} <= set(
        code_defaults)


def test_documented_defaults_are_the_codes(documented_defaults: dict[str, str],
                                           code_defaults: dict[str, set[Any]]) -> None:
    drift, unchecked = {}, []
    for name, cell in documented_defaults.items():
        literal = re.match(r"`([^`]*)`", cell)
        if name in DESCRIBED_DEFAULTS:
            assert literal is None, f"{name} has a literal default now ({cell}); drop it from DESCRIBED_DEFAULTS"
            continue
        if name not in code_defaults or literal is None:
            unchecked.append(f"{name} ({cell})")
            continue
        value = literal.group(1)
        wrong = {default for default in code_defaults[name]
                 if not (matches(value, default) or ("<" in value and default == ""))}
        if wrong:
            drift[name] = f"documented {cell}, code {sorted(map(repr, wrong))}"
    assert drift == {}, "docs/operations.md Optional settings defaults differ from the code's"
    assert unchecked == [], (
        "these documented defaults cannot be compared with the code: give the cell a `literal` default read through "
        "an env_* helper in a from_env, or list the setting in DESCRIBED_DEFAULTS with the reason"
    )


@pytest.mark.parametrize(
    ("documented", "code", "expected"),
    [
        ("0.4", 0.4, True),
        ("0.3", 0.4, False),
        ("30", 30.0, True),
        ("262144", 256 * 1024, True),
        ("true", True, True),
        ("false", True, False),
        ('""', "", True),
        ("weft", "weft", True),
        ("weft", "other", False),
        ("1", True, False),
    ],
    ids=["float", "float-drift", "int-for-float", "int", "bool", "bool-drift", "empty", "str", "str-drift",
         "not-a-bool"],
)
def test_matching_literals(documented: str, code: Any, expected: bool) -> None:
    assert matches(documented, code) is expected
