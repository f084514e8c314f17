"""The adversarial suite: every attack is run with the AST policy on and, separately, with it off.

With the policy on, each attack must be refused by the policy (or, where the policy allows the construct, by the
run-time guards, the module proxies or a limit). With the policy off, only the worker process stands in the way, and
it must hold on its own. Either way no canary may be touched and no secret may appear in anything returned.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from shared.errors import SandboxLimitExceeded, SandboxViolation
from shared.sandbox import CodeResult, Limits, ProcessSandbox

from .conftest import Canaries, live_workers

LIMITS = Limits(cpu_seconds=0.5, wall_seconds=3, memory_bytes=256 * 1024 * 1024, stdout_bytes=16_384,
                max_tool_calls=50)

# Recovers the real builtins and import through an object-graph walk (only possible with the policy off).
PRE = """
def _real_builtins():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "catch_warnings":
            return cls()._module.__builtins__
    raise RuntimeError("catch_warnings not found")
B = _real_builtins()
imp = B["__import__"]
os = imp("os")
"""


def fullwidth(text: str) -> str:
    """ASCII letters as FULLWIDTH letters (the parser folds identifiers back with NFKC)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in text)


def math_bold(text: str) -> str:
    """Lowercase letters as MATHEMATICAL BOLD letters."""
    return "".join(chr(0x1D41A + ord(c) - ord("a")) if c.islower() else c for c in text)


@dataclass(frozen=True)
class Attack:
    id: str
    code: str
    on: str = "violation"
    """Expected outcome with the policy on: violation, limit, or error (the code fails harmlessly)."""
    limit_both: bool = False
    """A resource bomb: must raise SandboxLimitExceeded with the policy off too."""
    runtime: bool = False
    """Closed at run time as well: a violation even with the AST check off (audit hook, guards, match check)."""


