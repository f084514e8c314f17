"""The worker's rewrite of the code before it is compiled. Worker side, stdlib only.

* ``x.format`` / ``x.format_map`` go through the attribute guard (``__weft_attr__``), so format fields are checked.
* A tool call the code does not await becomes ``__weft_now__(tool, ...)``: the result at once. A call stays a
  coroutine where the code awaits it, hands it to ``asyncio.gather``/``create_task``/``wait``/``as_completed``/…,
  or keeps it in a variable it later awaits or hands on (``tasks = [t(c) for c in cs]`` … ``gather(*tasks)``).
* Before a ``match`` with class patterns, ``__weft_match__(lambda: Cls, …)`` checks each class (metaclass and
  ``__match_args__``) at run time.
* The final expression statement's value is kept as ``__weft_last__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

FAN_OUT = frozenset({"gather", "create_task", "ensure_future", "wait", "wait_for", "as_completed", "shield", "run",
                     "run_until_complete"})
COLLECT = frozenset({"append", "extend", "insert", "add", "appendleft", "put_nowait"})


def _callee_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _names_in(node: ast.AST) -> Iterator[str]:
    """Names handed on directly (``t``, ``*ts``, ``[t1, t2]``), not names used inside other calls."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Starred):
        yield from _names_in(node.value)
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        for element in node.elts:
            yield from _names_in(element)


def awaited_names(tree: ast.AST) -> set[str]:
    """Variables the code awaits or hands to asyncio: tool calls stored in them must stay coroutines."""
    names: set[str] = set()
    loops: list[tuple[ast.expr, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Await):
            names.update(_names_in(node.value))
        elif isinstance(node, ast.Call) and _callee_name(node.func) in FAN_OUT:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                names.update(_names_in(arg))
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            loops.append((node.target, node.iter))
    changed = True
    while changed:  # for t in tasks: await t  -> tasks holds coroutines too
        changed = False
        for target, iterable in loops:
            if isinstance(target, ast.Name) and target.id in names:
                for name in _names_in(iterable):
                    if name not in names:
                        names.add(name)
                        changed = True
    return names


def _targets(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Tuple | ast.List):
        for element in node.elts:
            yield from _targets(element)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)


class Rewriter(ast.NodeTransformer):
    """See the module docstring. ``tools``: flat tool names; ``heads``: namespace objects (``my`` of ``my.add``)."""

    def __init__(self, tools: frozenset[str], heads: frozenset[str], keep: set[str]) -> None:
        self._tools = tools
        self._heads = heads
        self._keep = keep
        self._stack: list[ast.AST] = []

    def visit(self, node: ast.AST) -> ast.AST:
        self._stack.append(node)
        try:
            return super().visit(node)
        finally:
            self._stack.pop()

    def _is_tool(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in self._tools
        while isinstance(func, ast.Attribute):
            func = func.value
        return isinstance(func, ast.Name) and func.id in self._heads

    def _stays_coroutine(self) -> bool:
        """Whether the call on top of the stack is awaited, handed to asyncio, or stored for that."""
        path = self._stack
        call = path[-1]
        parent = path[-2] if len(path) > 1 else None
        if isinstance(parent, ast.Await):
            return True
        child: ast.AST = call
        for ancestor in reversed(path[:-1]):
            if isinstance(ancestor, ast.stmt):
                if isinstance(ancestor, ast.Assign):
                    return any(n in self._keep for t in ancestor.targets for n in _targets(t))
                if isinstance(ancestor, ast.AnnAssign | ast.AugAssign):
                    return any(n in self._keep for n in _targets(ancestor.target))
                return False
            if isinstance(ancestor, ast.Call) and child is not ancestor.func:
                name = _callee_name(ancestor.func)
                if name in FAN_OUT:
                    return True
                if name in COLLECT and isinstance(ancestor.func, ast.Attribute):
                    owner = ancestor.func.value
                    if isinstance(owner, ast.Name) and owner.id in self._keep:
                        return True
            if isinstance(ancestor, ast.NamedExpr) and ancestor.target.id in self._keep:
                return True
            child = ancestor
        return False

    def visit_Call(self, node: ast.Call) -> ast.AST:
        now = self._is_tool(node.func) and not self._stays_coroutine()
        self.generic_visit(node)
        if not now:
            return node
        call = ast.Call(func=ast.Name("__weft_now__", ast.Load()), args=[node.func, *node.args],
                        keywords=node.keywords)
        return ast.copy_location(call, node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr in ("format", "format_map") and isinstance(node.ctx, ast.Load):
            call = ast.Call(
                func=ast.Name("__weft_attr__", ast.Load()), args=[node.value, ast.Constant(node.attr)], keywords=[]
            )
            return ast.copy_location(call, node)
        return node

    def visit_Match(self, node: ast.Match) -> ast.AST | list[ast.AST]:
        self.generic_visit(node)
        classes = [p.cls for case in node.cases for p in ast.walk(case.pattern) if isinstance(p, ast.MatchClass)]
        if not classes:
            return node
        thunks: list[ast.expr] = [
            ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
                       body=_load_copy(cls))
            for cls in classes
        ]
        guard = ast.Expr(ast.Call(func=ast.Name("__weft_match__", ast.Load()), args=thunks, keywords=[]))
        return [ast.copy_location(guard, node), node]


def _load_copy(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Attribute):
        return ast.Attribute(value=_load_copy(node.value), attr=node.attr, ctx=ast.Load())
    assert isinstance(node, ast.Name)
    return ast.Name(node.id, ast.Load())


def rewrite(tree: ast.Module, tools: frozenset[str], heads: frozenset[str]) -> ast.Module:
    """Apply :class:`Rewriter` and keep the last expression statement's value as ``__weft_last__``."""
    rewritten = Rewriter(tools, heads, awaited_names(tree)).visit(tree)
    assert isinstance(rewritten, ast.Module)
    tree = rewritten
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name("__weft_last__", ast.Store())], value=last.value), last
        )
    ast.fix_missing_locations(tree)
    return tree
