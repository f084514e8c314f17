"""The zygote: a clean interpreter that pre-imports the allowed modules and forks one worker per run.

Worker side, stdlib only. The parent starts it with ``python -P -s -S`` and an environment holding nothing but
``PYTHONHASHSEED=0`` (deterministic ``set`` order for replays), ``TZ=UTC`` and ``LANG=C.UTF-8``, so its memory never
holds the parent's secrets. It loads this package under a private name without running ``shared/__init__`` or
``shared/sandbox/__init__`` (see :data:`BOOTSTRAP`).

Control channel (``AF_UNIX``/``SOCK_SEQPACKET``, one JSON object per packet):

``{"op": "spawn", "rehearse"}`` + one fd      fork a worker on that channel; reply ``{"pid"}``
``{"op": "finish", "pid"}``                    SIGKILL its process group, reap it; reply ``{"pid", "status", "cpu"}``

A worker writes :data:`READY` on its channel once it is prepared (after its rehearsal, if it was asked for one), then
reads its job; it skips that byte if the job is already there. No frame starts with it, so the parent can tell.

The zygote exits when the parent closes the channel, killing any worker still alive; workers also die with it
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any, NoReturn

from . import _wire
from ._audit import deactivate
from ._confine import CHANNEL_FD, Confiner, request_sched_slice
from ._runtime import EmbeddedChannel, FdChannel, Runtime, Stop, prepare_static_modules
from ._shims import World

PACKAGE = "weft_sandbox_worker"
BOOTSTRAP = (
    "import sys, types\n"
    f"pkg = types.ModuleType({PACKAGE!r})\n"
    "pkg.__path__ = [sys.argv[1]]\n"
    f"sys.modules[{PACKAGE!r}] = pkg\n"
    f"from {PACKAGE} import _zygote\n"
    "_zygote.main(int(sys.argv[2]), sys.argv[3])\n"
)
ENVIRONMENT = {"PYTHONHASHSEED": "0", "TZ": "UTC", "LANG": "C.UTF-8"}
MAX_JOB_BYTES = 64 * 1024 * 1024
READY = b"r"
# Imported before forking so workers never need the file system: lazily imported helpers of the allowed modules.
PRELOAD = (
    "_strptime", "encodings.idna", "encodings.latin_1", "encodings.ascii", "encodings.utf_16", "encodings.utf_32",
    "encodings.cp1252", "encodings.unicode_escape", "encodings.raw_unicode_escape", "unicodedata", "traceback",
    "linecache", "collections.abc",
)
# A fixed job of our own that an idle worker runs before its real job arrives (see _rehearse).
REHEARSAL_JOB = {
    "t": "job", "mode": "inline", "code": "result = len('ab')\nresult", "tools": ["tool"], "recorded": [],
    "limits": {"cpu_seconds": 1.0, "wall_seconds": 1.0, "memory_bytes": 1 << 30, "stdout_bytes": 1024,
               "max_tool_calls": 2, "max_result_bytes": 1024, "max_tool_args_bytes": 1024, "max_recursion_depth": 100,
               "max_frame_bytes": 1 << 16},
    "clock": 0.0, "seed": 0,
}


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        """Nothing is kept."""


def _rehearse(world: World) -> None:
    """Run :data:`REHEARSAL_JOB` (our constant code, never a caller's) through the same path a real job takes.

    A forked worker shares the zygote's memory pages until it writes to them; the first write to each (reference
    counts, allocator state, the event loop, the compiler) costs a copy-on-write page fault, about 600 of them for a
    trivial run, most of its time. Taking them here, while the worker waits for its job, moves them off the run's
    path. Everything a run depends on is set again by the real job (``World.start_run`` rebinds the hooks and reseeds
    ``random``; the audit hook is re-armed for the real code), so the real run sees the same state as without this.
    Skipped when the job is already waiting (a burst): then it would only delay the run.
    """
    channel = EmbeddedChannel()
    try:
        runtime = Runtime(_wire.decode(_wire.encode(REHEARSAL_JOB)[_wire.HEADER.size:]), world=world, channel=channel)
        runtime.execute()
    except Stop:
        _wire.encode(channel.outcome or {})
    except Exception:  # only a head start: the real job sets up everything again and reports its own failures
        pass
    finally:
        deactivate()
        asyncio.set_event_loop(None)


def _job_waiting() -> bool:
    return bool(select.select([CHANNEL_FD], [], [], 0)[0])


def _worker(channel: int, confiner: Confiner, world: World, rehearse: bool) -> NoReturn:
    """Body of a forked worker: confine, run the job, exit. Never returns."""
    try:
        zygote = os.getppid()
        os.setsid()
        confiner.arrange_fds(channel)
        layers = confiner.prepare(zygote_pid=zygote)  # a pre-forked worker does this before its job exists
        if rehearse and not _job_waiting():  # time to spare
            _rehearse(world)
        if not _job_waiting():  # a job already sent to a worker not ready yet needs no signal (the pool reads it)
            os.write(CHANNEL_FD, READY)
        job = _wire.read_frame(CHANNEL_FD, MAX_JOB_BYTES)
        limits = job["limits"]
        runtime = Runtime(job, world=world, channel=FdChannel(CHANNEL_FD, int(limits["max_frame_bytes"])))
        sys.stdout = runtime.stdout
        sys.stderr = _Discard()
        sys.setrecursionlimit(int(limits["max_recursion_depth"]) + 60)
        runtime.layers = layers + confiner.apply(
            cpu_seconds=float(limits["cpu_seconds"]), memory_bytes=int(limits["memory_bytes"]),
            on_cpu_exhausted=runtime.cpu_exhausted,
        )
        if job.get("require_seccomp") and "seccomp" not in runtime.layers:
            FdChannel(CHANNEL_FD, 0).finish(
                {"t": "confinement", "message": f"seccomp could not be installed (layers: {runtime.layers})"}
            )
        runtime.execute()
    except BaseException:
        os._exit(72)
    os._exit(0)


def _finish(pid: int) -> dict[str, Any]:
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    try:
        _, status, usage = os.wait4(pid, 0)
    except ChildProcessError:
        return {"pid": pid, "status": None, "cpu": 0.0}
    return {"pid": pid, "status": status, "cpu": usage.ru_utime + usage.ru_stime}


def main(control_fd: int, config_json: str) -> None:
    """Serve spawn/finish requests until the parent goes away."""
    config = json.loads(config_json)
    policy = config["policy"]
    control = socket.socket(fileno=control_fd)
    world = World(policy=policy, static_modules=prepare_static_modules(policy))
    for name in PRELOAD:
        importlib.import_module(name)
    time.tzset()
    confiner = Confiner(**config["confinement"])
    request_sched_slice(int(config.get("slice_us", 0)))  # workers forked from here inherit it
    gc.collect()
    gc.freeze()
    children: set[int] = set()
    seccomp_problem = confiner.probe_seccomp()
    control.send(json.dumps({"ready": True, "pid": os.getpid(), "seccomp_problem": seccomp_problem}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 65536, 1)
        except OSError:
            break
        if not data:
            break
        request = json.loads(data)
        if request.get("op") == "spawn" and fds:
            pid = os.fork()
            if pid == 0:
                control.close()
                _worker(fds[0], confiner, world, bool(request.get("rehearse")))
            os.close(fds[0])
            children.add(pid)
            reply: dict[str, Any] = {"pid": pid}
        elif request.get("op") == "finish":
            pid = int(request["pid"])
            children.discard(pid)
            reply = _finish(pid)
        else:
            for fd in fds:
                os.close(fd)
            reply = {"error": f"unknown request {request.get('op')!r}"}
        control.send(json.dumps(reply).encode())
    for pid in children:
        _finish(pid)


__all__ = ["BOOTSTRAP", "ENVIRONMENT", "main"]