ATTACKS = [
    # object-graph walks
    Attack("subclasses-open-secret", PRE + "result = B['open']('{secret_path}').read()"),
    Attack("subclasses-wrap-close-system",
           "for c in ().__class__.__base__.__subclasses__():\n    if c.__name__ == '_wrap_close':\n"
           "        result = c.__init__.__globals__['system']('touch {touch_path}')\nassert result == 0, result"),
    Attack("mro-walk", "type(1).mro()[-1].__subclasses__()"),
    Attack("fileio-subclass-read",
           "def walk(c):\n    for s in type.__subclasses__(c):\n        yield s\n        yield from walk(s)\n"
           "io = [c for c in walk(object) if c.__name__ == 'FileIO'][0]\nresult = io('{secret_path}').read()"),
    # frames
    Attack("generator-frame-globals",
           "def g():\n    f = me.gi_frame\n    while f is not None:\n        if 'os' in f.f_globals:\n"
           "            yield f.f_globals['os']\n        f = f.f_back\nme = g()\n"
           "result = next(me).open('{secret_path}', 0)"),
    Attack("coroutine-frame-builtins",
           "async def c():\n    pass\nco = c()\nresult = co.cr_frame.f_builtins['open']('{secret_path}').read()"),
    Attack("running-coroutine-frame-walk",
           "import asyncio\nasync def c():\n    f = asyncio.current_task().get_coro().cr_frame\n"
           "    while f is not None:\n        if 'open' in f.f_builtins:\n"
           "            return f.f_builtins['open']('{secret_path}').read()\n        f = f.f_back\n"
           "    return 'not found'\nawait c()"),
    Attack("async-generator-frame", "async def a():\n    yield 1\nresult = a().ag_frame.f_globals"),
    Attack("traceback-frame",
           "try:\n    1 / 0\nexcept Exception as e:\n    tb = e.__traceback__\n"
           "    result = tb.tb_frame.f_back.f_globals['__builtins__']['open']('{secret_path}').read()"),
    Attack("task-stack-frames",
           "import asyncio\nasync def m():\n    return asyncio.current_task().get_stack()[0].f_globals\nawait m()"),
    # format strings
    Attack("format-attribute-walk", "result = '{0.__class__.__base__.__subclasses__}'.format(0)"),
    Attack("format-map-attribute", "result = '{x.__class__}'.format_map({'x': 0})"),
    Attack("format-computed-template", "t = '{0.__cl' + 'ass__}'\nresult = t.format(0)", on="violation"),
    Attack("format-unbound", "result = str.format('{0.__init__.__glo' + 'bals__}', len)", on="violation"),
    Attack("string-formatter", "import string\nresult = string.Formatter().format('{0.__globals__}', len)",
           on="violation"),
    Attack("format-through-super",
           "class S(str):\n    def f(self):\n        return super().format(len)\n"
           "result = S('{0.__init__.__globals__}').f()", on="violation"),
    Attack("format-frame-field", "def g():\n    yield\nresult = '{0.gi_frame.f_globals}'.format(g())"),
    # unicode-normalised identifiers
    Attack("fullwidth-eval", fullwidth("eval") + "('1')"),
    Attack("math-bold-exec", math_bold("exec") + "('x = 1')"),
    Attack("fullwidth-import", "__" + fullwidth("import") + "__('os').system('touch {touch_path}')"),
    Attack("fullwidth-open", fullwidth("open") + "('{secret_path}').read()"),
    Attack("fullwidth-getattr-literal", "getattr(0, '__" + fullwidth("class") + "__')"),
    # import tricks
    Attack("import-os", "import os\nos.system('touch {touch_path}')"),
    Attack("import-importlib", "import importlib\nimportlib.import_module('os')"),
    Attack("sys-modules", "import sys\nsys.modules['os'].system('touch {touch_path}')"),
    Attack("dunder-import", "__import__('os')"),
    Attack("private-from-import", "from random import _os\n_os.system('touch {touch_path}')"),
    Attack("random-private-os", "import random\nrandom._os.system('touch {touch_path}')", on="error"),
    Attack("json-submodule", "import json\njson.decoder.scanstring", on="error"),
    Attack("asyncio-subprocess", "import asyncio\nawait asyncio.create_subprocess_shell('touch {touch_path}')",
           on="error"),
    Attack("asyncio-executor", "import asyncio\nawait asyncio.get_event_loop().run_in_executor(None, print)",
           on="error"),
    Attack("typing-eval", "import typing\ntyping.get_type_hints", on="error"),
    Attack("computed-getattr", "getattr(0, '__cl' + 'ass__')"),
    Attack("aliased-getattr", "g = getattr\ng(0, '__cl' + 'ass__')", on="violation"),
    Attack("update-wrapper-globals",
           "import functools, json\ndef f():\n    pass\n"
           "functools.update_wrapper(f, json.dumps, assigned=(), updated=('__glo' + 'bals__',))", on="violation"),
    # attribute access on tool stubs
    Attack("stub-globals", "result = get_secret.__globals__"),
    Attack("stub-closure", "result = get_secret.__closure__"),
    Attack("stub-code", "result = get_secret.__code__.co_consts"),
    Attack("stub-introspection-policy-off",
           "g = get_secret.__globals__\nresult = [repr(v)[:200] for v in g.values()]\n"
           "result += [repr(c.cell_contents)[:200] for c in (get_secret.__closure__ or ())]"),
    Attack("gc-walk-for-secrets", PRE + "gc = imp('gc')\nresult = [o for o in gc.get_objects() if isinstance(o, dict)"
           " and '{env_name}' in o]"),
    # the operating system, reached with the policy off
    Attack("os-open-secret", PRE + "fd = os.open('{secret_path}', os.O_RDONLY)\nresult = os.read(fd, 100)"),
    Attack("pathlib-read", PRE + "result = imp('pathlib').Path('{secret_path}').read_text()"),
    Attack("write-touch-path", PRE + "B['open']('{touch_path}', 'w').write('x')"),
    Attack("mkdir-touch-path", PRE + "os.mkdir('{touch_path}')"),
    Attack("symlink-touch-path", PRE + "os.symlink('{secret_path}', '{touch_path}')"),
    Attack("mknod-touch-path", PRE + "os.mknod('{touch_path}')"),
    Attack("rename-secret", PRE + "os.rename('{secret_path}', '{touch_path}')"),
    Attack("unlink-secret", PRE + "os.unlink('{secret_path}')"),
    Attack("chmod-secret", PRE + "os.chmod('{secret_path}', 0o777)"),
    Attack("utime-secret", PRE + "os.utime('{secret_path}', (0, 0))"),
    Attack("truncate-secret", PRE + "os.truncate('{secret_path}', 0)"),
    Attack("socket-connect", PRE + "s = imp('socket').create_connection(('127.0.0.1', {port}), timeout=1)"),
    Attack("socket-udp",
           PRE + "so = imp('socket')\nso.socket(so.AF_INET, so.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))"),
    Attack("socket-unix", PRE + "so = imp('socket')\nso.socket(so.AF_UNIX, so.SOCK_STREAM)"),
    Attack("socketpair", PRE + "imp('socket').socketpair()"),
    Attack("os-system", PRE + "result = os.system('touch {touch_path}')\nassert result == 0, result"),
    Attack("subprocess-run", PRE + "imp('subprocess').run(['touch', '{touch_path}'], check=True)"),
    Attack("fork", PRE + "pid = os.fork()\nif pid == 0:\n    os.mkdir('{touch_path}')\n    os._exit(0)"),
    Attack("posix-spawn", PRE + "os.posix_spawn('/usr/bin/touch', ['touch', '{touch_path}'], {})"),
    Attack("execv", PRE + "os.execv('/usr/bin/touch', ['touch', '{touch_path}'])"),
    Attack("environment", PRE + "result = dict(os.environ)\nassert '{env_name}' in result"),
    Attack("proc-environ", PRE + "result = B['open']('/proc/self/environ').read()"),
    Attack("proc-parent-environ", PRE + "result = B['open'](f'/proc/{os.getppid()}/environ').read()"),
    Attack("kill-zygote", PRE + "os.kill(os.getppid(), 9)"),
    Attack("kill-everyone", PRE + "os.kill(-1, 9)"),
    Attack("ctypes-raw-fork", PRE + "ct = imp('ctypes')\nassert ct.CDLL(None).syscall(57) >= 0"),
    Attack("ctypes-raw-open", PRE + "ct = imp('ctypes')\nassert ct.CDLL(None).open(b'{secret_path}', 0) >= 0"),
    Attack("ctypes-unshare-userns", PRE + "ct = imp('ctypes')\nassert ct.CDLL(None).unshare(0x10000000) == 0"),
    Attack("ctypes-io-uring", PRE + "ct = imp('ctypes')\nassert ct.CDLL(None).syscall(425, 8, 0) >= 0"),
    Attack("thread-outlives-run", PRE + "t = imp('threading').Thread(target=lambda: os.mkdir('{touch_path}'))\n"
           "t.start()"),
    Attack("channel-garbage", PRE + "os.write(3, b'\\x00\\x00\\x00\\x05hello')\nimp('time').sleep(5)"),
    Attack("channel-forged-tool-call",
           PRE + "os.write(3, imp('json').dumps({'t': 'calls', 'calls': [{'id': 'c1', 'tool': 'open', 'args': [],"
           " 'kwargs': {}}]}).encode().__len__().to_bytes(4, 'big') + imp('json').dumps({'t': 'calls', 'calls': "
           "[{'id': 'c1', 'tool': 'open', 'args': [], 'kwargs': {}}]}).encode())\nimp('time').sleep(5)"),
    Attack("channel-huge-frame", PRE + "os.write(3, b'\\xff\\xff\\xff\\xff')\nimp('time').sleep(5)"),
    # resource bombs: stopped within limits whatever the policy
    Attack("cpu-loop", "while True:\n    pass", on="limit", limit_both=True),
    Attack("cpu-in-c", "sum(range(10**13))", on="limit", limit_both=True),
    Attack("memory-at-once", "x = bytearray(10**11)", on="limit", limit_both=True),
    Attack("memory-growth", "x = []\nwhile True:\n    x.append(bytearray(10**7))", on="limit", limit_both=True),
    Attack("deep-recursion", "def f(n):\n    return f(n + 1)\nf(0)", on="limit", limit_both=True),
    Attack("nested-data-repr", "x = []\nfor _ in range(10**5):\n    x = [x]\nrepr(x)", on="limit", limit_both=True),
    Attack("output-flood", "while True:\n    print('A' * 1000)", on="limit", limit_both=True),
    Attack("one-huge-print", "print('A' * 10**7)", on="limit", limit_both=True),
    Attack("tool-call-flood", "import asyncio\nawait asyncio.gather(*[get_secret() for _ in range(10**4)])",
           on="limit", limit_both=True),
    Attack("task-flood", "import asyncio\nasync def f():\n    await asyncio.sleep(1)\nwhile True:\n"
           "    asyncio.create_task(f())\n    await asyncio.sleep(0)", on="limit", limit_both=True),
    Attack("slow-tool-wall-clock", "await slow()", on="limit", limit_both=True),
    Attack("sleep-forever", "import time\nwhile True:\n    time.sleep(1000)", on="limit", limit_both=True),
    Attack("raise-cpu-limit", PRE + "r = imp('resource')\ntry:\n    r.setrlimit(r.RLIMIT_CPU, (100, 100))\n"
           "except B['Exception']:\n    pass\nwhile True:\n    pass", limit_both=True),
    Attack("disable-cpu-timer", PRE + "sg = imp('signal')\nsg.setitimer(sg.ITIMER_PROF, 0)\nsg.signal(sg.SIGXCPU, "
           "sg.SIG_IGN)\nwhile True:\n    pass", limit_both=True),
    Attack("block-on-channel", PRE + "os.read(3, 10)", limit_both=True),
]


