"""The pre-forked worker's fast path: what an idle worker has done before its job arrives, and what it leaves to the
job; replacement and reaping off the run's path; the scheduler slice the workers ask for."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.sandbox import Capacity, Limits, ProcessSandbox
from shared.sandbox._confine import Confiner, request_sched_slice, sched_slice_ns
from shared.sandbox._pool import is_ready
from shared.sandbox._zygote import READY
from shared.sandbox.process import seccomp_supported
from tests.support import wait_until

DEADLINE_S = 20.0


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    return wait_until(condition, DEADLINE_S, what, interval=0.01)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def proc_limit(pid: int, name: str) -> str:
    """The soft value of one row of /proc/<pid>/limits ("Max open files" -> "4")."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith(name):
                return line[len(name):].split()[0]
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


def minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def ready_idle_worker(sandbox: ProcessSandbox) -> int:
    """The one idle worker's pid, once it sleeps waiting for its job with its preparation done (its fault count
    stays put for 0.2 s)."""
    assert sandbox.settle(DEADLINE_S)
    pid: int = wait_for(lambda: sandbox.idle_worker_pids and sandbox.idle_worker_pids[0], "an idle worker")
    seen = [-1]

    def settled() -> bool:
        faults = minor_faults(pid)
        still, seen[0] = faults == seen[0], faults
        return still and proc_status(pid)["State"].startswith("S")

    end = time.monotonic() + DEADLINE_S
    while not settled():
        assert time.monotonic() < end, "the idle worker never settled"
        time.sleep(0.2)
    return pid


@pytest.fixture
def one_worker() -> Iterator[ProcessSandbox]:
    sandbox = ProcessSandbox(capacity=Capacity(prefork_workers=1))
    sandbox.run("1", {})  # starts the zygote and the pool
    yield sandbox
    sandbox.close()


def test_a_run_returns_before_its_worker_is_reaped_or_replaced(one_worker: ProcessSandbox) -> None:
    idle = ready_idle_worker(one_worker)
    zygote = one_worker._ensure_zygote()
    with zygote._lock:  # every spawn and every reap goes through the zygote's control channel: none can happen now
        started = time.perf_counter()
        result = one_worker.run("41 + 1", {})
        elapsed = time.perf_counter() - started
        assert result.result == 42 and result.error is None
        assert one_worker.idle_worker_pids == ()  # its worker was taken and no replacement has been forked yet
        assert os.path.exists(f"/proc/{idle}")  # nor has its worker been reaped (it is at most a zombie)
    assert elapsed < 10.0
    assert one_worker.settle(DEADLINE_S)
    replacement = wait_for(lambda: one_worker.idle_worker_pids, "the replacement worker")
    assert replacement[0] != idle
    wait_for(lambda: not os.path.exists(f"/proc/{idle}"), "the used worker to be reaped")


@pytest.mark.skipif(not seccomp_supported(), reason="the seccomp filter is x86_64 Linux only")
def test_an_idle_worker_is_confined_but_for_its_job_limits_which_its_job_adds_before_any_code_runs(
        one_worker: ProcessSandbox) -> None:
    idle = ready_idle_worker(one_worker)
    waiting = proc_status(idle)
    assert waiting["NoNewPrivs"] == "1" and waiting["Seccomp"] == "2" and waiting["Seccomp_filters"] == "1"
    assert proc_limit(idle, "Max open files") == "4" and proc_limit(idle, "Max processes") == "0"
    assert proc_limit(idle, "Max cpu time") == "unlimited"
    if os.geteuid() == 0:
        assert waiting["Uid"].split()[0] == "65534"

    seen: dict[str, Any] = {}

    def probe() -> str:  # runs here while the worker waits for this call's result
        seen.update(status=proc_status(idle), cpu=proc_limit(idle, "Max cpu time"),
                    memory=proc_limit(idle, "Max address space"), files=proc_limit(idle, "Max open files"))
        return "ok"

    limits = Limits(cpu_seconds=2.5, memory_bytes=700 * 2**20)
    result = one_worker.run("await probe()", {"probe": probe}, limits)
    assert result.result == "ok"
    assert seen["status"]["Seccomp_filters"] == "2"  # the seal on setrlimit/prlimit64 came with the job
    assert seen["cpu"] == "4" and seen["memory"] == str(700 * 2**20) and seen["files"] == "4"


def test_the_idle_worker_takes_its_first_run_page_faults_before_the_job_arrives(one_worker: ProcessSandbox) -> None:
    idle = ready_idle_worker(one_worker)
    before = minor_faults(idle)
    during: list[int] = []
    result = one_worker.run("await probe()", {"probe": lambda: during.append(minor_faults(idle))})
    assert result.error is None and during
    taken_by_the_run = during[0] - before
    # a worker that waits unprepared takes ~600 faults running a trivial job; this one took them while it waited
    assert before > 400
    assert taken_by_the_run < before / 2, (before, taken_by_the_run)


DETERMINISTIC = (
    "import random\nimport time\n"
    "random.seed()\nvalues = [random.random() for _ in range(3)]\n"
    "words = list({'alpha', 'beta', 'gamma', 'delta', 'epsilon'})\n"
    "result = [values, words, time.time(), random.Random().random()]\nresult"
)


def test_a_rehearsed_worker_gives_the_same_results_as_a_worker_forked_for_the_run(one_worker: ProcessSandbox) -> None:
    """Across two zygotes, too: set order depends on string hashes, which PYTHONHASHSEED=0 fixes."""
    ready_idle_worker(one_worker)
    rehearsed = one_worker.run(DETERMINISTIC, {}, clock_iso="2025-01-01T00:00:00Z", seed=7)
    on_demand = ProcessSandbox(capacity=Capacity(prefork_workers=0))
    try:
        fresh = on_demand.run(DETERMINISTIC, {}, clock_iso="2025-01-01T00:00:00Z", seed=7)
    finally:
        on_demand.close()
    assert rehearsed.error is None and fresh.error is None
    assert rehearsed.result == fresh.result


