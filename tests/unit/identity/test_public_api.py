"""The public surface of ``shared.identity``: what each module exports, small modules, no Azure Functions import."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import shared.identity

PACKAGE = Path(shared.identity.__file__).parent
MINE = ("__init__.py", "authenticate.py", "caller.py", "easy_auth.py", "jwks.py", "settings.py", "tokens.py")

EXPORTS = {
    "shared.identity.caller": {"LOCAL_CALLER", "Caller", "CallerKind", "Role", "caller_from_claims", "service_caller"},
    "shared.identity.settings": {"AUTH_MODES", "IdentitySettings"},
    "shared.identity.authenticate": {"Authenticator"},
    "shared.identity.tokens": {"BearerValidator", "bearer_token"},
    "shared.identity.jwks": {"FetchNeeded", "JwksCache", "PublicKey"},
    "shared.identity.easy_auth": {"PRINCIPAL_HEADER", "PRINCIPAL_HEADERS", "caller_from_principal",
                                  "decode_principal"},
}
CORE = {
    "LOCAL_CALLER", "PRINCIPAL_HEADERS", "Authenticator", "BearerValidator", "Caller", "CallerKind",
    "IdentitySettings", "Role", "caller_from_claims", "caller_from_principal", "service_caller",
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_all_is_the_public_surface(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == EXPORTS[module]
    assert all(hasattr(imported, name) for name in imported.__all__)


def test_the_package_exports_the_core() -> None:
    assert set(shared.identity.__all__) >= CORE
    assert all(hasattr(shared.identity, name) for name in shared.identity.__all__)


@pytest.mark.parametrize("name", MINE)
def test_modules_stay_small_and_never_import_azure_functions(name: str) -> None:
    path = PACKAGE / name
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in imported if n.startswith("azure.functions")}
    assert len(path.read_text().splitlines()) < 300