# Issue 13: whole classes closed at the Python layer, at run time as well as in the AST check. Each ends, if it ever
# got through, by reaching object.__subclasses__() or a file, which the test asserts never happens.
WALK = "\nresult = [c.__name__ for c in type.__subclasses__(object)]"
CLASS_ATTACKS = [
    # the class graph
    Attack("mro-method", "result = type(0).mro()[-1]" + WALK),
    Attack("type-mro-unbound", "result = type.mro(int)"),
    Attack("getattr-mro-literal", "result = getattr(int, 'mro')()"),
    Attack("getattr-mro-computed", "result = getattr(int, 'm' + 'ro')()", runtime=True),
    Attack("format-mro-field", "result = ('{0.m' + 'ro}').format(int)", runtime=True),
    # formatter internals
    Attack("formatter-get-field",
           "import string\nresult = string.Formatter().get_field('0.__glo' + 'bals__', [len], {})", runtime=True),
    Attack("formatter-vformat",
           "import string\nresult = string.Formatter().vformat('{0.__init__.__glo' + 'bals__}', [1], {})",
           runtime=True),
    Attack("formatter-subclass-get-value",
           "import string\nclass F(string.Formatter):\n    def get_value(self, key, args, kwargs):\n"
           "        return len\nresult = F().format('{x.__self__.__glo' + 'bals__}')", runtime=True),
    Attack("formatter-super-real-class",
           "import string\nf = string.Formatter()\n"
           "result = super(string.Formatter, f).get_field('0.__globals__', [len], {})",
           on="error"),
    Attack("formatter-class-hierarchy", "import string\nresult = string.Formatter.mro()[-2].get_field"),
    # match / isinstance metaclass tricks
    Attack("match-metaclass-instancecheck",
           "M = type('M', (type,), {'__instancecheck__': lambda c, o: True, '__match_args__': ('__globals__',)})\n"
           "C = M('C', (), {})\nmatch len:\n    case C(g):\n        result = g['__builtins__']", runtime=True),
    Attack("match-args-dunder", "C = type('C', (), {'__match_args__': ('__globals__',)})\n"
           "def f():\n    pass\nmatch f:\n    case C(g):\n        result = g", runtime=True),
    Attack("match-abcmeta-subclass",
           "import collections.abc\nM = type('M', (type(collections.abc.Mapping),), {'__instancecheck__': "
           "lambda c, o: True, '__match_args__': ('__globals__',)})\nC = M('C', (), {})\n"
           "match len:\n    case C(g):\n        result = g", runtime=True),
    Attack("match-args-frame", "C = type('C', (), {'__match_args__': ('gi_frame',)})\ndef g():\n    yield\n"
           "match g():\n    case C(f):\n        result = f", runtime=True),
    Attack("match-metaclass-class-statement",
           "M = type('M', (type,), {'__instancecheck__': lambda c, o: True})\nclass C(metaclass=M):\n    pass\n"
           "match len:\n    case C():\n        result = 'matched'", runtime=True),
    # eval hidden in library functions
    Attack("singledispatch-string-annotation",
           "import functools\n@functools.singledispatch\ndef f(x):\n    return 0\n"
           "def g(x: '[c.__name__ for c in ().__class__.__base__.__subclasses__()]'):\n    return 1\nf.register(g)",
           runtime=True),
    Attack("singledispatch-future-annotations",
           "from __future__ import annotations\nimport functools\n@functools.singledispatch\ndef f(x):\n    return 0\n"
           "@f.register\ndef _(x: type(0).__base__.__subclasses__()):\n    return 1"),
    Attack("singledispatchmethod-string",
           "import functools\nclass A:\n    @functools.singledispatchmethod\n    def m(self, x):\n        return 0\n"
           "    @m.register\n    def _(self, x: 'int'):\n        return 1\nresult = A().m(1)", runtime=True),
    Attack("namedtuple-field-injection",
           "import collections\ncollections.namedtuple('P', ['x', 'y=open(\"{secret_path}\").read()'])", on="error"),
    # frames and code objects, reached without the AST seeing them
    Attack("code-object-getattr", "f = lambda: 0\nresult = getattr(f, '__co' + 'de__').co_consts", runtime=True),
    Attack("generator-frame-format", "def g():\n    yield\nresult = ('{0.gi_fr' + 'ame.f_globals}').format(g())",
           runtime=True),
    Attack("traceback-frame-format",
           "try:\n    1 / 0\nexcept Exception as e:\n    result = ('{0.__trace' + 'back__.tb_frame}').format(e)",
           runtime=True),
    Attack("setattr-code", "def f():\n    pass\nsetattr(f, '__co' + 'de__', None)", runtime=True),
    Attack("tool-call-inner-frame", "g = get_secret\nc = g()\nresult = c._start().cr_frame.f_back"),
    Attack("generator-frame-plain", "def g():\n    yield\nresult = g().gi_frame.f_globals"),
]
ATTACKS += CLASS_ATTACKS
RUNTIME_ATTACKS = [a for a in CLASS_ATTACKS if a.runtime] + [
    Attack("generator-frame-no-ast", "def g():\n    yield\nresult = g().gi_frame.f_globals"),
    Attack("tool-call-frame-no-ast", "g = get_secret\nc = g()\nresult = c._start().cr_frame.f_back"),
    Attack("code-object-no-ast", "f = lambda: 0\nresult = f.__code__.co_consts"),
]


