"""Function index: load settings like Core Tools, import the app, and sort its functions by trigger."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["AppLoadError", "FunctionEntry", "FunctionIndex", "HttpRoute", "load_app", "load_settings"]


class AppLoadError(RuntimeError):
    """The app, its settings file or its host.json could not be loaded; the message says what to fix."""


@dataclass
class FunctionEntry:
    """One function of the app: how the worker would call it."""

    name: str
    trigger_type: str
    trigger: Any
    trigger_param: str
    fn: Callable[..., Any]
    client_params: list[str] = field(default_factory=list)
    wants_context: bool = False
    queue_outputs: list[tuple[str, str, str]] = field(default_factory=list)
    """``(parameter, queue name, connection setting)`` for each queue output binding."""


@dataclass
class HttpRoute:
    entry: FunctionEntry
    template: str
    methods: set[str] | None
    pattern: re.Pattern[str]


@dataclass
class FunctionIndex:
    """Everything the devhost serves for one app."""

    app_dir: Path
    host_config: dict[str, Any]
    routes: list[HttpRoute] = field(default_factory=list)
    queues: list[FunctionEntry] = field(default_factory=list)
    timers: list[FunctionEntry] = field(default_factory=list)
    orchestrators: dict[str, Callable[[str], str]] = field(default_factory=dict)
    activities: dict[str, FunctionEntry] = field(default_factory=dict)
    functions: dict[str, FunctionEntry] = field(default_factory=dict)

    @property
    def route_prefix(self) -> str:
        http = (self.host_config.get("extensions") or {}).get("http") or {}
        return str(http.get("routePrefix", "api")).strip("/")

    @functools.cached_property
    def task_hub(self) -> str:
        """The task hub's name, resolved once as the host does at start-up (every Durable client binding reads it)."""
        durable = (self.host_config.get("extensions") or {}).get("durableTask") or {}
        hub = str(durable.get("hubName") or "TestHubName")
        return _expand_setting(hub)

    def durable_setting(self, name: str, default: Any) -> Any:
        durable = (self.host_config.get("extensions") or {}).get("durableTask") or {}
        return durable.get(name, default)


def _expand_setting(value: str) -> str:
    """Resolve ``%NAME%`` app-setting references as the host does."""
    return re.sub(r"%([^%]+)%", lambda m: os.environ.get(m.group(1), m.group(0)), value)


