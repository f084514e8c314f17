"""Approvals cannot be walked around: code that reaches a ``requires_approval`` tool any way it can never runs it
without a human's approval of that call — in replay and inline mode. The tool appends to an outbox file, so the
test counts real executions from outside the app; each program is denied (nothing may run), and one is approved (it
runs exactly once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runs.conftest import weft_env
from tests.support import ROOT, DevhostProcess, free_port, http, wait_until

SEND = "to='ops@example.com', subject='report'"
WAYS = {
    "direct": f"result = await send_email({SEND})",
    "alias": f"mail = send_email\nresult = await mail({SEND})",
    "dict-of-tools": f"tools = {{'m': send_email}}\nresult = await tools['m']({SEND})",
    "string-built-name": "name = 'send' + '_' + 'email'\nfns = {'send_email': send_email, 'calculate': calculate}\n"
                         f"result = await fns[name]({SEND})",
    "decorator": "def logged(f):\n    async def inner(*a, **k):\n        return await f(*a, **k)\n    return inner\n"
                 f"@logged\nasync def notify():\n    return await send_email({SEND})\nresult = await notify()",
    "callback": f"async def later(cb):\n    return await cb({SEND})\nresult = await later(send_email)",
    "functools-partial": "import functools\np = functools.partial(send_email, to='ops@example.com')\n"
                         "result = await p(subject='report')",
    "singledispatch": "import functools\n@functools.singledispatch\ndef pick(x):\n    return send_email\n"
                      f"result = await pick(1)({SEND})",
    "gather": f"import asyncio\nr = await asyncio.gather(calculate('1+1'), send_email({SEND}))\nresult = r[1]",
    "create-task": f"import asyncio\nt = asyncio.create_task(send_email({SEND}))\nresult = await t",
    "wait-for": f"import asyncio\nresult = await asyncio.wait_for(send_email({SEND}), 5)",
    "map-lambda": "calls = list(map(lambda kw: send_email(**kw), [{'to': 'ops@example.com', 'subject': 'r'}]))\n"
                  "result = await calls[0]",
    "class-method": f"class Mailer:\n    async def go(self):\n        return await send_email({SEND})\n"
                    "result = await Mailer().go()",
    "after-other-calls": f"a = await calculate('2*3')\nb = await calculate('4*5')\nresult = await send_email({SEND})",
    "exception-swallowed": f"try:\n    result = await send_email({SEND})\nexcept Exception as e:\n    result = str(e)\n"
                           f"try:\n    result = await send_email({SEND})\nexcept Exception as e:\n    result = str(e)",
}


POLICY_REFUSED: set[str] = set()
"""Ways the sandbox policy refuses before any tool is reached (every other way must get as far as the approval)."""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("bypass")
    env = weft_env(None, state, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(state / "outbox.jsonl"), WEFT_APPROVAL_TIMEOUT_S="120")
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    proc.outbox = state / "outbox.jsonl"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def sent(host: DevhostProcess) -> int:
    outbox: Path = host.outbox  # type: ignore[attr-defined]
    return len(outbox.read_text().splitlines()) if outbox.exists() else 0


def run(host: DevhostProcess, code: str, execution: str) -> str:
    body = {"mode": "code", "code": code, "tools": ["send_email", "calculate"],
            "options": {"code_execution": execution}}
    status, _, reply = http("POST", host.base_url + "/api/runs", body)
    assert status == 202, reply
    return reply["id"]


def settle(host: DevhostProcess, run_id: str) -> dict[str, Any]:
    """The run once it finished or waits for an approval."""
    def probe() -> dict[str, Any] | None:
        status, _, view = http("GET", f"{host.base_url}/api/runs/{run_id}")
        return view if status == 200 or view.get("stage") == "awaiting_approval" else None

    return wait_until(probe, 90, f"run {run_id} to finish or wait for approval")


@pytest.mark.parametrize("execution", ["replay", "inline"])
@pytest.mark.parametrize("way", sorted(WAYS))
def test_no_way_runs_the_tool_without_an_approval_of_that_call(host: DevhostProcess, way: str,
                                                                execution: str) -> None:
    before = sent(host)
    run_id = run(host, WAYS[way], execution)
    view = settle(host, run_id)
    assert sent(host) == before, f"{way} ({execution}) ran send_email without an approval"
    if view.get("stage") == "awaiting_approval":
        (pending, *_) = view["awaiting_approval"]["calls"]
        assert pending["tool"] == "send_email" and "ops@example.com" in pending["args_preview"]
        status, _, _ = http("POST", f"{host.base_url}/api/runs/{run_id}/approve",
                            {"approved": False, "reason": "not this one"})
        assert status == 202
        view = wait_until(lambda: (r := http("GET", f"{host.base_url}/api/runs/{run_id}"))[0] == 200 and r[2], 60,
                          "the denied run to end")
        assert view["status"] == "failed" and view["errors"][0]["code"] == "approval_denied"
    else:  # the sandbox policy refused the program before the tool could be reached
        assert view["status"] == "failed" and way in POLICY_REFUSED, (way, execution, view["errors"])
    assert sent(host) == before, f"{way} ({execution}) ran send_email after a denial"


@pytest.mark.parametrize("execution", ["replay", "inline"])
def test_an_approved_call_runs_once_and_earlier_calls_are_not_repeated(host: DevhostProcess, execution: str) -> None:
    before = sent(host)
    run_id = run(host, WAYS["after-other-calls"], execution)
    view = settle(host, run_id)
    assert view["stage"] == "awaiting_approval" and sent(host) == before
    (pending,) = view["awaiting_approval"]["calls"]
    status, _, _ = http("POST", f"{host.base_url}/api/runs/{run_id}/approve",
                        {"approved": True, "call_ids": [pending["call_id"]]})
    assert status == 202
    done = wait_until(lambda: (r := http("GET", f"{host.base_url}/api/runs/{run_id}"))[0] == 200 and r[2], 60,
                      "the approved run to end")
    assert done["status"] == "completed", done
    assert sent(host) == before + 1
    steps = done["result"]["steps"]
    assert [s["tool"] for s in steps] == ["calculate", "calculate", "send_email"]
    assert all(s["attempts"] == 1 for s in steps)  # the calculations of an inline run were not run again
