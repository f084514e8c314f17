"""The sandbox policy: what code may use, as named data, and the AST check that enforces it before anything runs.

The check is the first of two layers; the second (the worker process, see :mod:`shared.sandbox.process`) holds on its
own even when this one is bypassed. Violations are reported all at once, written for the LLM that wrote the code:
what was forbidden, why, what to use instead and the closest allowed name.
"""

from __future__ import annotations

import _string
import ast
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.errors import SandboxViolation, quoted
from shared.python_ast import parse
from shared.suggestions import close_matches

__all__ = [
    "ALLOWED_BUILTINS",
    "ALLOWED_MODULES",
    "ALLOWED_NODE_TYPES",
    "FORBIDDEN_ATTRIBUTES",
    "FORBIDDEN_ATTRIBUTE_PREFIXES",
    "FORBIDDEN_NAMES",
    "NAME_ARGUMENT_BUILTINS",
    "RUNTIME_EVENTS",
    "SPECIAL_METHODS",
    "Problem",
    "check_code",
    "find_problems",
    "worker_policy",
]

TYPING_EXPORTS: Final = (
    "Any", "AsyncIterator", "Awaitable", "Callable", "ClassVar", "Coroutine", "DefaultDict", "Deque", "Dict",
    "Final", "FrozenSet", "Generic", "Iterable", "Iterator", "List", "Literal", "Mapping", "MutableMapping",
    "NamedTuple", "Optional", "Sequence", "Set", "Tuple", "Type", "TypedDict", "TypeVar", "Union", "cast",
)

ALLOWED_MODULES: Final[Mapping[str, tuple[str, ...] | None]] = {
    # module -> exported names (None: every public name of the stdlib module; asyncio/time/random/datetime are
    # deterministic stand-ins built by the worker, see shared/sandbox/_shims.py)
    "__future__": ("annotations",),
    "asyncio": None,
    "collections": None,
    "collections.abc": None,
    "datetime": None,
    "decimal": None,
    "fractions": None,
    "functools": None,
    "itertools": None,
    "json": None,
    "math": None,
    "random": None,
    "re": None,
    "statistics": None,
    "string": None,
    "time": None,
    "typing": TYPING_EXPORTS,
}

ALLOWED_BUILTINS: Final = frozenset(
    {
        "abs", "aiter", "all", "anext", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
        "classmethod", "complex", "delattr", "dict", "dir", "divmod", "enumerate", "filter", "float", "format",
        "frozenset", "getattr", "hasattr", "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len",
        "list", "map", "max", "min", "next", "object", "oct", "ord", "pow", "print", "property", "range", "repr",
        "reversed", "round", "set", "setattr", "slice", "sorted", "staticmethod", "str", "sum", "super", "tuple",
        "type", "zip", "Ellipsis", "NotImplemented", "ToolError",
        # exceptions code may raise or catch
        "ArithmeticError", "AssertionError", "AttributeError", "BaseException", "BaseExceptionGroup",
        "Exception", "ExceptionGroup", "GeneratorExit", "IndexError", "KeyError", "LookupError", "NameError",
        "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError", "StopAsyncIteration",
        "StopIteration", "TimeoutError", "TypeError", "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError",
        "ValueError", "ZeroDivisionError",
    }
)

FORBIDDEN_NAMES: Final[Mapping[str, str]] = {
    "open": "there is no file system in the sandbox; get data through the tools",
    "eval": "running code built from strings is not allowed; write the code directly",
    "exec": "running code built from strings is not allowed; write the code directly",
    "compile": "running code built from strings is not allowed; write the code directly",
    "__import__": "use an import statement for one of the allowed modules",
    "globals": "namespaces cannot be inspected; keep your data in variables or a dict",
    "locals": "namespaces cannot be inspected; keep your data in variables or a dict",
    "vars": "namespaces cannot be inspected; read attributes directly",
    "breakpoint": "there is no debugger in the sandbox",
    "input": "the code runs unattended; there is no input",
    "help": "there is no interactive help in the sandbox",
    "exit": "to stop, return from main() or let the code end",
    "quit": "to stop, return from main() or let the code end",
    "memoryview": "raw memory access is not available; use bytes or bytearray",
}

NAME_ARGUMENT_BUILTINS: Final = frozenset({"getattr", "setattr", "hasattr", "delattr"})

