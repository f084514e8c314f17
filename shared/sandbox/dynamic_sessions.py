"""Production backend: run replay steps in Azure Container Apps dynamic sessions (code interpreter pools).

Each step is one ``POST {pool_management_endpoint}/code/execute?api-version=2024-02-02-preview&identifier=<id>``
with body ``{"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": ...}}`` and a bearer
token for ``https://dynamicsessions.io/.default``; the response's ``properties`` carry ``status``, ``stdout``,
``stderr``, ``result`` and ``executionTimeInMilliseconds``. The code sent is a small program that loads the sandbox
runtime (the same ``_wire``/``_loop``/``_shims``/``_runtime`` modules local workers use, shipped as source), runs
the job in replay mode and prints one ``WEFT-OUTCOME:`` line. Isolation there is the session's Hyper-V boundary
plus the policy layers; the session identifier is scoped to one run, so runs never share an interpreter.

Inline mode (:meth:`DynamicSessionsExecutor.run`) is a loop of replay steps with the tools executed here between
steps: a remote interpreter cannot call back into this process.

Limits: the session has no CPU-time or address-space confinement (``Limits.cpu_seconds`` and ``memory_bytes`` do
not apply; the pool's own session limits do). The wall-clock limit bounds each request instead: it is given up after
``Limits.wall_seconds`` plus :data:`WALL_MARGIN_S` (session allocation and transfer), and never later than the
executor's ``timeout_seconds`` (WEFT_SESSION_TIMEOUT_S); an inline run's steps and tool calls share one such budget.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from shared.errors import SandboxLimitExceeded, UpstreamUnavailable

from . import _wire, policy
from ._host import call_tool, check_code, check_tool_names, parse_clock, run_sync, to_replay_step
from .limits import Limits
from .records import CodeResult, PendingCall, RecordedCall, ReplayStep

__all__ = ["DynamicSessionsExecutor", "TokenCredential"]

SCOPE = "https://dynamicsessions.io/.default"
API_VERSION = "2024-02-02-preview"
MARKER = "WEFT-OUTCOME:"
RUNTIME_MODULES = ("_wire", "_loop", "_format", "_shims", "_audit", "_tools", "_rewrite", "_runtime")
WALL_MARGIN_S = 10.0
"""Seconds a session request may take beyond the run's wall-clock limit: allocating the session, sending the
program and the outcome."""
_PACKAGE = "weft_sandbox_worker"
_HERE = Path(__file__).resolve().parent


class _AccessToken(Protocol):
    # Read-only members, so azure-core's ``AccessToken`` (a NamedTuple) matches.
    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    """The azure-identity credential shape (``DefaultAzureCredential``, ``ManagedIdentityCredential``…)."""

    def get_token(self, *scopes: str) -> _AccessToken:
        """Return a bearer token for ``scopes``."""
        ...


@functools.cache
def _runtime_sources() -> str:
    """The runtime modules' source as one JSON object (read once per process)."""
    return json.dumps({name: (_HERE / f"{name}.py").read_text(encoding="utf-8") for name in RUNTIME_MODULES})


def build_program(job: Mapping[str, Any]) -> str:
    """The Python program sent to the session: the runtime modules as source, then the job, then one outcome line."""
    return (
        "import json as _json, sys as _sys, types as _types\n"
        f"_sources = _json.loads({json.dumps(_runtime_sources())})\n"
        f"_pkg = _types.ModuleType({_PACKAGE!r}); _pkg.__path__ = []; _sys.modules[{_PACKAGE!r}] = _pkg\n"
        f"for _name in {list(RUNTIME_MODULES)!r}:\n"
        f"    _mod = _types.ModuleType({_PACKAGE!r} + '.' + _name); _mod.__package__ = {_PACKAGE!r}\n"
        f"    _sys.modules[_mod.__name__] = _mod\n"
        "    exec(compile(_sources[_name], '<weft ' + _name + '>', 'exec'), _mod.__dict__)\n"
        "    setattr(_pkg, _name, _mod)\n"
        f"_outcome = _pkg._runtime.run_embedded(_json.loads({json.dumps(json.dumps(job))}), "
        f"_json.loads({json.dumps(json.dumps(policy.worker_policy()))}))\n"
        f"print({MARKER!r} + _json.dumps(_outcome))\n"
    )


