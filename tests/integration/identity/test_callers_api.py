"""Callers and trust, end to end: Weft's app on two devhosts sharing Azurite, with bearer tokens from the loopback
OIDC issuer. Every token case is a 401 JSON; callers see, cancel and approve only their own runs (404 otherwise);
operators see all; approvals need Runs.Approve and someone other than the run's caller; the audit trail names who;
a caller's request rate is shared by both instances."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.oidc_issuer import FakeOidcIssuer
from tests.integration.runs.conftest import weft_env
from tests.support import ROOT, Azurite, DevhostProcess, free_port, http, wait_until

pytestmark = pytest.mark.azurite

PLAN = {"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "6*7"}}]}}
EMAIL = {"mode": "plan", "plan": {"steps": [
    {"id": "mail", "tool": "send_email", "args": {"to": "ops@example.com", "subject": "weekly report"}}]}}
LONG_POLL_S = 6
"""The ``?wait=`` of the long-poll test: well above a request's own time, so an answer at once is told apart."""


class Callers:
    """Tokens of fixed callers: A and B submit runs, an operator reads all, an approver approves."""

    def __init__(self, issuer: FakeOidcIssuer) -> None:
        self.issuer = issuer

    def token(self, who: str, roles: list[str]) -> str:
        oid = hashlib.sha256(who.encode()).hexdigest()[:32]
        return self.issuer.user_token(roles=roles, oid=oid, name=who)

    def headers(self, who: str) -> dict[str, str]:
        roles = {"alice": ["Runs.Submit"], "bob": ["Runs.Submit"], "olga": ["Runs.Submit", "Runs.ReadAll"],
                 "adam": ["Runs.Approve"], "alice-approver": ["Runs.Submit", "Runs.Approve"]}[who]
        return {"Authorization": f"Bearer {self.token(who, roles)}"}


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeOidcIssuer]:
    with FakeOidcIssuer() as server:
        yield server


@pytest.fixture(scope="module")
def callers(issuer: FakeOidcIssuer) -> Callers:
    return Callers(issuer)


@pytest.fixture(scope="module")
def hosts(azurite: Azurite, issuer: FakeOidcIssuer, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[list[DevhostProcess]]:
    """Two instances of the app: one storage account (run index, quotas, audit) but separate devhost stores, so
each instance runs (and reports the Durable status of) only its own runs: that is the devhost, not Azure."""
    shared_state = tmp_path_factory.mktemp("trust")
    started = []
    for name in ("one", "two"):
        state = shared_state / name
        state.mkdir()
        env = weft_env(azurite, shared_state, **issuer.environment,
                       WEFT_STATE_DIR=str(state), WEFT_PAYLOAD_DIR=str(state / "payloads"),
                       WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "approval_catalog.json"),
                       WEFT_APPROVAL_TIMEOUT_S="120")
        started.append(DevhostProcess(ROOT, Path(state) / "devhost.sqlite", free_port(), env).start())
    yield started
    for host in started:
        host.stop()


def call(host: DevhostProcess, method: str, path: str, headers: dict[str, str], body: Any = None
         ) -> tuple[int, dict[str, str], Any]:
    return http(method, host.base_url + path, body, headers=headers)