SPECIAL_METHODS: Final = frozenset(
    {
        "__init__", "__new__", "__repr__", "__str__", "__format__", "__bytes__", "__hash__", "__bool__", "__len__",
        "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__iter__", "__next__", "__reversed__",
        "__contains__", "__getitem__", "__setitem__", "__delitem__", "__missing__", "__call__", "__enter__",
        "__exit__", "__aenter__", "__aexit__", "__aiter__", "__anext__", "__await__", "__getattr__",
        "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__", "__imul__",
        "__matmul__", "__rmatmul__", "__truediv__", "__rtruediv__", "__itruediv__", "__floordiv__",
        "__rfloordiv__", "__ifloordiv__", "__mod__", "__rmod__", "__imod__", "__divmod__", "__rdivmod__",
        "__pow__", "__rpow__", "__ipow__", "__neg__", "__pos__", "__abs__", "__invert__", "__and__", "__rand__",
        "__iand__", "__or__", "__ror__", "__ior__", "__xor__", "__rxor__", "__ixor__", "__lshift__", "__rshift__",
        "__int__", "__float__", "__complex__", "__index__", "__round__", "__trunc__", "__floor__", "__ceil__",
    }
)
"""Dunder names code may define in a class body and reach as attributes (``super().__init__(...)``)."""

READABLE_DUNDER_ATTRIBUTES: Final = frozenset({"__name__", "__qualname__", "__doc__"})
READABLE_DUNDER_NAMES: Final = frozenset({"__name__"})

FORBIDDEN_ATTRIBUTES: Final = frozenset(
    {"mro", "f_back", "f_builtins", "f_code", "f_globals", "f_lasti", "f_lineno", "f_locals", "f_trace",
     "f_trace_lines", "f_trace_opcodes", "get_stack", "print_stack"}
)
FORBIDDEN_ATTRIBUTE_PREFIXES: Final = ("gi_", "cr_", "ag_", "tb_", "co_")

RUNTIME_EVENTS: Final[Mapping[str, str]] = {
    # CPython audit event -> why the worker refuses it at run time (see shared/sandbox/_audit.py)
    "object.__getattr__": "frames, code objects and tracebacks' frames are not reachable",
    "exec": (
        "running code built from strings is not allowed, also inside library functions (string annotations "
        "evaluated by functools.singledispatch or typing.get_type_hints); use real classes, not strings, as "
        "annotations, or register types explicitly (@f.register(int))"
    ),
    "function.__new__": "functions can only be defined with def or lambda",
    "code.__new__": "code objects are not reachable",
    "object.__setattr__": "interpreter internals cannot be changed",
    "object.__delattr__": "interpreter internals cannot be changed",
    "sys._current_frames": "frames are not reachable",
    "sys.settrace": "tracing is not available",
    "sys.setprofile": "profiling is not available",
}
"""What the worker refuses at run time however the code got there (attribute syntax, getattr, a format field, a
match pattern or a library function): frames and code objects, executing code that did not pass the policy."""

_DUNDER_ALTERNATIVES: Final[Mapping[str, str]] = {
    "__class__": "use type(x) instead",
    "__dict__": "read the attributes you need directly",
    "__builtins__": "use the builtins directly",
    "__globals__": "there is no access to interpreter internals",
    "__subclasses__": "there is no access to interpreter internals",
    "__import__": "use an import statement for one of the allowed modules",
}

ALLOWED_NODE_TYPES: Final = tuple(
    getattr(ast, name)
    for name in (
        # module and statements
        "Module", "Expr", "Assign", "AugAssign", "AnnAssign", "For", "AsyncFor", "While", "If", "With", "AsyncWith",
        "Raise", "Try", "TryStar", "Assert", "Import", "ImportFrom", "Pass", "Break", "Continue", "Return", "Delete",
        "FunctionDef", "AsyncFunctionDef", "ClassDef", "Global", "Nonlocal", "Match",
        # expressions
        "BoolOp", "BinOp", "UnaryOp", "Lambda", "IfExp", "Dict", "Set", "ListComp", "SetComp", "DictComp",
        "GeneratorExp", "Await", "Yield", "YieldFrom", "Compare", "Call", "FormattedValue", "JoinedStr", "Constant",
        "Attribute", "Subscript", "Starred", "Name", "List", "Tuple", "Slice", "NamedExpr",
        # helpers, contexts and operators
        "comprehension", "ExceptHandler", "arguments", "arg", "keyword", "alias", "withitem", "match_case",
        "MatchValue", "MatchSingleton", "MatchSequence", "MatchMapping", "MatchClass", "MatchStar", "MatchAs",
        "MatchOr", "Load", "Store", "Del", "And", "Or", "Add", "Sub", "Mult", "MatMult", "Div", "Mod", "Pow",
        "LShift", "RShift", "BitOr", "BitXor", "BitAnd", "FloorDiv", "Invert", "Not", "UAdd", "USub", "Eq", "NotEq",
        "Lt", "LtE", "Gt", "GtE", "Is", "IsNot", "In", "NotIn", "type_ignore", "TypeIgnore",
    )
    if hasattr(ast, name)
)


