"""The client and the ``weft`` CLI against a devhost: a 20-step run followed live to completion, runs listed and
read, tools searched; every real answer conforms to the OpenAPI document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import schemathesis

from tests.support import ROOT, DevhostProcess
from weftclient import ApiError, WeftClient


def chain_plan(length: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "s0", "tool": "convert_units",
                                    "args": {"value": 1, "from_unit": "mi", "to_unit": "km"}}]
    for i in range(1, length):
        km_to_mi = i % 2 == 1
        steps.append({"id": f"s{i}", "tool": "convert_units",
                      "args": {"value": {"$ref": f"s{i - 1}.result"}, "from_unit": "km" if km_to_mi else "mi",
                               "to_unit": "mi" if km_to_mi else "km"}})
    return {"mode": "plan", "plan": {"steps": steps}}


def weft(host: DevhostProcess, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WEFT_URL=host.base_url, PYTHONPATH=str(ROOT), COLUMNS="160", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "weftclient", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_cli_follows_a_20_step_run_to_completion(api_host: DevhostProcess, tmp_path: Path) -> None:
    plan = tmp_path / "plan20.json"
    plan.write_text(json.dumps(chain_plan(20)))
    done = weft(api_host, "run", str(plan), "--follow", "--idempotency-key", "cli-twenty")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run run-cli-twenty: completed" in done.stdout and "20/20 steps" in done.stdout
    assert done.stdout.count("succeeded") >= 20

    got = weft(api_host, "runs", "get", "run-cli-twenty", "--json")
    view = json.loads(got.stdout)
    assert view["status"] == "completed" and len(view["result"]["steps"]) == 20
    assert abs(view["result"]["steps"][-1]["result"]["result"] - 1.0) < 1e-9  # 1 mi there and back, ten times

    listed = weft(api_host, "runs", "ls", "--limit", "5")
    assert listed.returncode == 0 and "run-cli-twenty" in listed.stdout

    found = weft(api_host, "tools", "search", "convert miles to kilometers", "--k", "3")
    assert found.returncode == 0 and "convert_units" in found.stdout

    missing = weft(api_host, "runs", "get", "run-nope")
    assert missing.returncode == 2 and "404 not_found" in missing.stdout, missing.stdout


def test_client_calls_and_real_answers_conform_to_the_document(api_host: DevhostProcess) -> None:
    schema = schemathesis.openapi.from_url(api_host.base_url + "/api/openapi.json")
    seen: list[httpx.Response] = []

    def record(response: httpx.Response) -> None:
        response.read()
        seen.append(response)

    with WeftClient(api_host.base_url) as client:
        client._http.event_hooks["response"].append(record)
        links = client.start_run(chain_plan(3))
        final = client.follow(links.id, timeout_s=60)
        assert final.status == "completed" and final.result is not None and len(final.result.steps) == 3
        assert client.step_result(links.id, "s2")["result"] == 1.609344
        page = client.list_runs(limit=1)
        assert page.runs[0].id == links.id and page.continuation is not None
        assert client.list_runs(limit=1, continuation=page.continuation).runs[0].id != links.id
        assert client.get_tool("convert_units").name == "convert_units"
        assert client.search_tools("convert units", k=2).results
        assert client.list_tools().count >= 10
        for call in (lambda: client.get_run("run-missing"), lambda: client.cancel(links.id),
                     lambda: client.approve(links.id), lambda: client.get_tool("nope")):
            try:
                call()
            except ApiError as exc:
                assert 400 <= exc.status < 500 and exc.code
            else:
                raise AssertionError("expected an error answer")
    assert len(seen) >= 10
    for response in seen:
        path = response.request.url.path
        operation = schema.find_operation_by_path(response.request.method, path)
        assert operation is not None, path
        operation.validate_response(response)