def _tools(canaries: Canaries, release: threading.Event) -> dict[str, Any]:
    held = {"secret": canaries.secret}

    def get_secret() -> str:
        assert held["secret"]  # the tool holds the secret; the sandbox must never see it
        return "ok"

    def slow() -> str:
        release.wait(timeout=10)
        return "late"

    return {"get_secret": get_secret, "slow": slow}


def _attempt(sandbox: ProcessSandbox, code: str, canaries: Canaries) -> tuple[str, Any]:
    release = threading.Event()
    try:
        result = sandbox.run(canaries.fill(code), _tools(canaries, release), LIMITS)
    except SandboxViolation as exc:
        return "violation", exc.message
    except SandboxLimitExceeded as exc:
        return "limit", exc.message
    finally:
        release.set()
    assert isinstance(result, CodeResult)
    return ("error" if result.error else "result"), result


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.id)
def test_policy_on_refuses_the_attack(policy_on: ProcessSandbox, canaries: Canaries, attack: Attack) -> None:
    started = time.monotonic()
    kind, outcome = _attempt(policy_on, attack.code, canaries)
    assert canaries.breaches(outcome) == []
    assert "_wrap_close" not in repr(outcome)  # no object.__subclasses__() list came back
    assert live_workers(policy_on) == []
    assert kind == attack.on, outcome
    assert time.monotonic() - started < LIMITS.wall_seconds + 3


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.id)
def test_process_isolation_holds_without_the_policy(policy_off: ProcessSandbox, canaries: Canaries,
                                                    attack: Attack) -> None:
    started = time.monotonic()
    kind, outcome = _attempt(policy_off, attack.code, canaries)
    assert canaries.breaches(outcome) == []
    assert live_workers(policy_off) == []
    if attack.limit_both:
        assert kind == "limit", outcome
    assert time.monotonic() - started < LIMITS.wall_seconds + 3
    assert policy_off.run("21 * 2", {}).result == 42  # the sandbox itself survived


