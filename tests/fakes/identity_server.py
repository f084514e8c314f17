"""A loopback App Service / Azure Functions managed-identity endpoint.

The platform sets ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``; azure-identity (through MSAL) then sends
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<resource>[&client_id=<id>]`` with the header
``X-IDENTITY-HEADER: <IDENTITY_HEADER>`` and expects ``{"access_token", "expires_on", "resource", "token_type"}``
(``expires_on`` in epoch seconds, as a string). This fake checks all of that and issues a distinct random token per
resource, so a test can tell a Key Vault token from an Azure OpenAI one.
"""

from __future__ import annotations

import secrets
import threading
import time

from tests.fakes import LoopbackServer, RecordedRequest, Response

__all__ = ["FakeManagedIdentityEndpoint"]

_PATH = "/msi/token"


class FakeManagedIdentityEndpoint(LoopbackServer):
    """``client_id`` (when given) is the only user-assigned identity the app has; requests naming another, or none
    when one is expected, are refused the way App Service refuses them (400)."""

    def __init__(self, *, client_id: str | None = None, lifetime_seconds: int = 3600) -> None:
        super().__init__()
        self.identity_header = secrets.token_urlsafe(24)
        self.client_id = client_id
        self.lifetime_seconds = lifetime_seconds
        self._tokens: dict[str, str] = {}
        self._tokens_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The value for ``IDENTITY_ENDPOINT``."""
        return f"{self.url}{_PATH}"

    @property
    def environment(self) -> dict[str, str]:
        """``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` as the platform would set them."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.identity_header}

    def token_for(self, resource: str) -> str:
        """The access token this endpoint issues for ``resource`` (e.g. ``https://vault.azure.net``)."""
        with self._tokens_lock:
            return self._tokens.setdefault(resource.rstrip("/"), f"fake-{secrets.token_urlsafe(32)}")

    def issued(self, resource: str) -> int:
        """How many token requests for ``resource`` were answered with a token."""
        return sum(
            1
            for r in self.requests
            if r.query.get("resource", "").rstrip("/") == resource.rstrip("/") and self._problem(r) is None
        )

    def handle(self, request: RecordedRequest) -> Response:
        problem = self._problem(request)
        if problem is not None:
            status, message = problem
            return Response(status, {"statusCode": status, "message": message})
        resource = request.query["resource"]
        return Response(
            200,
            {
                "access_token": self.token_for(resource),
                "expires_on": str(int(time.time()) + self.lifetime_seconds),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.client_id or "00000000-0000-0000-0000-000000000000",
            },
        )

    def _problem(self, request: RecordedRequest) -> tuple[int, str] | None:
        if request.method != "GET" or request.path != _PATH:
            return 404, "Not found"
        if request.headers.get("x-identity-header") != self.identity_header:
            return 401, "X-IDENTITY-HEADER is missing or wrong"
        if request.query.get("api-version") != "2019-08-01":
            return 400, "Unsupported api-version"
        if not request.query.get("resource"):
            return 400, "resource is required"
        asked = request.query.get("client_id")
        if asked != self.client_id:
            return 400, f"No managed identity with client_id {asked!r} is assigned to this app"
        return None