class DynamicSessionsExecutor:
    """:class:`~shared.sandbox.executor.CodeExecutor` backed by a dynamic sessions code-interpreter pool.

    ``credential`` is anything with azure-identity's ``get_token(scope)``; tokens are cached until five minutes
    before they expire. Pass ``http_client`` to share a connection pool (it is then not closed by :meth:`close`).
    ``timeout_seconds`` is the longest one request may take; the run's wall-clock limit plus ``wall_margin_seconds``
    lowers it.
    """

    def __init__(
        self,
        pool_management_endpoint: str,
        credential: TokenCredential,
        *,
        http_client: httpx.Client | None = None,
        timeout_seconds: float = 120.0,
        wall_margin_seconds: float = WALL_MARGIN_S,
        session_prefix: str = "weft",
    ) -> None:
        self._endpoint = pool_management_endpoint.rstrip("/")
        self._credential = credential
        self._client = http_client
        self._owns_client = http_client is None
        self._timeout = timeout_seconds
        self._wall_margin = wall_margin_seconds
        self._prefix = session_prefix
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def step(self, code: str, tool_names: Sequence[str], recorded: Sequence[RecordedCall], limits: Limits | None = None,
             *, clock_iso: str, seed: int) -> ReplayStep:
        """One replay step in a session identified by the run (same code, tools, clock and seed → same session)."""
        digest = hashlib.sha256(json.dumps([code, list(tool_names), clock_iso, seed]).encode()).hexdigest()[:32]
        limits = limits or Limits()
        return self._step(code, tool_names, recorded, limits, parse_clock(clock_iso), seed,
                          f"{self._prefix}-{digest}", self._deadline(limits))

    def run(self, code: str, tools: Mapping[str, Callable[..., Any]], limits: Limits | None = None) -> CodeResult:
        """Inline mode as a loop of replay steps, executing the tools here between steps."""
        limits = limits or Limits()
        clock, seed, identifier = time.time(), 0, f"{self._prefix}-{uuid.uuid4().hex}"
        deadline = self._deadline(limits)  # one wall-clock budget for every step and tool call of the run
        records: list[RecordedCall] = []
        for _ in range(limits.max_rounds):
            step = self._step(code, list(tools), records, limits, clock, seed, identifier, deadline)
            if step.done:
                return CodeResult(result=step.result, stdout=step.stdout, tool_calls=tuple(records), error=step.error)
            records.extend(run_sync(_execute_calls(tools, step.calls, limits)))
        raise SandboxLimitExceeded(
            f"the code needed more than {limits.max_rounds} rounds of tool calls; batch calls with asyncio.gather",
            field="rounds",
        )

    def token_lifetime(self) -> float:
        """Seconds the bearer token for the pool (cached, else fetched now) stays valid: a readiness probe that
        starts no session. Raises what the credential raises when the identity gets no token."""
        self._bearer()
        with self._lock:
            return (self._token[1] if self._token else 0.0) - time.time()

    def close(self) -> None:
        """Close the HTTP client if this executor created it."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    # -- internals -------------------------------------------------------------------------------------------------
    def _budget(self, limits: Limits) -> float:
        """Seconds a run may take in the pool: its wall-clock limit plus the margin, at most the request timeout."""
        return min(self._timeout, limits.wall_seconds + self._wall_margin)

    def _deadline(self, limits: Limits) -> float:
        """When (monotonic) a run started now must have its answer."""
        return time.monotonic() + self._budget(limits)

    def _step(self, code: str, tool_names: Sequence[str], recorded: Sequence[RecordedCall], limits: Limits,
              clock: float, seed: int, identifier: str, deadline: float) -> ReplayStep:
        check_tool_names(tool_names)
        syntax = check_code(code, limits)
        if syntax is not None:
            return ReplayStep.finished(None, "", syntax)
        job = {
            "t": "job", "mode": "replay", "code": code, "tools": list(tool_names),
            "recorded": [r.to_dict() for r in recorded], "limits": limits.worker_view(), "clock": clock, "seed": seed,
        }
        return to_replay_step(self._execute(build_program(job), identifier, limits, deadline))

    def _bearer(self) -> str:
        with self._lock:
            if self._token is None or self._token[1] - 300 < time.time():
                token = self._credential.get_token(SCOPE)
                self._token = (token.token, float(token.expires_on))
            return self._token[0]

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def _execute(self, program: str, identifier: str, limits: Limits, deadline: float) -> dict[str, Any]:
        body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": program}}
        too_slow = SandboxLimitExceeded(
            f"the code did not finish within {self._budget(limits):g} s in the dynamic session (wall-clock limit "
            f"{limits.wall_seconds:g} s); make it do less work",
            field="wall",
        )
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise too_slow
        try:
            response = self._http().post(
                f"{self._endpoint}/code/execute",
                params={"api-version": API_VERSION, "identifier": identifier},
                headers={"Authorization": f"Bearer {self._bearer()}"},
                json=body,
                timeout=timeout,
            )
        except httpx.TimeoutException:
            raise too_slow from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"dynamic sessions request failed: {type(exc).__name__}") from exc
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise UpstreamUnavailable(f"dynamic sessions answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise UpstreamUnavailable(f"dynamic sessions rejected the request: HTTP {response.status_code}")
        properties = response.json().get("properties") or {}
        for line in str(properties.get("stdout") or "").splitlines():
            if line.startswith(MARKER):
                outcome = json.loads(line[len(MARKER):])
                if _wire.json_size(outcome) > limits.max_message_bytes():
                    raise SandboxLimitExceeded("the dynamic session returned an oversized outcome", field="result")
                return outcome
        status = properties.get("status")
        raise SandboxLimitExceeded(
            f"the dynamic session ended without an outcome (status {status!r}); the code probably exhausted a limit "
            "of the session",
            field="crash",
        )


async def _execute_calls(
    tools: Mapping[str, Callable[..., Any]], calls: Sequence[PendingCall], limits: Limits
) -> list[RecordedCall]:
    return list(await asyncio.gather(*(call_tool(tools, call, limits) for call in calls)))
