"""Completed 3-step plan runs per second on the devhost, from N concurrent HTTP clients (closed loop).

Run: python -m benchmarks.throughput [--clients 10 50] [--seconds 20] [--poll-ms 10] [--until change|end] [--url URL]
     python -m benchmarks.throughput --in-process [--calls 2000]

Each client submits ``POST /api/runs`` (a 3-step plan: two independent ``calculate`` steps and a third depending on
both), then polls ``GET /api/runs/{id}`` every ``--poll-ms`` until the run is finished (``--poll-ms 0``: long
polling with ``?wait=30``, as ``weftclient`` follows a run, woken at each change; with ``--until end`` only at
the run's end, as a client that wants the outcome waits), then submits the next. The
clients share one asyncio loop in this process (aiohttp, keep-alive connections), so the load generator costs little
of the machine's CPU. Prints, per client count: completed runs/s over the measured window (after a warm-up), p50/p95
submit->completed latency, the devhost's CPU seconds per run (its process and child processes), and
``/proc/loadavg`` before and after.
Without ``--url`` a devhost process (``python -m devhost serve``) is started on a temporary state directory, on one
CPU of a machine with several (``--devhost-cpus``, devhost ``--cpus``: ~20 % less CPU per run than with its threads
spread over both cores here; ``--devhost-cpus ''`` measures it unpinned), and
measured once ``GET /api/ready`` says ready: the tool search index is built at start-up on a background thread, and
that one-off CPU would otherwise fall in the first window.

``--in-process`` measures instead what Azure bills: the app's own CPU in the ``call_tool`` activity, called directly
in this process (no HTTP, no devhost, no Durable replay), for a pure tool (``calculate``) and a side-effecting one
(``note_put``: journalled before and after the call), with CPU ms per call (process time over ``--calls`` calls, after
a warm-up) and the wall-clock p50/p95; then the ``run`` orchestrator's CPU for the replays of one 3-step plan run
(:func:`replay_cpu`: the SDK's entry point and the app's code, over ``--replays`` rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import DevhostProcess, devhost_env, free_port  # noqa: E402

PLAN = {"steps": [
    {"id": "a", "tool": "calculate", "args": {"expression": "6*7"}},
    {"id": "b", "tool": "calculate", "args": {"expression": "2+3"}},
    {"id": "c", "tool": "calculate", "args": {"expression": "1+1"}, "depends_on": ["a", "b"]},
]}
FINISHED = {"completed", "failed", "canceled", "timed_out"}


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0:3].__str__()
    except OSError:
        return "n/a"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of ``pid``, its live descendants (the sandbox's worker processes) and their reaped
    children, from /proc; 0 when unknown."""
    if pid is None:
        return 0.0
    stats = {int(entry.name): _stat(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, fields in stats.items() if fields is not None and int(fields[1]) == parent]
        family.update(children)
        frontier.extend(children)
    ticks = sum(sum(int(v) for v in fields[11:15]) for p in family if (fields := stats.get(p)) is not None)
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


async def one_run(session: aiohttp.ClientSession, base: str, poll_s: float,
                  until: str = "change") -> tuple[float, str, int]:
    """Submit one run and follow it to its end: ``GET`` every ``poll_s``, or with ``poll_s == 0`` long polling
    (``?wait=30``: the server answers when the run changes, or with ``until="end"`` when it ends)."""
    started = time.perf_counter()
    polls = 0
    async with session.post(base + "/api/runs", json={"mode": "plan", "plan": PLAN}) as resp:
        reply = await resp.json()
        if resp.status not in (200, 202):
            raise RuntimeError(f"submit answered {resp.status}: {reply}")
    url = reply["statusUrl"]
    if poll_s == 0:
        url += ("&" if "?" in url else "?") + "wait=30" + ("&until=end" if until == "end" else "")
    while True:
        async with session.get(url) as resp:
            view = await resp.json()
        polls += 1
        if view.get("status") in FINISHED:
            return time.perf_counter() - started, view["status"], polls
        if poll_s:
            await asyncio.sleep(poll_s)


async def wait_ready(base: str, timeout_s: float = 120.0) -> None:
    """Until ``GET /api/ready`` answers ready (its first call builds the app's runtime and starts the warm-up)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(base + "/api/ready") as resp:
                if resp.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the devhost was not ready within {timeout_s:g} s")
            await asyncio.sleep(0.2)


async def measure(base: str, clients: int, seconds: float, warmup: float, poll_s: float,
                  pid: int | None, until: str = "change") -> dict[str, Any]:
    """Run ``clients`` closed-loop clients for ``warmup + seconds``; count the runs finished inside the window."""
    connector = aiohttp.TCPConnector(limit=clients + 4)
    timeout = aiohttp.ClientTimeout(total=120)
    latencies: list[float] = []
    polls: list[int] = []
    outcomes: dict[str, int] = {}
    window: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        window_start, window_end = t0 + warmup, t0 + warmup + seconds

        async def client() -> None:
            while time.perf_counter() < window_end:
                submitted = time.perf_counter()
                elapsed, status, gets = await one_run(session, base, poll_s, until)
                done = submitted + elapsed
                if window_start <= submitted and done <= window_end:
                    latencies.append(elapsed)
                    polls.append(gets)
                    outcomes[status] = outcomes.get(status, 0) + 1

        async def mark() -> None:
            await asyncio.sleep(warmup)
            window["cpu0"] = cpu_seconds(pid)
            await asyncio.sleep(seconds)
            window["cpu1"] = cpu_seconds(pid)

        await asyncio.gather(mark(), *(client() for _ in range(clients)))
    completed = outcomes.get("completed", 0)
    rate = len(latencies) / seconds
    return {
        "clients": clients,
        "runs_per_s": rate,
        "completed": completed,
        "outcomes": outcomes,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "polls_per_run": statistics.mean(polls) if polls else float("nan"),
        "host_cpu_ms_per_run": (window["cpu1"] - window["cpu0"]) * 1000 / max(1, len(latencies)) if pid else None,
    }


class _Invocation:
    """The parts of ``azure.functions.Context`` the activity reads (a trace context of its own)."""

    invocation_id = "benchmark"
    function_name = "call_tool"

    class trace_context:  # the attribute name the Functions worker uses
        trace_parent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        trace_state = ""
        attributes: dict[str, str] = {}


def in_process(calls: int) -> list[dict[str, Any]]:
    """CPU per ``call_tool`` activity call, in this process (see the module docstring)."""
    state = Path(tempfile.mkdtemp(prefix="weft-app-cpu-"))
    os.environ.update({"AzureWebJobsStorage": "", "WEFT_STATE_DIR": str(state / "state"),
                       "WEFT_PAYLOAD_DIR": str(state / "payloads"), "WEFT_SEARCH_WARM_AT_START": "false",
                       "WEFT_SEARCH_LOAD_MODEL_WITH_APP": "false"})
    from activities.tool_calls import call_tool

    activity = call_tool._function._func  # the function body the Functions worker invokes

    def request(run: str, i: int, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"call": {"run_id": f"run-{run * 32}", "step_id": f"s{i}", "tool": tool, "args": args}}

    cases = {"calculate": lambda i: {"expression": f"{i}*2+1"},
             "note_put": lambda i: {"key": f"k{i % 50}", "value": f"v{i}"}}
    results = []
    for tool, args in cases.items():
        async def calls_of(n: int, run: str, tool: str = tool, args: Any = args) -> list[float]:
            walls = []
            for i in range(n):
                t0 = time.perf_counter()
                output = await activity(request(run, i, tool, args(i)), _Invocation())
                walls.append(time.perf_counter() - t0)
                if not output.get("ok"):
                    raise RuntimeError(f"{tool} failed: {output.get('error')}")
            return walls

        asyncio.run(calls_of(min(200, calls), "a"))  # another run: no measured call finds a journalled outcome
        cpu0 = time.process_time()
        walls = asyncio.run(calls_of(calls, "b"))
        cpu_ms = (time.process_time() - cpu0) * 1000 / calls
        row = {"tool": tool, "calls": calls, "cpu_ms_per_call": cpu_ms,
               "p50_ms": statistics.median(walls) * 1000, "p95_ms": percentile(walls, 0.95) * 1000}
        results.append(row)
        print(f"call_tool {tool:<10} in-process: app CPU {cpu_ms:.2f} ms/call; wall p50 {row['p50_ms']:.2f} ms "
              f"p95 {row['p95_ms']:.2f} ms ({calls} calls); loadavg {loadavg()}", flush=True)
    return results


def replay_cpu(rounds: int) -> dict[str, Any]:
    """CPU of the ``run`` orchestrator's replays for one 3-step plan run, in this process: a devhost runs :data:`PLAN`
    once, and its three episodes (the start; ``a`` and ``b`` done; ``c`` done) are replayed ``rounds`` times through
    the SDK's orchestrator entry point, as the Functions worker invokes it (the devhost's engine is not measured)."""
    work = Path(tempfile.mkdtemp(prefix="weft-replays-"))
    env = devhost_env({"AzureWebJobsStorage": "", "WEFT_STATE_DIR": str(work / "state"),
                       "WEFT_PAYLOAD_DIR": str(work / "payloads"), "DEVHOST_LOG_LEVEL": "WARNING"})
    host = DevhostProcess(ROOT, work / "devhost.sqlite", free_port(), env).start()

    async def one() -> None:
        await wait_ready(host.base_url)
        async with aiohttp.ClientSession() as session:
            await one_run(session, host.base_url, 0, "end")

    try:
        asyncio.run(one())
    finally:
        host.stop()
    with sqlite3.connect(work / "devhost.sqlite") as db:
        events = [json.loads(e) for (e,) in db.execute("SELECT event FROM history ORDER BY pos")]
        instance_id, input_json = db.execute("SELECT id, input FROM instances").fetchone()
    # The stored history ends with the second episode; the last one (c done) is what the devhost fed it.
    scheduled = [e for e in events if e["EventType"] == 4]
    result = next(e["Result"] for e in events if e["EventType"] == 5)
    stamp = events[-1]["Timestamp"]
    events += [{"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": stamp},
               {"EventType": 5, "EventId": -1, "IsPlayed": False, "Timestamp": stamp,
                "TaskScheduledId": scheduled[-1]["EventId"], "Result": result}]
    starts = [i for i, e in enumerate(events) if e["EventType"] == 12] + [len(events)]
    contexts = []
    for start, end in itertools.pairwise(starts):  # an episode sees the events before it and its arrivals
        arrived = [e for e in events[start:end] if e["EventType"] not in (4, 13)]  # not what it schedules itself
        contexts.append(json.dumps({"history": events[:start] + arrived, "instanceId": instance_id,
                                    "isReplaying": False, "parentInstanceId": None, "input": input_json,
                                    "upperSchemaVersion": 2}))
    os.environ.update({k: v for k, v in env.items() if k.startswith(("Azure", "WEFT_"))})
    os.environ.update({"WEFT_SEARCH_WARM_AT_START": "false", "WEFT_SEARCH_LOAD_MODEL_WITH_APP": "false"})
    from devhost.index import load_app

    handle = load_app(ROOT).orchestrators["run"]
    if not json.loads(handle(contexts[-1])).get("isDone"):
        raise RuntimeError("the last replay did not finish the run")
    cpu0 = time.process_time()
    for _ in range(rounds):
        for context in contexts:
            handle(context)
    cpu_ms = (time.process_time() - cpu0) * 1000 / rounds
    print(f"run orchestrator in-process: app CPU {cpu_ms:.2f} ms per 3-step plan run ({len(contexts)} episodes, "
          f"{rounds} rounds); loadavg {loadavg()}", flush=True)
    return {"orchestrator": "run", "episodes": len(contexts), "rounds": rounds, "cpu_ms_per_run": cpu_ms}


def _last_cpu() -> str:
    """One CPU for the devhost when there are several: its Python holds one interpreter lock, and its threads hand it
    over more cheaply on one core (devhost ``--cpus``); the clients here run on the others."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return ""
    return str(cpus[-1]) if len(cpus) >= 2 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per client count")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--poll-ms", type=float, default=10.0,
                        help="GET the run every N ms; 0: long polling (?wait=30), as weftclient follows a run")
    parser.add_argument("--until", choices=("change", "end"), default="change",
                        help="with --poll-ms 0: a long poll answers at each change of the run, or only at its end")
    parser.add_argument("--repeat", type=int, default=1, help="windows per client count (the median is reported)")
    parser.add_argument("--url", help="an already running devhost (its CPU is then not measured)")
    parser.add_argument("--devhost-cpus", default=_last_cpu(),
                        help="DEVHOST_CPUS for the devhost started here (default: the last CPU when there are two or "
                             "more; '' for all)")
    parser.add_argument("--in-process", action="store_true",
                        help="the app's CPU per tool call and per run's replays, without HTTP or host")
    parser.add_argument("--calls", type=int, default=2000, help="calls per tool with --in-process")
    parser.add_argument("--replays", type=int, default=300, help="rounds of a run's replays with --in-process")
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps([*in_process(args.calls), replay_cpu(args.replays)]))
        return
    host = None
    pid = None
    base = args.url
    if base is None:
        work = Path(tempfile.mkdtemp(prefix="weft-throughput-"))
        env = devhost_env({"AzureWebJobsStorage": "", "WEFT_STATE_DIR": str(work / "state"),
                           "WEFT_PAYLOAD_DIR": str(work / "payloads"), "DEVHOST_LOG_LEVEL": "WARNING",
                           "DEVHOST_CPUS": args.devhost_cpus})
        host = DevhostProcess(ROOT, work / "devhost.sqlite", free_port(), env).start()
        base = host.base_url
        pid = host.process.pid if host.process else None
    try:
        if host is not None:
            asyncio.run(wait_ready(base))
        print(f"loadavg before: {loadavg()}  (cores: {os.cpu_count()}; devhost on CPUs: "
              f"{args.devhost_cpus or 'all'})")
        results = []
        for clients in args.clients:
            rounds = [asyncio.run(measure(base, clients, args.seconds, args.warmup, args.poll_ms / 1000, pid,
                                          args.until)) for _ in range(args.repeat)]
            rounds.sort(key=lambda r: r["runs_per_s"])
            best = rounds[len(rounds) // 2]
            results.append(best)
            cpu = best["host_cpu_ms_per_run"]
            print(f"{clients:>3} clients: {best['runs_per_s']:6.1f} completed runs/s "
                  f"(windows: {', '.join(format(r['runs_per_s'], '.1f') for r in rounds)}); latency p50 "
                  f"{best['p50_ms']:.0f} ms p95 {best['p95_ms']:.0f} ms; {best['polls_per_run']:.1f} GETs/run; "
                  f"outcomes {best['outcomes']}"
                  + (f"; devhost CPU {cpu:.1f} ms/run" if cpu is not None else "")
                  + f"; loadavg {loadavg()}", flush=True)
        print(json.dumps(results))
    finally:
        if host is not None:
            host.stop()


if __name__ == "__main__":
    main()