FALLBACK_ATTACKS = [a for a in ATTACKS if a.id in {
    "subclasses-open-secret", "os-open-secret", "pathlib-read", "write-touch-path", "socket-connect", "socket-udp",
    "socket-unix", "socketpair", "os-system", "subprocess-run", "fork", "environment", "proc-environ",
    "kill-zygote", "ctypes-raw-open", "thread-outlives-run", "cpu-loop", "memory-growth", "block-on-channel",
}]


@pytest.mark.parametrize("attack", FALLBACK_ATTACKS, ids=lambda a: a.id)
def test_the_documented_fallback_holds_without_seccomp(fallback: ProcessSandbox, canaries: Canaries,
                                                       attack: Attack) -> None:
    """Without seccomp: no new file descriptors (RLIMIT_NOFILE), no processes (nobody + RLIMIT_NPROC), no env."""
    kind, outcome = _attempt(fallback, attack.code, canaries)
    assert canaries.breaches(outcome) == []
    assert live_workers(fallback) == []
    if attack.limit_both:
        assert kind == "limit", outcome


def test_tasks_left_running_never_call_tools_after_the_run(policy_on: ProcessSandbox) -> None:
    calls: list[str] = []
    code = (
        "import asyncio\nasync def later():\n    await asyncio.sleep(1)\n    await record('late')\n"
        "asyncio.get_event_loop().create_task(later())\nawait record('now')\nresult = 'returned'"
    )
    result = policy_on.run(code, {"record": calls.append})
    assert result.result == "returned"
    assert calls == ["now"]
    assert live_workers(policy_on) == []


