"""Calling an OpenAPI operation: the request it sends and how each kind of answer is mapped (no server needed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from shared.catalog.catalog import Catalog, Tool
from shared.catalog.executor import ToolExecutor
from shared.errors import (
    Forbidden,
    InvalidRequest,
    NotConfigured,
    ToolArgumentsInvalid,
    UpstreamUnavailable,
    is_retryable,
)
from shared.models import ToolCall
from shared.sources.openapi import openapi_tools
from shared.sources.openapi_transport import (
    HttpAuth,
    OpenApiClient,
    OpenApiSettings,
    OpenApiTransport,
    host_allowed,
)
from shared.sources.ssrf import NetworkPolicy, SsrfGuard
from tests.fakes.openapi_server import pets_document
from tests.unit.sources.conftest import MemorySecrets, table_resolver

TOKEN = "tok-123456"
BOUND = ("pets.example",)
"""Where the test document's secret may go (the hosts its server names)."""


class Upstream:
    """An httpx.MockTransport factory: answers with ``reply(request)`` and records requests."""

    def __init__(self, reply: Any = None) -> None:
        self.reply = reply or (lambda request: httpx.Response(200, json={"ok": True}))
        self.requests: list[httpx.Request] = []

    def __call__(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            request.read()
            self.requests.append(request)
            return self.reply(request)

        return httpx.MockTransport(handler)


def transports(upstream: Upstream, *, secrets: Any = None, auth: HttpAuth | None = None,
               settings: OpenApiSettings | None = None, base_url: str | None = None) -> dict[str, OpenApiTransport]:
    guard = SsrfGuard(resolver=table_resolver({"pets.example": ["93.184.216.34"]}))
    client = OpenApiClient(guard=guard, settings=settings, auth=auth, secrets=secrets, base_url=base_url,
                           http_transport=upstream)
    tools = openapi_tools(pets_document("https://pets.example"))
    return {tool.spec.name: OpenApiTransport(client, tool.binding) for tool in tools}


def call(transport: OpenApiTransport, key: str = "run-1:s1", timeout: float | None = 5, **args: Any) -> Any:
    return asyncio.run(transport.call(args, idempotency_key=key, timeout_s=timeout))


def test_path_query_header_and_body_go_where_the_document_says() -> None:
    upstream = Upstream()
    ops = transports(upstream)
    call(ops["getFile"], name="a b/c?d#e%")
    call(ops["listPets"], limit=2, tag=["dog", "cat"])
    call(ops["createPet"], name="Fido", tag=None)
    call(ops["importPets"], body=[{"name": "A"}, {"name": "B"}])
    call(ops["whoami"], **{"X-Trace": "t-1"})
    file_, listing, create, batch, whoami = upstream.requests
    assert file_.url.raw_path == b"/api/files/a%20b%2Fc%3Fd%23e%25"
    assert file_.headers["host"] == "pets.example"
    assert listing.url.params.multi_items() == [("limit", "2"), ("tag", "dog"), ("tag", "cat")]
    assert (create.method, create.url.path) == ("POST", "/api/pets")
    assert json.loads(create.content) == {"name": "Fido", "tag": None}
    assert create.headers["content-type"] == "application/json"
    assert json.loads(batch.content) == [{"name": "A"}, {"name": "B"}]
    assert whoami.headers["x-trace"] == "t-1"
    assert all(request.headers["idempotency-key"] == "run-1:s1" for request in upstream.requests)
    assert not any("authorization" in request.headers for request in upstream.requests)


def test_the_auth_header_comes_from_the_named_secret_at_call_time() -> None:
    upstream = Upstream()
    secrets = MemorySecrets({"petstore-token": TOKEN})
    ops = transports(upstream, secrets=secrets, auth=HttpAuth(secret="petstore-token", allowed_hosts=BOUND))
    call(ops["listPets"])
    secrets.values["petstore-token"] = "rotated"
    call(ops["listPets"])
    assert [r.headers["authorization"] for r in upstream.requests] == [f"Bearer {TOKEN}", "Bearer rotated"]
    assert secrets.reads == ["petstore-token", "petstore-token"]


def test_an_api_key_header_without_scheme() -> None:
    upstream = Upstream()
    ops = transports(upstream, secrets=MemorySecrets({"k": "key-1"}), auth=HttpAuth(secret="k", header="X-Api-Key",
                                                                                   scheme=None, allowed_hosts=BOUND))
    call(ops["readme"])
    assert upstream.requests[0].headers["x-api-key"] == "key-1"


@pytest.mark.parametrize("bound", [pytest.param((), id="unbound"), pytest.param(("api.example.com",), id="other-host"),
                                   pytest.param(("*.pets.example",), id="only-subdomains")])
def test_a_secret_is_never_read_or_sent_toward_a_host_it_is_not_bound_to(bound: tuple[str, ...]) -> None:
    upstream = Upstream()
    secrets = MemorySecrets({"petstore-token": TOKEN})
    ops = transports(upstream, secrets=secrets, auth=HttpAuth(secret="petstore-token", allowed_hosts=bound))
    with pytest.raises(Forbidden, match=r"not bound to host 'pets\.example'"):
        call(ops["listPets"])
    assert secrets.reads == [] and upstream.requests == []


@pytest.mark.parametrize(("host", "patterns", "allowed"), [
    ("pets.example", ("pets.example",), True), ("PETS.example.", ("pets.example",), True),
    ("api.pets.example", ("*.pets.example",), True), ("pets.example", ("*.pets.example",), False),
    ("evilpets.example", ("*.pets.example",), False), ("pets.example.evil", ("pets.example",), False),
    ("", ("pets.example",), False)])
def test_host_patterns(host: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert host_allowed(host, patterns) is allowed


def test_auth_without_a_secret_source_is_a_configuration_error() -> None:
    ops = transports(Upstream(), auth=HttpAuth(secret="petstore-token", allowed_hosts=BOUND))
    with pytest.raises(NotConfigured, match="petstore-token"):
        call(ops["listPets"])


def test_base_url_overrides_the_document_server() -> None:
    upstream = Upstream()
    call(transports(upstream, base_url="https://pets.example/v2/")["getPet"], petId=7)
    [sent] = upstream.requests
    assert (sent.headers["host"], sent.url.path) == ("pets.example", "/v2/pets/7")


def test_query_arrays_without_explode_are_comma_joined() -> None:
    document = {"openapi": "3.0.0", "servers": [{"url": "https://pets.example"}], "paths": {"/x": {"get": {
        "operationId": "op",
        "parameters": [{"name": "ids", "in": "query", "explode": False, "schema": {"type": "array"}}],
    }}}}
    [tool] = openapi_tools(document)
    upstream = Upstream()
    client = OpenApiClient(guard=SsrfGuard(resolver=table_resolver({"pets.example": ["93.184.216.34"]})),
                           http_transport=upstream)
    call(OpenApiTransport(client, tool.binding), ids=[1, 2, True])
    assert upstream.requests[0].url.params.multi_items() == [("ids", "1,2,true")]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(httpx.Response(200, json=[1, 2]), [1, 2], id="json"),
        pytest.param(httpx.Response(201, json={"id": 3}), {"id": 3}, id="created"),
        pytest.param(httpx.Response(204), None, id="no-content"),
        pytest.param(httpx.Response(200, text="plain words"), "plain words", id="text"),
        pytest.param(httpx.Response(200, text="{not json", headers={"content-type": "application/json"}), "{not json",
                     id="broken-json-as-text"),
    ],
)
def test_successful_answers(response: httpx.Response, expected: Any) -> None:
    assert call(transports(Upstream(lambda request: response))["listPets"]) == expected


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        pytest.param(400, InvalidRequest, False, id="400"),
        pytest.param(401, InvalidRequest, False, id="401"),
        pytest.param(404, InvalidRequest, False, id="404"),
        pytest.param(422, InvalidRequest, False, id="422"),
        pytest.param(302, InvalidRequest, False, id="302-not-followed"),
        pytest.param(408, UpstreamUnavailable, True, id="408"),
        pytest.param(429, UpstreamUnavailable, True, id="429"),
        pytest.param(500, UpstreamUnavailable, True, id="500"),
        pytest.param(503, UpstreamUnavailable, True, id="503"),
    ],
)
def test_error_answers_are_mapped_with_status_and_excerpt(status: int, error: type[Exception], retryable: bool) -> None:
    body = {"error": "x" * 1000}
    ops = transports(Upstream(lambda request: httpx.Response(status, json=body, headers={"Location": "/elsewhere"})))
    with pytest.raises(error) as caught:
        call(ops["getPet"], petId=1)
    message = str(caught.value)
    assert message.startswith(f"GET /pets/{{petId}} answered HTTP {status}")
    assert '{"error":"xxx' in message and "x..." in message and len(message) < 500
    assert is_retryable(caught.value) is retryable