def finished(host: DevhostProcess, run_id: str, headers: dict[str, str]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status, _, body = call(host, "GET", f"/api/runs/{run_id}", headers)
        return body if status == 200 else None

    return wait_until(probe, 60, f"run {run_id} finished")


@pytest.mark.parametrize("case", [
    "missing", "expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "unknown-key", "alg-none",
    "hs256-public-key", "malformed", "not-bearer"])
def test_every_bad_credential_is_a_401_json_naming_the_reason(hosts: list[DevhostProcess], issuer: FakeOidcIssuer,
                                                                case: str) -> None:
    tokens = {
        "expired": issuer.expired_token, "not-yet-valid": issuer.not_yet_valid_token,
        "wrong-audience": issuer.wrong_audience_token, "wrong-issuer": issuer.wrong_issuer_token,
        "unknown-key": issuer.unknown_key_token, "alg-none": issuer.none_alg_token,
        "hs256-public-key": issuer.hs256_public_key_token, "malformed": issuer.malformed_token,
    }
    headers = {}
    if case == "not-bearer":
        headers = {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    elif case != "missing":
        headers = {"Authorization": f"Bearer {tokens[case]()}"}
    for path, method in (("/api/runs", "POST"), ("/api/runs", "GET"), ("/api/tools", "GET")):
        status, response_headers, body = call(hosts[0], method, path, headers, PLAN if method == "POST" else None)
        assert status == 401, (case, path, body)
        assert body["code"] == "unauthenticated" and body["message"] and "field" in body
        assert response_headers.get("WWW-Authenticate", "").startswith("Bearer")
        if case not in ("missing", "not-bearer"):
            assert headers["Authorization"].split()[1] not in body["message"]


def test_runs_belong_to_their_caller(hosts: list[DevhostProcess], callers: Callers) -> None:
    one, two = hosts
    alice, bob, olga = callers.headers("alice"), callers.headers("bob"), callers.headers("olga")
    status, _, started = call(one, "POST", "/api/runs", alice, PLAN)
    assert status == 202, started
    run_id = started["id"]
    assert finished(one, run_id, alice)["result"]["status"] == "completed"
    for host in hosts:
        assert call(host, "GET", f"/api/runs/{run_id}", bob)[0] == 404
        assert call(host, "POST", f"/api/runs/{run_id}/cancel", bob)[0] == 404
        assert call(host, "POST", f"/api/runs/{run_id}/approve", bob, {"approved": True})[0] == 403  # no role
        status, _, listed = call(host, "GET", "/api/runs?limit=100", bob)
        assert status == 200 and run_id not in {r["id"] for r in listed["runs"]}
        assert run_id in {r["id"] for r in call(host, "GET", "/api/runs?limit=100", alice)[2]["runs"]}
    status, _, seen = call(one, "GET", f"/api/runs/{run_id}", olga)
    assert status == 200 and seen["owner"] == "alice"
    status, _, everyone = call(two, "GET", "/api/runs?all=true&limit=100", olga)
    assert status == 200 and run_id in {r["id"] for r in everyone["runs"]}
    assert call(one, "GET", "/api/runs?all=true", alice)[0] == 403  # listing everyone's needs Runs.ReadAll


def test_a_submitter_gets_weft_links_never_the_durable_system_key(hosts: list[DevhostProcess],
                                                                  callers: Callers) -> None:
    # With the task hub's system key a caller could start any orchestrator input or raise its own approval event.
    status, headers, started = call(hosts[0], "POST", "/api/runs", callers.headers("alice"), PLAN)
    assert status == 202, started
    assert set(started) == {"id", "statusUrl", "cancelUrl"}
    assert "code=" not in json.dumps(started) and "code=" not in json.dumps(dict(headers))
    assert "/runtime/webhooks/" not in json.dumps(started)


def test_idempotency_keys_belong_to_their_caller(hosts: list[DevhostProcess], callers: Callers) -> None:
    alice, bob = callers.headers("alice"), callers.headers("bob")
    key = {"Idempotency-Key": "weekly-report-7"}
    status, _, first = call(hosts[0], "POST", "/api/runs", {**alice, **key}, PLAN)
    assert status == 202
    status, _, again = call(hosts[1], "POST", "/api/runs", {**alice, **key}, PLAN)
    assert status in (200, 202) and again["id"] == first["id"]  # the other store may start it (devhost only)
    status, _, other = call(hosts[1], "POST", "/api/runs", {**bob, **key}, PLAN)
    assert status == 202 and other["id"] != first["id"]  # B's key is B's own
    other_body = {**PLAN, "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1+1"}}]}}
    status, _, conflict = call(hosts[0], "POST", "/api/runs", {**alice, **key}, other_body)
    assert status == 409 and conflict["code"] == "conflict" and conflict["field"] == "Idempotency-Key"


def test_concurrent_identical_submissions_start_one_run(hosts: list[DevhostProcess], callers: Callers) -> None:
    headers = {**callers.headers("olga"), "Idempotency-Key": "burst-of-twenty"}

    def submit(i: int) -> tuple[int, Any]:
        status, _, body = call(hosts[i % 2], "POST", "/api/runs", headers, PLAN)
        return status, body

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(submit, range(20)))
    assert all(status in (200, 202) for status, _ in answers), answers
    assert len({body["id"] for _, body in answers}) == 1
    assert sum(status == 202 for status, _ in answers) == 1


def test_approvals_need_another_caller_with_runs_approve(hosts: list[DevhostProcess], callers: Callers) -> None:
    one = hosts[0]
    owner, approver = callers.headers("alice-approver"), callers.headers("adam")
    status, _, started = call(one, "POST", "/api/runs", owner, EMAIL)
    assert status == 202, started
    run_id = started["id"]

    def awaiting() -> bool:
        return call(one, "GET", f"/api/runs/{run_id}", owner)[2].get("stage") == "awaiting_approval"

    wait_until(awaiting, 60, "the run waiting for approval")
    status, _, refused = call(one, "POST", f"/api/runs/{run_id}/approve", owner, {"approved": True})
    assert status == 403 and "own" in refused["message"]
    status, _, seen = call(one, "GET", f"/api/runs/{run_id}", approver)
    assert status == 202 and seen["stage"] == "awaiting_approval"  # 202: still running
    status, _, decided = call(one, "POST", f"/api/runs/{run_id}/approve", approver, {"approved": True, "reason": "ok"})
    assert status == 202 and decided["approved"] is True
    assert finished(one, run_id, owner)["result"]["status"] == "completed"
    operator = callers.headers("olga")
    status, _, trail = call(one, "GET", f"/api/audit?run_id={run_id}", operator)
    assert status == 200, trail
    actions = {(r["action"], r["caller_name"]) for r in trail["records"]}
    assert ("run.submit", "alice-approver") in actions and ("run.approve", "adam") in actions
    assert call(one, "GET", f"/api/audit?run_id={run_id}", owner)[0] == 403


