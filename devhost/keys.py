"""Function keys, enforced like the Functions host: ``x-functions-key`` header or ``?code=``.

Off by default, as with Core Tools. When on, the keys come from a JSON file (created with random keys on first start):

    {"masterKey": "...",
     "functionKeys": {"default": "..."},                    host keys: any function-level function
     "systemKeys": {"mcp_extension": "...", "durabletask_extension": "..."},
     "functions": {"<function name>": {"default": "..."}}}   keys of one function only

Levels, as the host applies them: ``anonymous`` needs nothing; ``function`` takes a key of that function, a host key
or the master key; ``admin`` (and ``/admin/...``) takes the master key only; an extension's webhook
(``/runtime/webhooks/<extension>``) takes that extension's system key (``<extension>_extension``) or the master key.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KEY_HEADER", "AccessLevel", "FunctionKeys", "load_or_create_keys"]

KEY_HEADER = "x-functions-key"
SYSTEM_KEYS = ("mcp_extension", "durabletask_extension")


class AccessLevel:
    """The authorization levels of the host's HTTP layer."""

    ANONYMOUS = "anonymous"
    FUNCTION = "function"
    ADMIN = "admin"
    SYSTEM = "system"


def _new_key() -> str:
    # The host's keys are 40+ URL-safe characters; so are these.
    return secrets.token_urlsafe(40)


def _matches(candidate: str, keys: Any) -> bool:
    """Constant-time comparison against every key (no early exit that would reveal which one matched)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), str(key).encode())
    return found


@dataclass(frozen=True)
class FunctionKeys:
    """The keys one devhost enforces; ``authorize`` answers whether a presented key opens a level."""

    master: str
    host: Mapping[str, str]
    system: Mapping[str, str]
    functions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @staticmethod
    def presented(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The key a request carries: the ``code`` query parameter wins over the header, as in the host."""
        code = query.get("code")
        if code:
            return code
        return headers.get(KEY_HEADER) or None

    def authorize(self, key: str | None, level: str, *, function: str | None = None, system: str | None = None) -> bool:
        """Whether ``key`` opens ``level`` (for ``function``, or the ``system`` key named like ``mcp_extension``)."""
        if level == AccessLevel.ANONYMOUS:
            return True
        if not key:
            return False
        if _matches(key, [self.master]):
            return True
        if level == AccessLevel.FUNCTION:
            own = self.functions.get(function or "", {})
            return _matches(key, [*self.host.values(), *own.values()])
        if level == AccessLevel.SYSTEM and system is not None:
            return _matches(key, [v for k, v in self.system.items() if k == system])
        return False

    def system_key(self, name: str) -> str:
        return self.system.get(name) or self.master

    def to_json(self) -> dict[str, Any]:
        return {
            "masterKey": self.master,
            "functionKeys": dict(self.host),
            "systemKeys": dict(self.system),
            "functions": {k: dict(v) for k, v in self.functions.items()},
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> FunctionKeys:
        if not isinstance(data, dict) or not isinstance(data.get("masterKey"), str) or not data["masterKey"]:
            raise ValueError(f"{source}: expected an object with a non-empty string 'masterKey'")

        def names(value: Any, what: str) -> dict[str, str]:
            if value is None:
                return {}
            if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
                raise ValueError(f"{source}: '{what}' must map key names to non-empty strings")
            return dict(value)

        functions = data.get("functions") or {}
        if not isinstance(functions, dict):
            raise ValueError(f"{source}: 'functions' must map function names to their keys")
        system = {name: _new_key() for name in SYSTEM_KEYS} | names(data.get("systemKeys"), "systemKeys")
        return cls(
            master=data["masterKey"],
            host=names(data.get("functionKeys"), "functionKeys"),
            system=system,
            functions={fn: names(keys, f"functions.{fn}") for fn, keys in functions.items()},
        )


def load_or_create_keys(path: Path) -> FunctionKeys:
    """Read the keys file; create it (mode 0600) with random keys when it does not exist."""
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        keys = FunctionKeys.from_json(data, str(path))
        if set(SYSTEM_KEYS) - set(data.get("systemKeys") or {}):
            _write(path, keys)  # persist the system keys generated for a hand-written file
        return keys
    keys = FunctionKeys(
        master=_new_key(),
        host={"default": _new_key()},
        system={name: _new_key() for name in SYSTEM_KEYS},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, keys)
    return keys


def _write(path: Path, keys: FunctionKeys) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys.to_json(), fh, indent=2)