def test_a_worker_is_never_reused(policy_off: ProcessSandbox) -> None:
    code = PRE + "result = os.getpid()"
    pids = {policy_off.run(code, {}).result for _ in range(3)}
    with pytest.raises(SandboxViolation):
        policy_off.run(PRE + "os.write(3, b'\\x00\\x00\\x00\\x01x')\nimp('time').sleep(5)", {})
    pids.add(policy_off.run(code, {}).result)
    assert len(pids) == 4


def test_the_isolation_layers_are_reported(policy_on: ProcessSandbox) -> None:
    layers = policy_on.isolation()
    assert {"process", "fds", "rlimits", "cpu-timer", "empty-env"} <= set(layers)
    import os
    import platform

    if platform.machine() == "x86_64":
        assert "seccomp" in layers
    if os.geteuid() == 0:
        assert {"netns", "uid"} <= set(layers)


@pytest.mark.parametrize("attack", RUNTIME_ATTACKS, ids=lambda a: a.id)
def test_the_runtime_layer_refuses_without_the_ast_check(policy_off: ProcessSandbox, canaries: Canaries,
                                                         attack: Attack) -> None:
    """The classes the policy closes are closed at run time too: with the AST check off, still a violation."""
    kind, outcome = _attempt(policy_off, attack.code, canaries)
    assert canaries.breaches(outcome) == []
    assert "_wrap_close" not in repr(outcome)
    assert kind == "violation", outcome


def test_the_published_count_of_new_attempts() -> None:
    print(f"\nadversarial suite: {len(ATTACKS)} attacks, {len(CLASS_ATTACKS)} new in issue 13 "
          f"({len(RUNTIME_ATTACKS)} also refused at run time without the AST check)")
    assert len(CLASS_ATTACKS) >= 20