def load_settings(app_dir: Path, environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Put ``local.settings.json`` ``Values`` (else the ``.example`` file) into the environment.

    Variables already set in the environment win, as with Core Tools. Returns the file used, if any.
    """
    environ = os.environ if environ is None else environ
    for candidate in (app_dir / "local.settings.json", app_dir / "local.settings.json.example"):
        if not candidate.exists():
            continue
        try:
            data = json.loads(candidate.read_text())
        except json.JSONDecodeError as exc:
            raise AppLoadError(f"{candidate} is not valid JSON: {exc}") from exc
        values = data.get("Values", {}) if isinstance(data, dict) else None
        if not isinstance(values, dict):
            raise AppLoadError(f"{candidate} must be a JSON object with a 'Values' object of strings")
        for key, value in values.items():
            if not isinstance(value, str | int | float | bool):
                raise AppLoadError(f"{candidate}: Values.{key} must be a string")
            environ.setdefault(key, str(value).lower() if isinstance(value, bool) else str(value))
        return candidate
    return None


def _host_config(app_dir: Path) -> dict[str, Any]:
    path = app_dir / "host.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AppLoadError(f"{path} is not valid JSON: {exc}") from exc


_SEGMENT = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\??)\}")
# Route constraints only restrict matching: the host passes route parameters to the function as strings.
_CONSTRAINTS: dict[str, str] = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "float": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
}


def compile_route(template: str) -> re.Pattern[str]:
    """ASP.NET-style route template → regex: ``{id}``, ``{id:int}``, ``{id?}``, ``{*rest}``."""
    parts = [p for p in template.strip("/").split("/") if p]
    regex = ""
    for part in parts:
        match = _SEGMENT.fullmatch(part)
        if match is None:
            if _SEGMENT.search(part):
                raise AppLoadError(f"route {template!r}: mixed literal and parameter segments are not supported")
            regex += "/" + re.escape(part)
            continue
        catch_all, name, constraint, optional = match.groups()
        if catch_all:
            regex += f"(?:/(?P<{name}>.*))?"
            continue
        if constraint and constraint not in _CONSTRAINTS:
            raise AppLoadError(f"route {template!r}: unknown constraint {constraint!r}")
        body = _CONSTRAINTS.get(constraint or "", r"[^/]+")
        regex += f"(?:/(?P<{name}>{body}))?" if optional else f"/(?P<{name}>{body})"
    return re.compile("^" + regex + "/?$", re.DOTALL)


def _entry(function: Any) -> FunctionEntry:
    trigger = function.get_trigger()
    trigger_type = trigger.get_binding_name() if trigger is not None else "none"
    fn = function.get_user_function()
    bindings = [b.get_dict_repr() for b in function.get_bindings()]
    clients = [b["name"] for b in bindings if b.get("type") == "durableClient"]
    outputs = [
        (b["name"], b["queueName"], b.get("connection") or "AzureWebJobsStorage")
        for b in bindings
        if b.get("type") == "queue" and str(getattr(b.get("direction"), "name", b.get("direction"))).upper() == "OUT"
    ]
    target = getattr(fn, "client_function", fn)
    code = getattr(target, "__code__", None)
    params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount] if code is not None else ()
    return FunctionEntry(
        name=function.get_function_name(),
        trigger_type=trigger_type,
        trigger=trigger,
        trigger_param=trigger.name if trigger is not None else "",
        fn=fn,
        client_params=clients,
        queue_outputs=outputs,
        wants_context="context" in params and trigger is not None and trigger.name != "context",
    )


_LOADED: dict[Path, FunctionIndex] = {}


def _import_app_module(path: Path, module: str) -> ModuleType:
    """Import the app's module; a second app in the same process gets a unique module name."""
    existing = sys.modules.get(module)
    name = module
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() != path:
        name = f"{module}_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def load_app(app_dir: str | Path = ".", module: str = "function_app") -> FunctionIndex:
    """Load settings, import ``module`` from ``app_dir`` and index its functions.

    The SDK allows ``get_functions()`` once per app object, so the index is cached per app folder.
    """
    app_dir = Path(app_dir).resolve()
    if app_dir in _LOADED:
        return _LOADED[app_dir]
    path = app_dir / f"{module}.py"
    if not path.exists():
        raise AppLoadError(f"no {module}.py in {app_dir}: run the devhost from the app's folder or pass --app-dir")
    load_settings(app_dir)
    index = FunctionIndex(app_dir=app_dir, host_config=_host_config(app_dir))
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    try:
        mod = _import_app_module(path, module)
    except Exception as exc:
        raise AppLoadError(f"importing {module}.py failed: {type(exc).__name__}: {exc}") from exc
    app = getattr(mod, "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise AppLoadError(f"{module}.py must define `app`, a FunctionApp/DFApp")
    for function in app.get_functions():
        entry = _entry(function)
        index.functions[entry.name] = entry
        kind = entry.trigger_type
        if kind == "httpTrigger":
            trig = entry.trigger
            template = trig.route if trig.route is not None else entry.name
            pattern = compile_route(template)
            methods = {str(getattr(m, "value", m)).upper() for m in trig.methods} if trig.methods else None
            index.routes.append(HttpRoute(entry, template, methods, pattern))
        elif kind == "queueTrigger":
            index.queues.append(entry)
        elif kind == "timerTrigger":
            index.timers.append(entry)
        elif kind == "orchestrationTrigger":
            name = getattr(entry.trigger, "orchestration", None) or entry.name
            index.orchestrators[name] = entry.fn
        elif kind == "activityTrigger":
            name = getattr(entry.trigger, "activity", None) or entry.name
            index.activities[name] = entry
    # Literal routes win over parameterised ones, as in ASP.NET routing.
    index.routes.sort(key=lambda r: (r.template.count("{"), -len(r.template)))
    _LOADED[app_dir] = index
    return index
