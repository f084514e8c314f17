"""The local process sandbox: every run in a fresh, confined worker process forked from a clean zygote.

What is guaranteed (Linux; each layer is reported by :meth:`ProcessSandbox.isolation`):

* **Policy first.** Code is parsed and checked against :mod:`shared.sandbox.policy` before any process is involved.
  Everything below holds even when that check is skipped or bypassed.
* **A fresh process per run, never reused.** Each run gets its own worker, forked from a zygote interpreter that was
  started with an empty environment (``python -P -s -S``, only ``PYTHONHASHSEED``/``TZ``/``LANG`` set) and that never
  received anything from the parent but the policy: no secrets in its environment or memory. After the run, and after
  any violation, limit or crash, the worker's whole process group is SIGKILLed and reaped.
* **Only a pipe to the parent.** The worker holds fd 3 (a socket pair to the parent) and ``/dev/null`` as 0-2; every
  message it sends is size-capped and validated by the parent, which does not trust it (tool names, call ids and the
  call count are checked again here). The worker never holds tool objects: tools are stubs that send requests.
* **No file system, network or new processes.** With the seccomp layer (x86_64): opening or creating any file,
  every path-mutating syscall, sockets, fork/clone/exec and signals to other processes fail with EPERM. Without it:
  ``RLIMIT_NOFILE`` prevents creating any file descriptor (no ``open``, ``socket`` or ``pipe``) and
  ``RLIMIT_NPROC=0`` prevents new processes for any user but root; a zygote started as root runs workers as
  ``nobody`` (so ``RLIMIT_NPROC`` applies and file permissions govern path operations) in an empty network namespace.
* **Bounded resources.** CPU time (``ITIMER_PROF``, backstopped by ``RLIMIT_CPU``), address space (``RLIMIT_AS``),
  wall-clock time (the parent kills the process group), printed output, result size, tool calls, argument sizes.
* **Bounded worker count.** At most ``Capacity.max_concurrent_runs`` workers of one sandbox are alive at once, so
  that many times ``Limits.memory_bytes`` bounds their memory; a run beyond the cap waits for a slot (from any thread
  or event loop, first come first served) for ``Capacity.queue_wait_seconds``, then raises ``SandboxBusy`` before
  anything of it has started. A slot is held from before the worker is forked until after it is reaped.

What is not guaranteed: without seccomp (not x86_64, or a container that forbids it), path operations that need no
file descriptor (``unlink``, ``rename``, ``mkdir``, ``chmod``) run with the worker's own permissions, which are the
service's unless the zygote runs as root; with ``drop_privileges=False`` as root, also ``fork``. Isolation from kernel
exploits and CPU side channels is not claimed (use the dynamic-sessions backend, a Hyper-V boundary, for that), nor
the confidentiality of what the run itself is given (its tool results are visible to the code by design).

Worker choice: runs take a worker forked ahead of time (``Capacity.prefork_workers``, WEFT_SANDBOX_PREFORK_WORKERS,
default 2) that has already applied the confinement layers needing no job and rehearsed a trivial job of our own
(so a first run's copy-on-write page faults are behind it), and their workers are killed and reaped after the answer
is back; both on a helper thread (:mod:`shared.sandbox._pool`), so neither fork nor reap is on a run's path. The
zygote and its workers ask for a short scheduler slice (``Capacity.worker_slice_us``) so that a worker woken by its
job runs at once on a loaded machine. Idle workers hold run slots like running ones: the cap on live workers is
unchanged. With no idle worker (a burst, or ``prefork_workers=0``) a run forks its own on demand, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.concurrency import CrossLoopSemaphore
from shared.errors import NotConfigured, SandboxBusy, UpstreamUnavailable
from shared.settings import env_bool

from . import _wire, _zygote, policy
from ._host import call_tool, check_code, check_tool_names, parse_clock, run_sync, to_code_result, to_replay_step
from ._pool import Worker as _Worker
from ._pool import WorkerPool as _WorkerPool
from .limits import MAX_CONCURRENT_RUNS, QUEUE_WAIT_SECONDS, Capacity, Limits
from .records import CodeResult, PendingCall, RecordedCall, ReplayStep

__all__ = ["REQUIRE_SECCOMP", "Confinement", "ProcessSandbox", "ZygoteFailed", "seccomp_supported"]

logger = logging.getLogger(__name__)
_PACKAGE_DIR = str(Path(__file__).resolve().parent)
REQUIRE_SECCOMP = "WEFT_SANDBOX_REQUIRE_SECCOMP"


def seccomp_supported() -> bool:
    """Whether this platform has the sandbox's seccomp filter (x86_64 Linux, 64-bit Python)."""
    return sys.platform == "linux" and platform.machine() == "x86_64" and sys.maxsize > 2**32