def test_retry_after_is_reported() -> None:
    ops = transports(Upstream(lambda request: httpx.Response(429, headers={"Retry-After": "7"})))
    with pytest.raises(UpstreamUnavailable, match=r"Retry-After: 7"):
        call(ops["listPets"])


def test_an_echoed_credential_is_redacted_from_error_messages() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"rejected": request.headers["authorization"]})

    ops = transports(Upstream(reply), secrets=MemorySecrets({"t": TOKEN}),
                     auth=HttpAuth(secret="t", allowed_hosts=BOUND))
    with pytest.raises(InvalidRequest) as caught:
        call(ops["whoami"])
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ConnectError("connection refused"), id="connect"),
        pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
        pytest.param(httpx.RemoteProtocolError("peer closed"), id="protocol"),
    ],
)
def test_transport_failures_are_retryable_upstream_errors(failure: Exception) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(UpstreamUnavailable, match=r"GET /pets failed"):
        call(transports(Upstream(reply))["listPets"])


def test_responses_over_the_size_limit_fail() -> None:
    settings = OpenApiSettings(max_response_bytes=100)
    ops = transports(Upstream(lambda request: httpx.Response(200, content=b"x" * 101)), settings=settings)
    with pytest.raises(InvalidRequest, match="more than the limit of 100"):
        call(ops["listPets"])
    ok = transports(Upstream(lambda request: httpx.Response(200, json="y" * 50)), settings=settings)
    assert call(ok["listPets"]) == "y" * 50


