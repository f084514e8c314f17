"""Every error the devhost's HTTP layer produces is the JSON error body ``{code, message, field}``."""

from __future__ import annotations

import json
import re
import socket

import pytest

from tests.support import DevhostProcess, http


def assert_error_body(body: object, code: str) -> None:
    assert isinstance(body, dict) and set(body) == {"code", "message", "field"}, body
    assert body["code"] == code and body["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/api/nothing-here", 404, "not_found", id="unknown-route"),
        pytest.param("GET", "/nothing-at-all", 404, "not_found", id="outside-the-route-prefix"),
        pytest.param("GET", "/api/echo/notanint/x", 404, "not_found", id="constraint-fails"),
        pytest.param("GET", "/api/teapot%2Fmore", 404, "not_found", id="encoded-slash-is-not-a-separator"),
        pytest.param("GET", "/api/teapot%0A", 404, "not_found", id="newline"),
        pytest.param("GET", "/api/%FF", 400, "invalid_request", id="path-not-utf8"),
        pytest.param("GET", "/api/boom", 500, "internal_error", id="function-raises"),
        pytest.param("GET", "/runtime/webhooks/durabletask/instances/missing", 404, "not_found", id="no-instance"),
        pytest.param("POST", "/admin/functions/nope", 404, "not_found", id="admin-unknown-function"),
    ],
)
def test_errors_are_json(devhost: DevhostProcess, method: str, path: str, status: int, code: str) -> None:
    got, headers, body = http(method, devhost.base_url + path)
    assert got == status
    assert headers["Content-Type"].startswith("application/json")
    assert_error_body(body, code)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("POST", "/api/echo/1/x", "GET, PUT", id="app-route"),
        pytest.param("DELETE", "/api/teapot", "GET", id="app-route-single-method"),
        pytest.param("PATCH", "/runtime/webhooks/durabletask/instances/x", "DELETE, GET, HEAD", id="durable-api"),
        pytest.param("GET", "/runtime/webhooks/mcp", "POST", id="mcp-endpoint"),
    ],
)
def test_wrong_method_is_405_with_allow(devhost: DevhostProcess, method: str, path: str, allow: str) -> None:
    status, headers, body = http(method, devhost.base_url + path)
    assert status == 405
    assert headers["Allow"] == allow
    assert_error_body(body, "method_not_allowed")


def raw_request(port: int, data: bytes) -> tuple[int, str]:
    """Send bytes as they are (no client-side validation); return the status and the body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is not None and len(body) >= int(length[1]):
                    break
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return int(head.split()[1]), body.decode()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(b"GET /api/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414,
                     "uri_too_long", id="url-over-the-limit"),
        pytest.param(b"GET /api/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414,
                     "uri_too_long", id="url-over-the-parser-limit"),
        pytest.param(b"GET /api/teapot HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431,
                     "headers_too_large", id="header-too-long"),
        pytest.param(b"PUT /api/echo/1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\nConnection: close"
                     b"\r\n\r\n", 413, "payload_too_large", id="declared-body-too-large"),
        pytest.param(b"GET /api/teapot HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "invalid_request",
                     id="malformed-header"),
        pytest.param(b"NOT-HTTP\r\n\r\n", 400, "invalid_request", id="not-http"),
    ],
)
def test_protocol_errors_are_json(devhost: DevhostProcess, request_bytes: bytes, status: int, code: str) -> None:
    got, body = raw_request(devhost.port, request_bytes)
    assert got == status
    assert_error_body(json.loads(body), code)


@pytest.mark.parametrize(
    ("path", "expected_rest"),
    [
        pytest.param("/api/echo/1/a%2Fb", "a%2Fb", id="encoded-slash-stays-encoded"),
        pytest.param("/api/echo/1/a%20b/c", "a b/c", id="decoded"),
        pytest.param("/api/echo/1/x/%2E%2E/y", "y", id="encoded-dot-dot-climbs"),
        pytest.param("/api/echo/1/x/./y", "x/y", id="dot-removed"),
        pytest.param("/api/echo/1/a%0Ab", "a\nb", id="newline-reaches-the-function"),
    ],
)
def test_route_parameters_are_decoded_like_the_host(devhost: DevhostProcess, path: str, expected_rest: str) -> None:
    status, _, body = http("GET", devhost.base_url + path)
    assert status == 200, body
    assert body["route"]["rest"] == expected_rest


def test_a_body_over_the_limit_sent_chunked_is_413_json(tmp_path) -> None:
    from tests.integration.devhost.conftest import TEST_APP
    from tests.support import devhost_env, free_port

    env = devhost_env({"AzureWebJobsStorage": "", "DEVHOST_MAX_BODY_BYTES": "1024"})
    proc = DevhostProcess(TEST_APP, tmp_path / "s.sqlite", free_port(), env).start()
    try:
        chunk = b"x" * 4096
        data = (b"PUT /api/echo/1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
        status, body = raw_request(proc.port, data)
        assert status == 413
        assert_error_body(json.loads(body), "payload_too_large")
        assert http("PUT", proc.base_url + "/api/echo/1/x", body=b"small")[0] == 201
    finally:
        proc.stop()
