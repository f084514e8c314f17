"""Operating-system confinement of one sandbox worker process (Linux), applied after fork and before any code runs.

Worker side, stdlib only. Layers (each reported by name when it held). :meth:`Confiner.prepare` applies everything
that needs nothing from the job while a pre-forked worker waits for it, off the run's path; :meth:`Confiner.apply`
adds what takes the job's limits once the job has arrived, before any of its code runs:

``fds``         stdin/stdout/stderr are ``/dev/null``, the channel to the parent is fd 3, every other fd is closed.
``netns``       a fresh, empty network namespace (``unshare(CLONE_NEWNET)``; only when running as root).
``uid``         when started as root: all groups dropped, real/effective/saved uid and gid set to ``nobody``.
``empty-env``   ``os.environ`` is empty (the zygote itself was started with only ``PYTHONHASHSEED``/``TZ``/``LANG``).
``rlimits``     ``RLIMIT_NOFILE=4`` (no new file descriptor can be created at all: no ``open``, ``socket``,
                ``pipe``), ``RLIMIT_NPROC=0``, ``RLIMIT_FSIZE=0``, no core dumps (prepare); CPU seconds and address
                space from the job (apply). Reported once all are set.
``cpu-timer``   ``ITIMER_PROF`` at the exact CPU budget, so the run stops with a clean report (RLIMIT_CPU is the
                whole-second backstop that kills it if it is stuck inside C code).
``seccomp``     (x86_64) ``no_new_privs`` plus a BPF filter that fails with EPERM: creating sockets and connecting,
                fork/vfork/clone/exec, opening or creating any file, every path-mutating call (unlink, rename, mkdir,
                chmod, chown, utime, link, mknod, truncate, xattrs), signals to other processes, ptrace and
                process_vm_*, namespaces, mounts, io_uring, bpf, perf, keyrings, changing rlimits or credentials,
                setting clocks; syscalls from other ABIs (x32, i386) are refused or kill the process. Installed in two
                stacked parts: the filter minus ``setrlimit``/``prlimit64`` in prepare, and after the job's rlimits
                are set, a second filter refusing those two (filters only ever add refusals). Reported once both
                hold, so a run's code always meets the whole filter.
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import os
import platform
import resource
import signal
import struct
from collections.abc import Callable
from typing import Any

CHANNEL_FD = 3
NOBODY = 65534
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
EPERM = 1

# x86_64 syscall numbers refused by the filter (see the module docstring for the groups).
DENIED_SYSCALLS_X86_64 = {
    "network": (41, 42, 43, 49, 50, 53, 288, 46, 307),  # socket connect accept bind listen socketpair accept4 sendmsg
    "processes": (56, 57, 58, 59, 322, 435),  # clone fork vfork execve execveat clone3
    "files": (2, 85, 257, 303, 304, 437, 319),  # open creat openat name_to_handle_at open_by_handle_at openat2 memfd
    "file-mutation": (
        76, 77, 82, 83, 84, 86, 87, 88, 90, 91, 92, 93, 94, 132, 133, 188, 189, 190, 197, 198, 199, 235, 258, 259,
        260, 261, 263, 264, 265, 266, 268, 280, 316,
    ),
    "other-processes": (62, 101, 129, 200, 234, 297, 310, 311, 424, 434, 438, 141, 251, 256, 279),
    "system": (
        103, 134, 135, 136, 139, 153, 155, 159, 161, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 175, 176,
        179, 227, 246, 248, 249, 250, 272, 298, 305, 308, 313, 320, 321, 323, 425, 426, 427, 428, 429, 430, 431, 432,
        433, 442,
    ),
    "credentials": (105, 106, 113, 114, 116, 117, 119, 122, 123, 126, 160, 302),
}
# setrlimit and prlimit64: refused by the second, sealing filter, once the job's own rlimits are set.
LIMIT_SYSCALLS_X86_64 = (160, 302)
STATIC_RLIMITS = (
    (resource.RLIMIT_NOFILE, (CHANNEL_FD + 1, CHANNEL_FD + 1)),
    (resource.RLIMIT_NPROC, (0, 0)),
    (resource.RLIMIT_FSIZE, (0, 0)),
    (resource.RLIMIT_CORE, (0, 0)),
    (resource.RLIMIT_MEMLOCK, (0, 0)),
    (resource.RLIMIT_MSGQUEUE, (0, 0)),
)


# sched_setattr/sched_getattr by architecture (glibc has no wrapper).
SCHED_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64), ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


def sched_slice_ns(pid: int = 0) -> int | None:
    """The scheduler slice of ``pid`` (0: this thread) in nanoseconds, or None where it cannot be read."""
    numbers = SCHED_SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    sched = _SchedAttr()
    libc: Any = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(numbers[1], pid, ctypes.byref(sched), ctypes.sizeof(sched), 0) != 0:
        return None
    return int(sched.sched_runtime)


def request_sched_slice(microseconds: int) -> bool:
    """Ask for a ``microseconds`` scheduler slice for this thread (inherited by children forked after it), keeping
    its policy and nice value; whether the kernel accepted it. A shorter slice changes when a task runs, not how much
    CPU it gets (EEVDF custom slices, Linux 6.12+; older kernels accept and ignore it). Only under a time-sharing
    policy (normal, batch, idle): a real-time or deadline policy is left alone."""
    numbers = SCHED_SYSCALLS.get(platform.machine())
    if numbers is None or microseconds <= 0:
        return False
    policy = os.sched_getscheduler(0)
    if policy not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        return False
    sched = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=policy,
                       sched_nice=os.getpriority(os.PRIO_PROCESS, 0), sched_runtime=microseconds * 1000)
    libc: Any = ctypes.CDLL(None, use_errno=True)
    return bool(libc.syscall(numbers[0], 0, ctypes.byref(sched), 0) == 0)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _bpf_program(denied: list[int]) -> list[tuple[int, int, int, int]]:
    """Kill on a foreign architecture, refuse x32 and every ``denied`` number with EPERM, allow the rest."""
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, …JGE…, BPF_RET|BPF_K
    program = [
        (ld_abs, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, AUDIT_ARCH_X86_64),
        (ret, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (ld_abs, 0, 0, 0),  # seccomp_data.nr
        (jge, 0, 1, X32_SYSCALL_BIT),
        (ret, 0, 0, SECCOMP_RET_ERRNO | EPERM),
    ]
    for number in denied:
        program.append((jeq, 0, 1, number))
        program.append((ret, 0, 0, SECCOMP_RET_ERRNO | EPERM))
    program.append((ret, 0, 0, SECCOMP_RET_ALLOW))
    return program


class Confiner:
    """Prepared once in the zygote (libc handle, BPF program), applied in each forked worker."""

    def __init__(self, *, seccomp: bool, network_namespace: bool, drop_privileges: bool) -> None:
        libc: Any = ctypes.CDLL(None, use_errno=True)
        self._unshare, self._prctl = libc.unshare, libc.prctl  # resolved here, before fork, not in every worker
        self._want_seccomp = seccomp and platform.machine() == "x86_64" and struct.calcsize("P") == 8
        self._want_netns = network_namespace
        self._want_drop = drop_privileges
        denied = {n for group in DENIED_SYSCALLS_X86_64.values() for n in group}
        self._filters, self._fprog = _compile(_bpf_program(sorted(denied - set(LIMIT_SYSCALLS_X86_64))))
        self._seal_filters, self._seal = _compile(_bpf_program(sorted(LIMIT_SYSCALLS_X86_64)))
        self._filtered = False  # the first filter holds in this process (a worker)
        self._devnull = os.open(os.devnull, os.O_RDWR)

    def arrange_fds(self, channel: int) -> None:
        """Make fd 3 the channel and 0-2 ``/dev/null``; close everything else."""
        high = fcntl.fcntl(channel, fcntl.F_DUPFD, 10)  # above 0-3, so the dup2 calls below cannot clobber it
        for fd in (0, 1, 2):
            os.dup2(self._devnull, fd)
        os.dup2(high, CHANNEL_FD)
        os.closerange(CHANNEL_FD + 1, 1 << 16)

    def prepare(self, *, zygote_pid: int) -> list[str]:
        """The layers that need nothing from the job (network namespace, uid, parent-death signal, empty
        environment, the fixed rlimits, the seccomp filter but for its rlimit calls), applied while a pre-forked
        worker waits for its job, off the run's path. No code of the run exists yet."""
        layers = ["fds"]
        root = os.geteuid() == 0
        if self._want_netns and root and self._unshare(CLONE_NEWNET) == 0:
            layers.append("netns")
        if self._want_drop and root:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            layers.append("uid")
        self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != zygote_pid:
            os._exit(70)
        os.environ.clear()
        layers.append("empty-env")
        for which, value in STATIC_RLIMITS:
            resource.setrlimit(which, value)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self._filtered = self._want_seccomp and self._install(self._fprog)
        return layers

    def apply(self, *, cpu_seconds: float, memory_bytes: int, on_cpu_exhausted: Callable[[], None]) -> list[str]:
        """The layers that take the job's limits, after :meth:`prepare` and before any code runs; returns the names
        of those that held (lowering limits needs no privilege, so the uid drop can come first)."""
        layers = []
        whole = max(1, math.ceil(cpu_seconds))
        resource.setrlimit(resource.RLIMIT_CPU, (whole + 1, whole + 2))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        layers.append("rlimits")
        signal.signal(signal.SIGPROF, lambda _signum, _frame: on_cpu_exhausted())
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
        layers.append("cpu-timer")
        if self._filtered and self._seal_limits():
            layers.append("seccomp")
        return layers

    def probe_seccomp(self) -> str | None:
        """Install the filter in a throwaway child (the zygote itself stays unfiltered); why it failed, or None."""
        if not self._want_seccomp:
            return "the seccomp layer is switched off" if platform.machine() == "x86_64" else (
                f"seccomp filters exist here only for x86_64, not {platform.machine()}")
        pid = os.fork()
        if pid == 0:
            code = 0
            if self._prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                code = 100 + ctypes.get_errno()
            elif not all(
                self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) == 0
                for program in (self._fprog, self._seal)
            ):
                code = 200 + ctypes.get_errno()
            os._exit(min(code, 255))
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            return None
        step = "prctl(PR_SET_NO_NEW_PRIVS)" if code < 200 else "prctl(PR_SET_SECCOMP)"
        errno = code % 100
        return f"{step} failed with errno {errno} ({os.strerror(errno)})" if code > 0 else f"the probe died ({code})"

    def _install(self, program: _SockFprog) -> bool:
        if self._prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) == 0

    def _seal_limits(self) -> bool:
        """Refuse setrlimit/prlimit64 from now on (the job's rlimits are set)."""
        return self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._seal), 0, 0) == 0


def _compile(program: list[tuple[int, int, int, int]]) -> tuple[Any, _SockFprog]:
    """The filter array and the ``sock_fprog`` pointing at it (the array must outlive every use of the pointer)."""
    filters = (_SockFilter * len(program))(*[_SockFilter(*step) for step in program])
    return filters, _SockFprog(len(program), filters)
