"""Issue 14's "errors that are not the API's": each case answers a 4xx with the JSON error body, never a 5xx."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

import psutil
import pytest

from tests.support import DevhostProcess
from tests.support import http as call

PLAN = {"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1 + 1"}}]}}


def raw(host: DevhostProcess, method: str, path: str, body: bytes | None = None,
        content_type: str | None = "application/json", headers: dict[str, Any] | None = None) -> tuple[int, str, Any]:
    headers = {**({"Content-Type": content_type} if content_type and body is not None else {}), **(headers or {})}
    req = urllib.request.Request(host.base_url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, data, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, data, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, ctype, json.loads(data) if data else None


def assert_json_error(answer: tuple[int, str, Any], status: int | tuple[int, ...], field: str | None = "") -> None:
    code, ctype, body = answer
    assert code in ((status,) if isinstance(status, int) else status), answer
    assert ctype.startswith("application/json"), answer
    assert set(body) == {"code", "message", "field"}, body
    if field != "":
        assert body["field"] == field, body


DEEP = b"[" * 10_000 + b"]" * 10_000


@pytest.mark.parametrize("path", ["/api/tools/search", "/api/tools/sources", "/api/runs/run-x/approve", "/api/runs"])
def test_json_nested_10000_deep(api_host: DevhostProcess, path: str) -> None:
    assert_json_error(raw(api_host, "POST", path, DEEP), 400, "body")


@pytest.mark.parametrize("run_id", ["..", "%2E%2E", "%23", "%3F", "a%2Fb", "x%0Ay", "x%0A", "%2E", "."])
def test_run_ids_that_cannot_name_a_run(api_host: DevhostProcess, run_id: str) -> None:
    calls = (("GET", "", None), ("POST", "/cancel", None), ("POST", "/approve", b'{"approved": true}'))
    for method, suffix, body in calls:
        code, ctype, answer = raw(api_host, method, f"/api/runs/{run_id}{suffix}", body)
        assert code < 500 and ctype.startswith("application/json"), (run_id, method, code, answer)
        if code >= 400:
            assert set(answer) == {"code", "message", "field"}
        else:  # '.' and '%2E' are dot segments: /api/runs/. is /api/runs, as on the Functions host
            assert method == "GET" and "runs" in answer


@pytest.mark.parametrize("limit", ["%C2%B2", "9" * 3000, "0", "101", "-1", "1e2", "%EF%BC%95"])
def test_limit_must_be_a_small_ascii_integer(api_host: DevhostProcess, limit: str) -> None:
    assert_json_error(raw(api_host, "GET", f"/api/runs?limit={limit}"), 400, "limit")


def test_a_5000_digit_limit_is_a_json_414(api_host: DevhostProcess) -> None:
    assert_json_error(raw(api_host, "GET", "/api/runs?limit=" + "9" * 5000), 414)


@pytest.mark.parametrize("path, body", [("/api/runs", json.dumps(PLAN).encode()),
                                        ("/api/tools/search", b'{"query": "convert"}'),
                                        ("/api/tools/sources", b'{"type": "openapi", "path": "x.json"}'),
                                        ("/api/runs/run-x/approve", b'{"approved": true}')])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_must_be_declared_json(api_host: DevhostProcess, path: str, body: bytes, content_type: str) -> None:
    assert_json_error(raw(api_host, "POST", path, body, content_type), 415, "Content-Type")


def test_json_with_charset_or_no_content_type_is_read(api_host: DevhostProcess) -> None:
    query = b'{"query": "convert"}'
    assert raw(api_host, "POST", "/api/tools/search", query, "application/json; charset=utf-8")[0] == 200
    connection = http.client.HTTPConnection("127.0.0.1", api_host.port, timeout=30)
    connection.request("POST", "/api/tools/search", body=b'{"query": "convert"}')  # no Content-Type at all
    assert connection.getresponse().status == 200
    connection.close()


@pytest.mark.parametrize("options, field", [(b'{"timeout_s": Infinity}', "options.timeout_s"),
                                            (b'{"timeout_s": NaN}', "options.timeout_s"),
                                            (b'{"timeout_s": 1e400}', "options.timeout_s"),
                                            (b'{"max_parallel": ' + b"9" * 4000 + b"}", "options.max_parallel")])
def test_numbers_are_finite_and_bounded(api_host: DevhostProcess, options: bytes, field: str) -> None:
    body = json.dumps(PLAN).encode()[:-1] + b', "options": ' + options + b"}"
    code, _, answer = raw(api_host, "POST", "/api/runs", body)
    assert code == 400, answer
    assert answer["field"] in (field, "body"), answer


@pytest.mark.parametrize("options, field", [({"max_parallel": "3"}, "options.max_parallel"),
                                            ({"max_parallel": True}, "options.max_parallel"),
                                            ({"fail_fast": "yes"}, "options.fail_fast"),
                                            ({"timeout_s": "60"}, "options.timeout_s")],
                         ids=["int-from-string", "int-from-bool", "bool-from-string", "number-from-string"])
def test_options_of_the_wrong_json_type_are_400_not_converted(api_host: DevhostProcess, options: dict[str, Any],
                                                              field: str) -> None:
    answer = raw(api_host, "POST", "/api/runs", json.dumps({**PLAN, "options": options}).encode())
    assert_json_error(answer, 400, field)


def test_options_of_the_right_json_type_are_accepted(api_host: DevhostProcess) -> None:
    options = {"max_parallel": 3, "fail_fast": True, "timeout_s": 60}
    code, _, answer = raw(api_host, "POST", "/api/runs", json.dumps({**PLAN, "options": options}).encode())
    assert code == 202, answer


def test_a_50mb_url_is_refused_unread_and_never_echoed(api_host: DevhostProcess) -> None:
    worker = psutil.Process(api_host.process.pid)  # type: ignore[union-attr]
    before = worker.memory_info().rss
    body = json.dumps({"type": "openapi", "url": "https://x.example/" + "a" * (50 * 1024 * 1024)}).encode()
    for _ in range(3):
        code, ctype, answer = raw(api_host, "POST", "/api/tools/sources", body)
        assert code == 413 and ctype.startswith("application/json"), code
        assert len(json.dumps(answer)) < 500 and "aaaa" not in answer["message"]
    grown = worker.memory_info().rss - before
    assert grown < 200 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB over three 50 MB requests"


def test_a_long_url_in_a_small_body_is_not_echoed(api_host: DevhostProcess) -> None:
    code, _, answer = raw(api_host, "POST", "/api/tools/sources",
                          json.dumps({"type": "openapi", "url": "https://x.example/" + "a" * 100_000}).encode())
    assert code == 400 and answer["field"].endswith("url") and len(answer["message"]) < 300, answer


@pytest.mark.parametrize("method, path", [("GET", "/api/nope"), ("DELETE", "/api/runs"), ("PUT", "/api/tools/search"),
                                          ("GET", "/api/tools/a%2Fb/c"), ("GET", "/api/runs/x%0A/y")])
def test_host_errors_are_json(api_host: DevhostProcess, method: str, path: str) -> None:
    assert_json_error(raw(api_host, method, path), (404, 405))


def test_openapi_is_served_anonymously_with_this_host_as_server(api_host: DevhostProcess) -> None:
    status, headers, document = call("GET", api_host.base_url + "/api/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert document["openapi"] == "3.1.0" and document["servers"] == [{"url": api_host.base_url}]


CODE_RUN = b'{"mode": "code", "code": "result = 1"}'


@pytest.mark.parametrize("key", [b"\xff\xfe", "ä".encode(), b"../../x", b"a b", b"k" * 101],
                         ids=["not-utf8", "non-ascii", "path", "space", "too-long"])
def test_an_idempotency_key_header_must_match_the_keys_pattern(api_host: DevhostProcess, key: bytes) -> None:
    answer = raw(api_host, "POST", "/api/runs", CODE_RUN, headers={"Idempotency-Key": key})
    assert_json_error(answer, 400, "Idempotency-Key")
    assert key.decode("latin-1") not in answer[2]["message"]


def test_the_header_and_the_body_name_one_idempotency_key(api_host: DevhostProcess) -> None:
    keyed = json.dumps({"mode": "code", "code": "result = 1", "idempotency_key": "body-key-1"}).encode()
    assert raw(api_host, "POST", "/api/runs", keyed)[0] == 202
    answer = raw(api_host, "POST", "/api/runs", keyed, headers={"Idempotency-Key": "header-key-1"})
    assert_json_error(answer, 400, "Idempotency-Key")
    same = raw(api_host, "POST", "/api/runs", keyed, headers={"Idempotency-Key": "body-key-1"})
    assert same[0] == 200 and same[2]["id"] == "run-body-key-1", same


@pytest.mark.parametrize("path, body", [
    ("/api/tools/search", b'{"query": "x\\ud800"}'),
    ("/api/tools/search", b'{"query": "x", "\\udc00": 1}'),
    ("/api/tools/search", b'{"query": "x\xed\xa0\x80"}'),
    ("/api/tools/sources", b'{"type": "openapi", "url": "https://x.example/\\ud800"}'),
    ("/api/runs/run-x/approve", b'{"approved": true, "reason": "\\ud800"}'),
    ("/api/runs", b'{"mode": "code", "code": "result = \'\\ud800\'"}'),
], ids=["search-query", "search-key", "search-raw-bytes", "sources", "approve", "runs"])
def test_a_lone_surrogate_is_a_400(api_host: DevhostProcess, path: str, body: bytes) -> None:
    assert_json_error(raw(api_host, "POST", path, body), 400)


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/tools/" + "z" * 3000, None),
    ("POST", "/api/tools/search", json.dumps({"query": "x", "z" * 3000: 1}).encode()),
    ("POST", "/api/tools/search", json.dumps({"query": "x", "filters": {"z" * 3000: 1}}).encode()),
    ("POST", "/api/runs", json.dumps({"mode": "code", "code": "result = 1", "z" * 3000: 1}).encode()),
    ("POST", "/api/runs", json.dumps({**PLAN, "plan": {"steps": [{"id": "a", "tool": "calculate",
                                                                  "args": {"z" * 3000: 1}}]}}).encode()),
    ("POST", "/api/runs", json.dumps({**PLAN, "plan": {"steps": [{"id": "a", "tool": "calculate",
                                                                  "args": {"expression": ["z" * 3000]}}]}}).encode()),
    ("POST", "/api/runs", json.dumps({**PLAN, "plan": {"steps": [{"id": "a", "tool": "calculate",
                                                                  "args": {"expression": {"$ref": "z" * 3000}}}]}}
                                     ).encode()),
    ("POST", "/api/runs/run-x/approve", json.dumps({"approved": True, "z" * 3000: 1}).encode()),
], ids=["tool-name", "search-field", "search-filter", "run-field", "tool-argument", "argument-value", "ref",
       "approve-field"])
def test_an_error_quotes_a_short_prefix_of_the_input(api_host: DevhostProcess, method: str, path: str,
                                                     body: bytes | None) -> None:
    code, _, answer = raw(api_host, method, path, body)
    assert 400 <= code < 500 and "z" * 61 not in json.dumps(answer), answer
    assert "z" * 20 in answer["message"], "the error still says what it refers to"
