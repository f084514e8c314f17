"""The walkthroughs in docs/walkthroughs/ run as written: their files are written, their servers started, their
commands must succeed (ports 7071 and 8765 are swapped for free ones)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, wait_port

BLOCK = re.compile(r"^```(\w+)(?: (file=\S+|server))?\n(.*?)^```", re.S | re.M)
PAGES = sorted((ROOT / "docs" / "walkthroughs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_walkthrough_runs_as_written(page: Path, tmp_path: Path) -> None:
    ports = {"7071": str(free_port()), "8765": str(free_port())}

    def swap(text: str) -> str:
        for old, new in ports.items():
            text = text.replace(old, new)
        return text

    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "DEVHOST_", "WEFT_"))}
    env.update(WEFT=str(ROOT), WEFT_URL=f"http://127.0.0.1:{ports['7071']}", AzureWebJobsStorage="",
               WEFT_STATE_DIR=str(tmp_path / "state"), COLUMNS="160", NO_COLOR="1")
    servers: list[subprocess.Popen[bytes]] = []
    commands: list[str] = []
    try:
        for lang, tag, body in blocks:
            if tag.startswith("file="):
                target = tmp_path / tag.removeprefix("file=")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(swap(body), encoding="utf-8")
            elif tag == "server":
                log = open(tmp_path / f"server{len(servers)}.log", "wb")  # noqa: SIM115 - lives with the process
                servers.append(subprocess.Popen(["bash", "-c", swap(body.strip())], cwd=tmp_path, env=env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            elif lang == "bash":
                commands.append("set -e\n" + body)  # one block, one script
        assert servers and commands, "a walkthrough starts a server and runs commands"
        for port in ports.values():
            if any(port in swap(b) for _, tag, b in blocks if tag == "server") or any(
                    port in (tmp_path / f).read_text() for f in ["quotes_api.py"] if (tmp_path / f).exists()):
                wait_port(int(port), 90, None)
        for command in commands:
            done = subprocess.run(["bash", "-c", swap(command)], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=180, check=False)
            logs = "".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("server*.log"))
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}\n{logs}"
    finally:
        for server in servers:  # each server is the leader of its own process group: stop the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
