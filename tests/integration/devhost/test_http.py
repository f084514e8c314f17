"""The app's HTTP functions and the Durable HTTP API, served by a devhost process."""

from __future__ import annotations

import re
import time

import pytest

from tests.support import DevhostProcess, http


def poll(url: str, timeout: float = 20.0) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http("GET", url)
        if body and body.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
            return status, body
        time.sleep(0.05)
    raise TimeoutError(url)


@pytest.mark.parametrize(
    ("method", "path", "expected_status", "expected_route"),
    [
        pytest.param("GET", "/api/echo/42/a/b/c?x=1", 200, {"id": "42", "rest": "a/b/c"}, id="catch-all"),
        pytest.param("PUT", "/api/echo/7/only", 201, {"id": "7", "rest": "only"}, id="put-status"),
        pytest.param("GET", "/api/echo/7", 200, {"id": "7"}, id="empty-catch-all"),
    ],
)
def test_route_binding(devhost: DevhostProcess, method: str, path: str, expected_status: int,
                       expected_route: dict) -> None:
    status, headers, body = http(method, devhost.base_url + path, body=b"payload" if method == "PUT" else None,
                                 headers={"x-test": "hello"})
    assert status == expected_status
    assert headers.get("x-echo") == "yes"
    assert body["method"] == method
    assert body["route"] == expected_route
    assert body["header"] == "hello"
    if "?x=1" in path:
        assert body["query"] == {"x": "1"}
    if method == "PUT":
        assert body["body"] == "payload"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param("GET", "/api/echo/notanint/x", 404, id="int-constraint"),
        pytest.param("POST", "/api/echo/1/x", 405, id="method-not-allowed"),
        pytest.param("GET", "/api/nothing-here", 404, id="unknown-route"),
        pytest.param("GET", "/api/boom", 500, id="function-raises"),
        pytest.param("GET", "/api/teapot", 418, id="status-code"),
    ],
)
def test_route_status_codes(devhost: DevhostProcess, method: str, path: str, expected: int) -> None:
    status, _, _ = http(method, devhost.base_url + path)
    assert status == expected


def test_http_starter_returns_check_status_response(devhost: DevhostProcess) -> None:
    status, headers, body = http("POST", devhost.base_url + "/api/start/fan_out", {"n": 20})
    assert status == 202
    assert headers["Location"] == body["statusQueryGetUri"]
    assert set(body) >= {"id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri"}
    code, final = poll(body["statusQueryGetUri"])
    assert code == 200
    assert final["output"] == sum(i * i for i in range(20))
    assert final["input"] == {"n": 20}


def test_wait_for_completion_returns_the_output(devhost: DevhostProcess) -> None:
    status, _, body = http("POST", devhost.base_url + "/api/startwait/sequence")
    assert status == 200
    assert body == [4, 16, 9]


def test_public_webhook_api(devhost: DevhostProcess) -> None:
    hook = devhost.base_url + "/runtime/webhooks/durabletask"
    status, _, body = http("POST", hook + "/orchestrators/two_events/hook-1", {"x": 1})
    assert status == 202 and body["id"] == "hook-1"
    assert http("POST", hook + "/instances/hook-1/raiseEvent/First", "one")[0] == 202
    assert http("POST", hook + "/instances/hook-1/raiseEvent/Second", {"two": 2})[0] == 202
    code, final = poll(hook + "/instances/hook-1")
    assert code == 200 and final["output"] == ["one", {"two": 2}]
    assert http("POST", hook + "/instances/hook-1/raiseEvent/First", 1)[0] == 410
    assert http("POST", hook + "/instances/missing/raiseEvent/First", 1)[0] == 404
    listed = http("GET", hook + "/instances?runtimeStatus=Completed&instanceIdPrefix=hook-")[2]
    assert [i["instanceId"] for i in listed] == ["hook-1"]
    assert http("DELETE", hook + "/instances/hook-1")[2] == {"instancesDeleted": 1}
    assert http("GET", hook + "/instances/hook-1")[0] == 404


def test_failed_instance_reports_400_and_the_error(devhost: DevhostProcess) -> None:
    hook = devhost.base_url + "/runtime/webhooks/durabletask"
    body = http("POST", hook + "/orchestrators/crashes", "bad things")[2]
    code, final = poll(body["statusQueryGetUri"])
    assert code == 400
    assert final["runtimeStatus"] == "Failed" and final["output"] == "bad things"


def test_unknown_orchestrator_is_a_400(devhost: DevhostProcess) -> None:
    status, _, body = http("POST", devhost.base_url + "/runtime/webhooks/durabletask/orchestrators/nope")
    assert status == 400
    assert "doesn't exist" in body["ExceptionMessage"]


TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


def test_an_http_function_with_a_context_continues_the_callers_trace(devhost: DevhostProcess) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, _, body = http("GET", devhost.base_url + "/api/trace", headers={"traceparent": caller, "tracestate": "k=v"})
    match = TRACEPARENT.fullmatch(body["traceparent"])
    assert match is not None and match[1] == "0af7651916cd43dd8448eb211c80319c"
    assert match[2] != "b7ad6b7169203331", "a span of its own in the caller's trace"
    assert body["tracestate"] == "k=v"
    _, _, fresh = http("GET", devhost.base_url + "/api/trace", headers={"traceparent": "not-a-traceparent"})
    assert TRACEPARENT.fullmatch(fresh["traceparent"]) and fresh["tracestate"] == ""


def test_each_activity_invocation_gets_a_trace_of_its_own(devhost: DevhostProcess) -> None:
    status, _, parents = http("POST", devhost.base_url + "/api/startwait/traced")
    assert status == 200
    matches = [TRACEPARENT.fullmatch(parent) for parent in parents]
    assert all(matches) and matches[0][1] != matches[1][1]
