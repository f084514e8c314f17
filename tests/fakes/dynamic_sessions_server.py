"""A loopback Azure Container Apps dynamic sessions pool (code interpreter), ``code/execute`` API.

The real service answers
``POST {pool_management_endpoint}/code/execute?api-version=2024-02-02-preview&identifier=<session id>`` with a
bearer token for ``https://dynamicsessions.io/.default`` and the body
``{"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": "..."}}``; the response is
``{"$id": "1", "properties": {"$id": "2", "status": "Success", "stdout": "...", "stderr": "...", "result": ...,
"executionTimeInMilliseconds": 33}}``. This fake checks all of that, runs the code in a fresh ``python -I``
subprocess (one per request; the real service keeps a Jupyter kernel per identifier, which a replay step never
relies on) and records the identifiers it saw.
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.fakes import LoopbackServer, RecordedRequest, Response

__all__ = ["FakeDynamicSessionsPool"]

API_VERSION = "2024-02-02-preview"
_POOL_PATH = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/sessionPools/weft-pool"


class FakeDynamicSessionsPool(LoopbackServer):
    """``token`` is the only bearer token accepted; ``timeout_seconds`` bounds each execution like the service does."""

    def __init__(self, *, token: str, timeout_seconds: float = 60.0) -> None:
        super().__init__()
        self.token = token
        self.timeout_seconds = timeout_seconds

    @property
    def endpoint(self) -> str:
        """The pool management endpoint (what the portal shows)."""
        return f"{self.url}{_POOL_PATH}"

    @property
    def identifiers(self) -> list[str]:
        """Session identifiers of the accepted executions, in order."""
        return [r.query["identifier"] for r in self.requests if self._problem(r) is None]

    def handle(self, request: RecordedRequest) -> Response:
        problem = self._problem(request)
        if problem is not None:
            status, code, message = problem
            return Response(status, {"error": {"code": code, "message": message}})
        code = request.json()["properties"]["code"]
        started = time.perf_counter()
        try:
            completed = subprocess.run(
                [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=self.timeout_seconds,
                env={"PYTHONHASHSEED": "0"}, check=False,
            )
            status, stdout, stderr = ("Success" if completed.returncode == 0 else "Failure"), completed.stdout, (
                completed.stderr
            )
        except subprocess.TimeoutExpired:
            status, stdout, stderr = "Failure", "", "execution timed out"
        return Response(
            200,
            {
                "$id": "1",
                "properties": {
                    "$id": "2",
                    "status": status,
                    "stdout": stdout,
                    "stderr": stderr,
                    "result": "",
                    "executionTimeInMilliseconds": int((time.perf_counter() - started) * 1000),
                },
            },
        )

    def _problem(self, request: RecordedRequest) -> tuple[int, str, str] | None:
        if request.method != "POST" or request.path != f"{_POOL_PATH}/code/execute":
            return 404, "NotFound", "no such operation"
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, "Unauthorized", "missing or invalid bearer token"
        if request.query.get("api-version") != API_VERSION:
            return 400, "InvalidApiVersion", "unsupported api-version"
        if not request.query.get("identifier"):
            return 400, "MissingIdentifier", "the identifier query parameter is required"
        try:
            properties = request.json()["properties"]
        except (ValueError, KeyError, TypeError):
            return 400, "InvalidRequestBody", "the body must be {'properties': {...}}"
        if properties.get("codeInputType") != "inline" or properties.get("executionType") != "synchronous":
            return 400, "InvalidRequestBody", "codeInputType must be 'inline' and executionType 'synchronous'"
        if not isinstance(properties.get("code"), str):
            return 400, "InvalidRequestBody", "code must be a string"
        return None
