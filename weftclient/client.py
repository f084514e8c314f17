"""The HTTP client: one method per route, answers parsed into the API's pydantic models.

Credentials: a function key (``x-functions-key``) and, when the app validates Entra ID tokens, a bearer token: given,
read from ``WEFT_TOKEN``, or obtained with azure-identity's ``DefaultAzureCredential`` for ``WEFT_TOKEN_SCOPE``
(e.g. ``api://<app client id>/.default``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from shared.api_schemas import ApprovalReply, CancelReply, RunLinks, RunList, RunView, SearchReply, ToolList
from shared.models import RunRequest, ToolSpec
from shared.sources.loader import SourceReport

__all__ = ["ApiError", "WeftClient", "client_from_env"]

_FINISHED = ("completed", "completed_with_errors", "failed", "canceled")


class ApiError(Exception):
    """An error answer: its status and the API's ``{code, message, field}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({field})" if field else ""))
        self.status, self.code, self.message, self.field = status, code, message, field


class WeftClient:
    """A Weft API at ``base_url`` (``http://localhost:7071``); use as a context manager or call :meth:`close`."""

    def __init__(self, base_url: str, *, function_key: str | None = None, token: str | None = None,
                 token_provider: Callable[[], str] | None = None, timeout_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Accept": "application/json"}
        if function_key:
            headers["x-functions-key"] = function_key
        self._token, self._token_provider = token, token_provider
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                                  transport=transport)
        self._supports_wait: bool | None = None

    def __enter__(self) -> WeftClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:
        extra = dict(headers or {})
        token = self._token or (self._token_provider() if self._token_provider else None)
        if token:
            extra["Authorization"] = f"Bearer {token}"
        response = self._http.request(method, path, json=json, params=params, headers=extra)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            raise ApiError(response.status_code, str(body.get("code") or "http_error"),
                           str(body.get("message") or response.reason_phrase), body.get("field"))
        return response

    # ----------------------------------------------------------------------------------------------------- runs

    def start_run(self, request: RunRequest | dict[str, Any], *, idempotency_key: str | None = None) -> RunLinks:
        """``POST /api/runs``; ``request`` is validated locally first when given as a dict."""
        if isinstance(request, RunRequest):
            payload: Any = request.model_dump(mode="json", exclude_none=True)
        else:
            RunRequest.model_validate(request)  # a typo fails here, before anything is sent
            payload = request
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return RunLinks.model_validate(self._request("POST", "/api/runs", json=payload, headers=headers).json())

    def get_run(self, run_id: str, *, wait_s: int | None = None, until_end: bool = False) -> RunView:
        """``GET /api/runs/{id}`` (``wait_s``: long polling where the server supports it, answered at any change of
        the run, or with ``until_end`` only at its end or when a call awaits approval)."""
        params: dict[str, Any] | None = {"wait": wait_s, **({"until": "end"} if until_end else {})} if wait_s else None
        return RunView.model_validate(self._request("GET", f"/api/runs/{_segment(run_id)}", params=params).json())

    def list_runs(self, *, limit: int = 20, status: str | None = None, everyone: bool = False,
                  continuation: str | None = None) -> RunList:
        """``GET /api/runs``: one page, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if everyone:
            params["all"] = "true"
        if continuation:
            params["continuation"] = continuation
        return RunList.model_validate(self._request("GET", "/api/runs", params=params).json())

    def iter_runs(self, **filters: Any) -> Iterator[Any]:
        """Every run (of this caller), following continuation tokens."""
        token = None
        while True:
            page = self.list_runs(continuation=token, **filters)
            yield from page.runs
            token = page.continuation
            if not token:
                return

    def cancel(self, run_id: str, reason: str | None = None) -> CancelReply:
        params = {"reason": reason} if reason else None
        return CancelReply.model_validate(
            self._request("POST", f"/api/runs/{_segment(run_id)}/cancel", params=params).json())

    def approve(self, run_id: str, *, approved: bool = True, reason: str = "",
                call_ids: list[str] | None = None) -> ApprovalReply:
        """Approve (or deny) the calls ``call_ids`` (all waiting when None)."""
        body: dict[str, Any] = {"approved": approved, "reason": reason}
        if call_ids:
            body["call_ids"] = call_ids
        return ApprovalReply.model_validate(
            self._request("POST", f"/api/runs/{_segment(run_id)}/approve", json=body).json())

    def step_result(self, run_id: str, step_id: str) -> Any:
        """The whole result of one step of a finished run."""
        return self._request("GET", f"/api/runs/{_segment(run_id)}/steps/{_segment(step_id)}/result").json()

    def follow(self, run_id: str, *, on_update: Callable[[RunView], None] | None = None, timeout_s: float = 3600,
               poll_s: float = 0.5) -> RunView:
        """Follow a run until it finishes: long polling (``?wait=``) when the server supports it, else polling
        every ``poll_s``; ``on_update`` sees each view (without one, only the end or an approval wakes the client)."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self._next_view(run_id, until_end=on_update is None)
            if on_update is not None:
                on_update(view)
            if view.status in _FINISHED:
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not finish in {timeout_s}s")
            if not self._supports_wait:
                time.sleep(poll_s)

    def _next_view(self, run_id: str, *, until_end: bool) -> RunView:
        if self._supports_wait is False:
            return self.get_run(run_id)
        try:
            view = self.get_run(run_id, wait_s=20, until_end=until_end)
        except ApiError as exc:
            if exc.field not in ("wait", "until"):
                raise
            self._supports_wait = False
            return self.get_run(run_id)
        self._supports_wait = True
        return view

    # ---------------------------------------------------------------------------------------------------- tools

    def list_tools(self) -> ToolList:
        return ToolList.model_validate(self._request("GET", "/api/tools").json())

    def get_tool(self, name: str) -> ToolSpec:
        return ToolSpec.model_validate(self._request("GET", f"/api/tools/{_segment(name)}").json())

    def search_tools(self, query: str, *, k: int = 10) -> SearchReply:
        return SearchReply.model_validate(
            self._request("POST", "/api/tools/search", json={"query": query, "k": k}).json())

    def add_source(self, config: dict[str, Any]) -> SourceReport:
        """Register an OpenAPI (``{"type": "openapi", "url": ...}``) or HTTP MCP source for every instance."""
        return SourceReport.model_validate(self._request("POST", "/api/tools/sources", json=config).json())

    def reload(self) -> dict[str, Any]:
        return dict(self._request("POST", "/api/tools/reload").json())

    def openapi(self) -> dict[str, Any]:
        return dict(self._request("GET", "/api/openapi.json").json())


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _token_from_identity(scope: str) -> Callable[[], str]:
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    cache: dict[str, Any] = {}

    def token() -> str:
        current = cache.get("token")
        if current is None or current.expires_on - 120 < time.time():
            cache["token"] = current = credential.get_token(scope)
        return str(current.token)

    return token


def client_from_env(base_url: str | None = None, env: dict[str, str] | None = None) -> WeftClient:
    """A client configured by ``WEFT_URL`` (default ``http://localhost:7071``), ``WEFT_FUNCTION_KEY``, and
    ``WEFT_TOKEN`` or ``WEFT_TOKEN_SCOPE`` (a token from azure-identity's DefaultAzureCredential)."""
    env = dict(os.environ) if env is None else env
    scope = env.get("WEFT_TOKEN_SCOPE")
    return WeftClient(base_url or env.get("WEFT_URL") or "http://localhost:7071",
                      function_key=env.get("WEFT_FUNCTION_KEY") or None, token=env.get("WEFT_TOKEN") or None,
                      token_provider=_token_from_identity(scope) if scope and not env.get("WEFT_TOKEN") else None)