def test_a_relative_server_url_needs_a_base_url() -> None:
    document = {"openapi": "3.0.0", "servers": [{"url": "/api"}], "paths": {"/x": {"get": {"operationId": "op"}}}}
    [tool] = openapi_tools(document)
    transport = OpenApiTransport(OpenApiClient(guard=SsrfGuard()), tool.binding)
    with pytest.raises(NotConfigured, match="set the source's base_url"):
        call(transport)


def test_a_missing_path_argument_is_an_argument_error() -> None:
    with pytest.raises(ToolArgumentsInvalid, match="petId"):
        call(transports(Upstream())["getPet"])


def test_calls_to_a_private_server_are_refused_by_the_guard() -> None:
    upstream = Upstream()
    guard = SsrfGuard(NetworkPolicy(), resolver=table_resolver({"pets.example": ["10.0.0.8"]}))
    client = OpenApiClient(guard=guard, http_transport=upstream)
    [tool] = [t for t in openapi_tools(pets_document("https://pets.example")) if t.spec.name == "listPets"]
    with pytest.raises(InvalidRequest, match=r"pets\.example \(10\.0\.0\.8\)"):
        call(OpenApiTransport(client, tool.binding))
    assert upstream.requests == []


def test_through_the_executor_errors_become_results_with_retryability() -> None:
    routes = {"/api/pets": httpx.Response(200, json=[{"id": 1}]), "/api/broken": httpx.Response(500, text="boom")}

    def reply(request: httpx.Request) -> httpx.Response:
        return routes.get(request.url.path, httpx.Response(404, json={"error": "nope"}))

    upstream = Upstream(reply)
    catalog = Catalog([Tool(tool.spec, transports(upstream)[tool.spec.name])
                       for tool in openapi_tools(pets_document("https://pets.example"))])
    executor = ToolExecutor(catalog)

    def run(tool: str, **args: Any) -> Any:
        return asyncio.run(executor.execute(ToolCall(run_id="r", step_id="s", tool=tool, args=args)))

    assert run("listPets").value == [{"id": 1}]
    broken = run("broken")
    assert (broken.ok, broken.error.code, broken.error.retryable) == (False, "upstream_unavailable", True)
    missing = run("getPet", petId=9)
    assert (missing.ok, missing.error.code, missing.error.retryable) == (False, "invalid_request", False)
    invalid = run("getPet", petId="nine")
    assert invalid.error.code == "tool_arguments_invalid"
    assert len(upstream.requests) == 3  # the invalid call never left the process