@dataclass(frozen=True)
class Confinement:
    """Which operating-system layers workers apply (each only where it can hold; see the module docstring)."""

    seccomp: bool = True
    """Install the seccomp filter (x86_64 only)."""
    network_namespace: bool = True
    """Give each worker an empty network namespace (only possible as root)."""
    drop_privileges: bool = True
    """Run workers as ``nobody`` (only possible as root)."""
    require_seccomp: bool = field(default_factory=seccomp_supported)
    """Refuse to start (``NotConfigured``) when the seccomp filter cannot be installed; by default true where the
    filter exists (x86_64 Linux). ``WEFT_SANDBOX_REQUIRE_SECCOMP=false`` opts out."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Confinement:
        """The layers from the environment: ``WEFT_SANDBOX_REQUIRE_SECCOMP`` (default: true on x86_64 Linux)."""
        return cls(require_seccomp=env_bool(env, REQUIRE_SECCOMP, seccomp_supported()))



class _Zygote:
    """Parent's handle on the zygote process: spawn and finish workers over the control channel."""

    def __init__(self, python: str, confinement: Confinement, slice_us: int = 0) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {
            "policy": policy.worker_policy(),
            "slice_us": slice_us,
            "confinement": {
                "seccomp": confinement.seccomp,
                "network_namespace": confinement.network_namespace,
                "drop_privileges": confinement.drop_privileges,
            },
        }
        self._process = subprocess.Popen(
            # not -I: it implies -E, which would ignore PYTHONHASHSEED; the environment is ours alone anyway
            [python, "-P", "-s", "-S", "-c", _zygote.BOOTSTRAP, _PACKAGE_DIR, str(theirs.fileno()),
             json.dumps(config)],
            env=dict(_zygote.ENVIRONMENT),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
        theirs.close()
        self._socket = ours
        self._socket.settimeout(30.0)
        self._lock = threading.Lock()
        self._broken = False
        try:
            ready = self._receive()
            self.pid = int(ready["pid"])
        except (OSError, ValueError, KeyError) as exc:
            self._kill()
            raise NotConfigured(f"the sandbox zygote could not start: {exc}") from exc
        problem = ready.get("seccomp_problem")
        if problem and confinement.require_seccomp:
            self._socket.close()
            self._kill()
            raise NotConfigured(
                f"the sandbox cannot start: its seccomp layer is required here ({REQUIRE_SECCOMP} defaults to true "
                f"on x86_64 Linux) but could not be installed: {problem}. Run where seccomp filters are allowed, or "
                f"set {REQUIRE_SECCOMP}=false to run code without that layer (docs/code-mode.md says what then holds)"
            )
        self._socket.settimeout(10.0)

    def _receive(self) -> dict[str, Any]:
        data = self._socket.recv(65536)
        if not data:
            raise ConnectionError("the sandbox zygote exited")
        return json.loads(data)

    def _request(self, payload: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            try:
                socket.send_fds(self._socket, [json.dumps(payload).encode()], list(fds))
                return self._receive()
            except (OSError, ValueError) as exc:  # a half-answered request would desynchronise the channel
                self._broken = True
                self._kill()
                raise ZygoteFailed(f"the sandbox zygote failed: {exc}") from exc

    @property
    def alive(self) -> bool:
        return not self._broken and self._process.poll() is None

    def spawn(self, channel: socket.socket, *, rehearse: bool = False) -> int:
        """Fork a worker on ``channel``; ``rehearse``: let it take a first run's page faults before it is ready."""
        return int(self._request({"op": "spawn", "rehearse": rehearse}, [channel.fileno()])["pid"])

    def finish(self, pid: int) -> dict[str, Any]:
        return self._request({"op": "finish", "pid": pid})

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._process.wait()

    def close(self) -> None:
        self._socket.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill()


class ZygoteFailed(ConnectionError):
    """The zygote stopped answering; it has been killed and the next run starts a new one."""


class _Session:
    """One run: send the job, serve tool calls (inline), collect the one outcome, then kill and reap the worker."""

    def __init__(self, zygote: _Zygote, job: dict[str, Any], limits: Limits,
                 tools: Mapping[str, Callable[..., Any]] | None, worker: _Worker | None = None,
                 reap_later: Callable[[_Zygote, int], None] | None = None) -> None:
        self._zygote = zygote
        self._worker = worker
        self._reap_later = reap_later
        self.reaping_deferred = False
        self._job = job
        self._limits = limits
        self._tools = tools
        self.records: dict[str, RecordedCall] = {}
        self.started = False
        self._calls_seen = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> dict[str, Any]:
        if self._worker is not None:  # pre-forked: already waiting for its job, partly confined
            ours, pid = self._worker.channel, self._worker.pid
        else:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pid = await asyncio.to_thread(self._zygote.spawn, theirs)  # the control channel blocks; the loop not
            except ZygoteFailed:
                ours.close()
                raise
            finally:
                theirs.close()
        self.started = True
        timed_out = False
        outcome: dict[str, Any] | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            writer.write(_wire.encode(self._job))
            try:
                async with asyncio.timeout(self._limits.wall_seconds):
                    outcome = await self._serve(reader, writer)
            except TimeoutError:
                timed_out = True
            except ConnectionError:  # the worker went away mid-answer: its exit status tells how it ended
                outcome = None
            finally:
                for task in self._tasks:
                    task.cancel()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        finally:
            ours.close()
            status: Mapping[str, Any] = {}
            if outcome is not None and self._reap_later is not None:  # the answer is in: reap off the run's path
                self._reap_later(self._zygote, pid)
                self.reaping_deferred = True
            else:
                try:
                    status = await asyncio.to_thread(self._zygote.finish, pid)
                except ZygoteFailed:
                    if outcome is None:
                        raise
                    logger.warning("sandbox worker %s could not be reaped; the zygote was replaced", pid)
        if outcome is not None:
            return outcome
        return self._death(status, timed_out)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, Any] | None:
        cap = self._limits.max_message_bytes()
        first = True
        while True:
            try:
                header = await reader.readexactly(_wire.HEADER.size)
                if first and header[:1] == _zygote.READY:  # a frame would start with its length's high byte: never 'r'
                    header = header[1:] + await reader.readexactly(1)
                first = False
                (size,) = _wire.HEADER.unpack(header)
                if size > cap:
                    return {"t": "violation", "message": "the sandbox worker sent an oversized message"}
                message = _wire.decode(await reader.readexactly(size))
            except asyncio.IncompleteReadError:
                return None
            except _wire.FrameError:
                return {"t": "violation", "message": "the sandbox worker sent a malformed message"}
            if message.get("t") != "calls":
                return message
            problem = self._accept_calls(message.get("calls"), writer)
            if problem:
                return {"t": "violation", "message": problem}

    def _accept_calls(self, calls: Any, writer: asyncio.StreamWriter) -> str | None:
        if self._tools is None or not isinstance(calls, list):
            return "the sandbox worker sent tool calls outside inline mode"
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("args"), list) or not isinstance(
                call.get("kwargs"), dict
            ):
                return "the sandbox worker sent a malformed tool call"
            self._calls_seen += 1
            if self._calls_seen > self._limits.max_tool_calls:
                return "the sandbox worker exceeded the tool-call limit"
            tool = call.get("tool")
            if call.get("id") != f"c{self._calls_seen}" or not isinstance(tool, str) or tool not in self._tools:
                return "the sandbox worker sent an unexpected tool call"
            pending = PendingCall(call["id"], tool, call["args"], call["kwargs"])
            task = asyncio.create_task(self._invoke(pending, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return None

    async def _invoke(self, call: PendingCall, writer: asyncio.StreamWriter) -> None:
        assert self._tools is not None
        record = await call_tool(self._tools, call, self._limits)
        if record.error is not None:
            logger.debug("tool %s failed in the sandbox", call.tool)
        self.records[call.call_id] = record
        writer.write(_wire.encode({"t": "result", "id": call.call_id, "result": record.result, "error": record.error}))

    def _death(self, status: Mapping[str, Any], timed_out: bool) -> dict[str, Any]:
        if timed_out:
            return {"t": "limit", "kind": "wall",
                    "message": f"the code ran longer than {self._limits.wall_seconds} s (wall clock) and was stopped"}
        raw = status.get("status")
        signum = -os.waitstatus_to_exitcode(raw) if isinstance(raw, int) and os.WIFSIGNALED(raw) else 0
        if signum == signal.SIGXCPU or (signum == signal.SIGKILL and status.get("cpu", 0) >= self._limits.cpu_seconds):
            return {"t": "limit", "kind": "cpu",
                    "message": f"the code used more than {self._limits.cpu_seconds} s of CPU time and was stopped"}
        how = f"signal {signal.Signals(signum).name}" if signum else f"exit status {raw}"
        return {"t": "limit", "kind": "crash",
                "message": f"the sandbox worker stopped unexpectedly ({how}); the code probably exhausted memory "
                           "or the stack"}


class ProcessSandbox:
    """The default :class:`~shared.sandbox.executor.CodeExecutor`: local worker processes (see the module docstring).

    Thread-safe; start-up (the zygote, ~100 ms) happens on first use, not at construction. ``capacity`` caps the
    runs (live workers) at once, for every thread and event loop using this sandbox. ``check_policy=False`` skips the
    AST policy and exists only so tests can prove the process isolation on its own.
    """

    def __init__(
        self,
        *,
        confinement: Confinement | None = None,
        capacity: Capacity | None = None,
        check_policy: bool = True,
        python: str | None = None,
    ) -> None:
        self._confinement = confinement or Confinement()
        self.capacity = capacity or Capacity()
        self._slots = CrossLoopSemaphore(self.capacity.max_concurrent_runs)
        self._check_policy = check_policy
        self._python = python or sys.executable
        self._zygote: _Zygote | None = None
        self._lock = threading.Lock()
        self._pool = _WorkerPool(self._slots, self.capacity.prefork_workers, self._ensure_zygote)

    # -- CodeExecutor ----------------------------------------------------------------------------------------------
    def run(self, code: str, tools: Mapping[str, Callable[..., Any]], limits: Limits | None = None, *,
            clock_iso: str | None = None, seed: int = 0) -> CodeResult:
        """Run ``code`` in inline mode: each tool call is executed here, through ``tools``, as it arrives."""
        return run_sync(self.run_async(code, tools, limits, clock_iso=clock_iso, seed=seed))

    async def run_async(self, code: str, tools: Mapping[str, Callable[..., Any] | Callable[..., Awaitable[Any]]],
                        limits: Limits | None = None, *, clock_iso: str | None = None, seed: int = 0) -> CodeResult:
        """Async form of :meth:`run` (sync tools run in worker threads, async tools on the caller's loop)."""
        limits = limits or Limits()
        check_tool_names(tools)
        syntax = check_code(code, limits, enforce_policy=self._check_policy)
        if syntax is not None:
            return CodeResult(error=syntax)
        job = self._job(code, "inline", list(tools), (), limits, clock_iso, seed)
        session, outcome = await self._execute(job, limits, dict(tools))
        records = [session.records[key] for key in sorted(session.records, key=lambda k: int(k[1:]))]
        return to_code_result(outcome, records)

    def step(self, code: str, tool_names: Sequence[str], recorded: Sequence[RecordedCall], limits: Limits | None = None,
             *, clock_iso: str, seed: int) -> ReplayStep:
        """Run one replay step (see :func:`shared.sandbox.executor.run_replay_step`)."""
        limits = limits or Limits()
        check_tool_names(tool_names)
        syntax = check_code(code, limits, enforce_policy=self._check_policy)
        if syntax is not None:
            return ReplayStep.finished(None, "", syntax)
        job = self._job(code, "replay", list(tool_names), recorded, limits, clock_iso, seed)
        _, outcome = run_sync(self._execute(job, limits, None))
        return to_replay_step(outcome)

    def close(self) -> None:
        """Stop the zygote (workers still running are killed). The sandbox restarts it if used again."""
        self._pool.close()
        with self._lock:
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None

    # -- introspection ---------------------------------------------------------------------------------------------
    def isolation(self) -> tuple[str, ...]:
        """The confinement layers a worker actually gets here (runs a probe; see :mod:`shared.sandbox._confine`)."""
        job = self._job("None", "replay", [], (), Limits(), None, 0)
        _, outcome = run_sync(self._execute(job, Limits(), None))
        return ("process", *outcome.get("layers", ()))

    @property
    def runs_active(self) -> int:
        """Runs holding a slot now (each has, or is about to have or has just reaped, one worker); slots held by
        pre-forked idle workers, or by finished runs' workers being reaped, are not runs."""
        return max(0, self._slots.in_use - self._pool.holding)

    @property
    def idle_worker_pids(self) -> tuple[int, ...]:
        """Process ids of the pre-forked workers waiting for a run now (they have run nothing)."""
        return self._pool.pids()

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the workers of finished runs are killed and reaped (that happens just after each run returns,
        off its path); False if some are still not after ``timeout`` seconds."""
        return self._pool.settle(timeout)

    @property
    def runs_waiting(self) -> int:
        """Runs waiting for a slot now."""
        return self._slots.waiting

    @property
    def zygote_pid(self) -> int:
        """Process id of the zygote (starting it if needed); its children are the live workers."""
        return self._ensure_zygote().pid

    # -- internals -------------------------------------------------------------------------------------------------
    async def _execute(self, job: dict[str, Any], limits: Limits, tools: dict[str, Callable[..., Any]] | None
                       ) -> tuple[_Session, dict[str, Any]]:
        """One session in a run slot; if the zygote fails before the worker started, retry once on a new zygote."""
        worker = self._pool.take()  # a pre-forked worker comes with the slot it holds
        if worker is None:
            await self._take_slot()
            worker = self._pool.take()
            if worker is not None:  # one arrived while we waited: use it, and its slot instead of ours
                self._slots.release()
        session: _Session | None = None
        try:
            for attempt in (1, 2):
                zygote = worker.zygote if worker is not None else self._ensure_zygote()
                session = _Session(zygote, job, limits, tools, worker, self._pool.reap_later)
                worker = None
                try:
                    return session, await session.run()
                except ZygoteFailed:
                    if session.started or attempt == 2:
                        raise UpstreamUnavailable("the local sandbox is unavailable (its zygote failed)") from None
                    logger.warning("sandbox zygote failed before a run started; retrying on a new one")
            raise AssertionError("unreachable")
        finally:
            if session is None or not session.reaping_deferred:
                self._slots.release()
            self._pool.wake()

    async def _take_slot(self) -> None:
        wait = self.capacity.queue_wait_seconds
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            logger.warning("sandbox busy: no run slot came free in %s s (%s runs at once, %s waiting)",
                           wait, self._slots.limit, self._slots.waiting)
            raise SandboxBusy(
                f"the local sandbox is busy: {self._slots.limit} runs at once ({MAX_CONCURRENT_RUNS}) were running "
                f"and no slot came free within {wait:g} s ({QUEUE_WAIT_SECONDS}); nothing of this run started, so it "
                "can be tried again later"
            ) from None

    def _ensure_zygote(self) -> _Zygote:
        with self._lock:
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    logger.warning("sandbox zygote %s died; starting a new one", self._zygote.pid)
                self._zygote = _Zygote(self._python, self._confinement, self.capacity.worker_slice_us)
            return self._zygote

    def _job(self, code: str, mode: str, tools: list[str], recorded: Sequence[RecordedCall], limits: Limits,
             clock_iso: str | None, seed: int) -> dict[str, Any]:
        return {
            "t": "job", "mode": mode, "code": code, "tools": tools, "recorded": [r.to_dict() for r in recorded],
            "limits": limits.worker_view(), "clock": parse_clock(clock_iso), "seed": int(seed),
            "require_seccomp": self._confinement.require_seccomp,
        }