@dataclass(frozen=True)
class Problem:
    """One policy violation: where, what, and what to do instead."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _closest(name: str, candidates: Iterator[str] | frozenset[str] | list[str]) -> str:
    matches = close_matches(name, candidates, n=1)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def attribute_problem(name: str) -> str | None:
    """Why ``name`` may not be used as an attribute, or None (the worker repeats this check at run time)."""
    if _is_dunder(name) and name not in SPECIAL_METHODS and name not in READABLE_DUNDER_ATTRIBUTES:
        alternative = _DUNDER_ALTERNATIVES.get(name, "names starting and ending with '__' are blocked")
        return f"attribute {quoted(name)} is not allowed: {alternative}"
    if name == "mro":
        return "attribute 'mro' is not allowed: the class graph is not reachable; use isinstance() or issubclass()"
    if name in FORBIDDEN_ATTRIBUTES or name.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
        return f"attribute {quoted(name)} is not allowed: frames, code objects and tracebacks are not reachable"
    return None


def _module_problem(module: str) -> str | None:
    if module in ALLOWED_MODULES and module != "__future__":
        return None
    allowed = ", ".join(m for m in ALLOWED_MODULES if m != "__future__")
    return (
        f"import of module {quoted(module)} is not allowed; allowed modules: {allowed}"
        f"{_closest(module, [m for m in ALLOWED_MODULES if m != '__future__'])}"
    )


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.bound: set[str] = set()
        self.forbidden_loads: list[tuple[ast.AST, str]] = []

    def finish(self) -> None:
        """Reading a forbidden builtin's name is a problem only where the code never binds that name itself."""
        for node, name in self.forbidden_loads:
            if name not in self.bound:
                self.add(
                    node, f"{name!r} is not allowed: {FORBIDDEN_NAMES[name]}{_closest(name, ALLOWED_BUILTINS)}"
                )

    def add(self, node: ast.AST, message: str) -> None:
        self.problems.append(Problem(getattr(node, "lineno", 0), message))

    def name(self, node: ast.AST, name: str, *, store: bool = False) -> None:
        if name in FORBIDDEN_NAMES:
            # the code may use the name for its own value (input = {...}); only reading the builtin is refused
            if store:
                self.bound.add(name)
            else:
                self.forbidden_loads.append((node, name))
        elif _is_dunder(name) and (store or name not in READABLE_DUNDER_NAMES):
            alternative = _DUNDER_ALTERNATIVES.get(name, "names starting and ending with '__' are reserved")
            self.add(node, f"name {quoted(name)} is not allowed: {alternative}")

    def attribute(self, node: ast.AST, name: str) -> None:
        problem = attribute_problem(name)
        if problem:
            self.add(node, problem)

    def visit(self, node: ast.AST, in_class: bool) -> None:
        if not isinstance(node, ALLOWED_NODE_TYPES):
            self.add(node, f"the construct {type(node).__name__!r} is not allowed in the sandbox")
            return
        if isinstance(node, ast.Name):
            self.name(node, node.id, store=not isinstance(node.ctx, ast.Load))
        elif isinstance(node, ast.Attribute):
            self.attribute(node, node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not (in_class and node.name in SPECIAL_METHODS):
                self.name(node, node.name, store=True)
        elif isinstance(node, ast.ClassDef):
            self.name(node, node.name, store=True)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg is not None:
            self.name(node, node.arg, store=True)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self.name(node, node.name, store=True)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                self.name(node, name, store=True)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            self.name(node, node.name, store=True)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            self.name(node, node.rest, store=True)
        elif isinstance(node, ast.MatchClass):
            for attr in node.kwd_attrs:
                self.attribute(node, attr)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                problem = _module_problem(alias.name)
                if problem:
                    self.add(node, problem)
                if alias.asname:
                    self.name(node, alias.asname, store=True)
        elif isinstance(node, ast.ImportFrom):
            self.import_from(node)
        elif isinstance(node, ast.Call):
            self.call(node)

    def import_from(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.add(node, "relative imports are not allowed; import one of the allowed modules by name")
            return
        if module == "__future__":
            for alias in node.names:
                if alias.name != "annotations":
                    self.add(node, f"from __future__, {quoted(alias.name)} is not allowed (only 'annotations')")
            return
        problem = _module_problem(module)
        if problem:
            self.add(node, problem)
        for alias in node.names:
            if alias.name != "*" and alias.name.startswith("_"):
                self.add(node, f"importing the private name {quoted(alias.name)} from {quoted(module)} is not allowed")
            if alias.asname:
                self.name(node, alias.asname, store=True)

    def call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("format", "format_map")
            and isinstance(func.value, ast.Constant)
            and isinstance(func.value.value, str)
        ):
            self.format_template(node, func.value.value)
        if isinstance(func, ast.Name) and func.id in NAME_ARGUMENT_BUILTINS:
            if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant) or not isinstance(
                node.args[1].value, str
            ):
                self.add(
                    node,
                    f"{func.id}() with a computed attribute name is not allowed; write obj.name directly or pass a "
                    "literal string",
                )
            else:
                self.attribute(node, node.args[1].value)


    def format_template(self, node: ast.AST, template: str) -> None:
        try:
            fields = [f for _, f, spec, _ in string.Formatter().parse(template) if f]
        except ValueError:
            return  # the worker raises the same ValueError when the code runs
        for field_name in fields:
            try:
                _, rest = _string.formatter_field_name_split(field_name)
                attributes = [key for is_attribute, key in rest if is_attribute]
            except ValueError:
                continue
            for attr in attributes:
                problem = attribute_problem(attr)
                if problem:
                    self.add(node, f"format field {quoted('{' + field_name + '}')}: {problem}")


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits directly in a class body (iterative: deep code cannot exhaust the stack)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_class = stack.pop()
        yield node, in_class
        child_in_class = isinstance(node, ast.ClassDef)
        stack.extend((child, child_in_class) for child in reversed(list(ast.iter_child_nodes(node))))