def test_a_call_named_many_times_is_decided_and_audited_once(hosts: list[DevhostProcess], callers: Callers) -> None:
    one = hosts[0]
    owner, approver, operator = callers.headers("alice-approver"), callers.headers("adam"), callers.headers("olga")
    status, _, started = call(one, "POST", "/api/runs", owner, EMAIL)
    assert status == 202, started
    run_id = started["id"]
    wait_until(lambda: call(one, "GET", f"/api/runs/{run_id}", owner)[2].get("stage") == "awaiting_approval", 60,
               "the run waiting for approval")
    status, _, refused = call(one, "POST", f"/api/runs/{run_id}/approve", approver,
                              {"approved": False, "reason": "x", "call_ids": ["mail"] * 1001})
    assert status == 400 and refused["field"] == "call_ids" and "1000" in refused["message"], refused
    status, _, decided = call(one, "POST", f"/api/runs/{run_id}/approve", approver,
                              {"approved": False, "reason": "x", "call_ids": ["mail"] * 1000})
    assert status == 202 and decided["call_ids"] == ["mail"], decided
    assert finished(one, run_id, owner)["result"]["status"] == "failed"
    status, _, trail = call(one, "GET", f"/api/audit?run_id={run_id}", operator)
    assert status == 200, trail
    assert [r["step_id"] for r in trail["records"] if r["action"] == "run.deny"] == ["mail"]


def test_an_approver_gets_no_long_poll_on_another_callers_run(hosts: list[DevhostProcess], callers: Callers
                                                              ) -> None:
    """An approver reads another caller's run only while it awaits a decision: a ``?wait=`` held open would tell
    the approver when the run changes, so it answers at once; the owner's waits (nothing changes while it awaits)."""
    one = hosts[0]
    owner, approver = callers.headers("alice-approver"), callers.headers("adam")
    status, _, started = call(one, "POST", "/api/runs", owner, EMAIL)
    assert status == 202, started
    run_id = started["id"]
    wait_until(lambda: call(one, "GET", f"/api/runs/{run_id}", owner)[2].get("stage") == "awaiting_approval", 60,
               "the run waiting for approval")

    def timed_wait(headers: dict[str, str], until: str = "") -> tuple[float, int, Any]:
        began = time.monotonic()
        status, _, body = call(one, "GET", f"/api/runs/{run_id}?wait={LONG_POLL_S}{until}", headers)
        return time.monotonic() - began, status, body

    for until in ("", "&until=end"):
        took, status, seen = timed_wait(approver, until)
        assert status == 202 and seen["stage"] == "awaiting_approval", seen
        assert took < LONG_POLL_S / 2, f"the approver's ?wait={LONG_POLL_S}{until} was held {took:.1f}s"
    took, status, seen = timed_wait(owner)
    assert status == 202 and seen["stage"] == "awaiting_approval", seen
    assert took >= LONG_POLL_S - 0.5, f"the owner's ?wait={LONG_POLL_S} answered after {took:.1f}s"
    status, _, _ = call(one, "POST", f"/api/runs/{run_id}/approve", approver, {"approved": False, "reason": "test"})
    assert status == 202
    finished(one, run_id, owner)


def test_the_request_rate_is_shared_by_every_instance(hosts: list[DevhostProcess], callers: Callers) -> None:
    """60 requests a minute by default: a fast burst across both instances is refused from the 61st request on
    (plus the tokens refilled while the burst lasted: one a second); another caller is unaffected."""
    limited = callers.headers("bob")
    started = time.monotonic()

    def one_request(i: int) -> tuple[int, dict[str, str]]:
        status, headers, _ = call(hosts[i % 2], "GET", "/api/tools", limited)
        return status, headers

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one_request, range(70)))
    elapsed = time.monotonic() - started
    ok = sum(status == 200 for status, _ in answers)
    refused = [headers for status, headers in answers if status == 429]
    # bob spent a few requests in earlier tests of this module; the bucket refills one token a second
    assert refused, f"no 429 in 70 requests ({ok} ok in {elapsed:.1f}s)"
    assert ok <= 60 + int(elapsed) + 1
    assert all(int(headers["Retry-After"]) >= 1 for headers in refused)
    assert call(hosts[1], "GET", "/api/tools", callers.headers("alice"))[0] == 200