@pytest.mark.skipif(not seccomp_supported(), reason="the seccomp filter is x86_64 Linux only")
def test_rlimits_can_be_set_until_the_job_seals_them() -> None:
    confiner = Confiner(seccomp=True, network_namespace=False, drop_privileges=False)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        with contextlib.suppress(BaseException):
            layers = confiner.prepare(zygote_pid=os.getppid())
            resource.setrlimit(resource.RLIMIT_CPU, (50, 60))  # allowed while waiting for the job
            os.write(write, f"prepared {','.join(layers)}\n".encode())
            layers = confiner.apply(cpu_seconds=1.0, memory_bytes=2**32, on_cpu_exhausted=lambda: None)
            os.write(write, f"applied {','.join(layers)}\n".encode())
            try:
                resource.setrlimit(resource.RLIMIT_CPU, (1, 2))  # only lowering: refused by nothing but the seal
                os.write(write, b"setrlimit allowed\n")
            except ValueError as exc:  # CPython's word for EPERM here
                os.write(write, f"setrlimit refused: {exc}\n".encode())
            try:
                os.open(sys.executable, os.O_RDONLY)
                os.write(write, b"open allowed\n")
            except OSError as exc:
                os.write(write, f"open errno {exc.errno}\n".encode())
            code = 0
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        lines = pipe.read().splitlines()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, lines
    assert lines[0] == "prepared fds,empty-env"
    assert lines[1] == "applied rlimits,cpu-timer,seccomp"
    assert lines[2:] == ["setrlimit refused: not allowed to raise maximum limit", "open errno 1"]  # EPERM


def kernel_honours_slices() -> bool:
    """Whether a thread's requested slice reads back (EEVDF custom slices, Linux 6.12+), checked in a child."""
    if sched_slice_ns() is None:
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0 if request_sched_slice(250) and sched_slice_ns() == 250_000 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"),
                    reason="sched_setattr numbers are known for x86_64 and aarch64 Linux")
def test_workers_ask_for_the_configured_scheduler_slice() -> None:
    if not kernel_honours_slices():
        pytest.skip("this kernel does not report custom scheduler slices")
    default = sched_slice_ns()
    for slice_us, expected in ((300, 300_000), (0, default)):
        sandbox = ProcessSandbox(capacity=Capacity(prefork_workers=1, worker_slice_us=slice_us))
        try:
            assert sandbox.run("1", {}).result == 1
            idle = wait_for(lambda s=sandbox: s.idle_worker_pids, "an idle worker")  # type: ignore[misc]
            assert sched_slice_ns(sandbox.zygote_pid) == expected
            assert sched_slice_ns(idle[0]) == expected
        finally:
            sandbox.close()


def test_the_worker_slice_is_a_setting() -> None:
    assert Capacity().worker_slice_us == 100
    assert Capacity.from_env({"WEFT_SANDBOX_WORKER_SLICE_US": "0"}).worker_slice_us == 0
    assert Capacity.from_env({"WEFT_SANDBOX_WORKER_SLICE_US": "750"}).worker_slice_us == 750
    with pytest.raises(ValueError, match="WEFT_SANDBOX_WORKER_SLICE_US"):
        Capacity.from_env({"WEFT_SANDBOX_WORKER_SLICE_US": "-1"})
    with pytest.raises(ValueError, match="WEFT_SANDBOX_WORKER_SLICE_US"):
        Capacity(worker_slice_us=-5)


def spawned_worker_faults(sandbox: ProcessSandbox, *, rehearse: bool) -> int:
    """Minor faults of a worker forked with or without rehearsal, once it says it is ready (it then waits)."""
    zygote = sandbox._ensure_zygote()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = zygote.spawn(theirs, rehearse=rehearse)
        theirs.close()
        ours.settimeout(DEADLINE_S)
        assert ours.recv(1) == READY
        faults = minor_faults(pid)
        zygote.finish(pid)
        return faults
    finally:
        ours.close()


def test_a_worker_rehearses_only_when_asked_and_says_when_it_is_ready(one_worker: ProcessSandbox) -> None:
    rehearsed = spawned_worker_faults(one_worker, rehearse=True)
    plain = spawned_worker_faults(one_worker, rehearse=False)
    assert rehearsed > plain + 300, (rehearsed, plain)


def test_readiness_is_peeked_without_taking_the_byte() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert not is_ready(ours)
        theirs.send(READY)
        assert is_ready(ours) and is_ready(ours)
        assert ours.recv(1) == READY
        theirs.close()
        assert is_ready(ours)  # a worker that went away: the run finds out how
    finally:
        ours.close()


def test_runs_that_find_their_worker_not_ready_make_the_pool_skip_rehearsals_until_one_is(
        one_worker: ProcessSandbox) -> None:
    first = ready_idle_worker(one_worker)
    rehearsed_faults = minor_faults(first)
    assert one_worker._pool._idle[0].channel.recv(1) == READY  # taken away: the run sees a worker not ready yet
    assert one_worker.run("1", {}).result == 1
    assert one_worker._pool.hurried
    hurried = ready_idle_worker(one_worker)  # forked without rehearsal
    assert minor_faults(hurried) < rehearsed_faults - 300, (minor_faults(hurried), rehearsed_faults)
    assert one_worker.run("2", {}).result == 2  # this worker was ready: rehearsals resume
    assert not one_worker._pool.hurried
    assert minor_faults(ready_idle_worker(one_worker)) > rehearsed_faults - 150