def find_problems(tree: ast.AST) -> list[Problem]:
    """All policy violations in a parsed module, in source order."""
    checker = _Checker()
    for node, in_class in _walk(tree):
        checker.visit(node, in_class)
    checker.finish()
    return sorted(checker.problems, key=lambda p: p.line)


def check_code(code: str, *, max_code_bytes: int) -> ast.Module:
    """Parse ``code`` and enforce the policy; return the tree.

    Raises ``SyntaxError`` for code that does not parse (the caller reports it like any error in the code) and
    :class:`~shared.errors.SandboxViolation` listing every violation otherwise.
    """
    size = len(code.encode("utf-8", errors="replace"))
    if size > max_code_bytes:
        raise SandboxViolation(f"the code is {size} bytes; the limit is {max_code_bytes} bytes", field="code")
    if "\x00" in code:
        raise SandboxViolation("the code contains a NUL character", field="code")
    try:
        tree = parse(code, "<code>", "exec")
    except (MemoryError, RecursionError):
        raise SandboxViolation("the code is nested too deeply to check; flatten it", field="code") from None
    problems = find_problems(tree)
    if problems:
        listed = "\n".join(f"- {p}" for p in problems[:20])
        more = f"\n- … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise SandboxViolation(f"the code breaks the sandbox policy:\n{listed}{more}", field="code")
    return tree


def worker_policy() -> dict[str, Any]:
    """The parts of the policy the worker enforces again at run time, as JSON data."""
    return {
        "modules": {name: (list(names) if names is not None else None) for name, names in ALLOWED_MODULES.items()},
        "builtins": sorted(ALLOWED_BUILTINS),
        "allowed_dunder_attributes": sorted(SPECIAL_METHODS | READABLE_DUNDER_ATTRIBUTES),
        "forbidden_attributes": sorted(FORBIDDEN_ATTRIBUTES),
        "forbidden_attribute_prefixes": list(FORBIDDEN_ATTRIBUTE_PREFIXES),
        "runtime_events": dict(RUNTIME_EVENTS),
    }
