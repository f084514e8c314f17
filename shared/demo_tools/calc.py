"""Numbers: a safe arithmetic evaluator and descriptive statistics."""

from __future__ import annotations

import ast
import math
import operator
import statistics
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from shared.errors import ToolArgumentsInvalid
from shared.python_ast import parse

__all__ = ["calculate", "percentile", "summary_statistics"]

MAX_EXPRESSION_CHARS = 1000
"""Longest expression ``calculate`` accepts."""
MAX_INT_BITS = 4096
"""Largest integer (in bits) an expression may produce, so ``9**9**9`` fails fast instead of hanging."""
MAX_FACTORIAL = 500

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _factorial(n: Any) -> int:
    if not float(n).is_integer() or not 0 <= n <= MAX_FACTORIAL:
        raise ValueError(f"factorial needs a whole number from 0 to {MAX_FACTORIAL}")
    return math.factorial(int(n))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max,
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "atan2": math.atan2, "hypot": math.hypot, "floor": math.floor, "ceil": math.ceil, "factorial": _factorial,
    "degrees": math.degrees, "radians": math.radians,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _check_size(value: Any) -> Any:
    if isinstance(value, complex):
        raise ValueError("the result is a complex number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ValueError(f"the result has more than {MAX_INT_BITS} bits")
    return value


def _power(base: Any, exponent: Any) -> Any:
    big = isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1
    if big and exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise ValueError(f"the result has more than {MAX_INT_BITS} bits")
    return base**exponent


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _check_size(_FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args)))
    allowed = ", ".join(sorted(_FUNCTIONS))
    raise ToolArgumentsInvalid(
        f"{ast.unparse(node)!r} is not allowed: use numbers, + - * / // % **, parentheses, the constants pi, e and "
        f"tau, and the functions {allowed}",
        field="args.expression",
    )


def calculate(expression: str) -> dict[str, Any]:
    """Evaluate an arithmetic expression exactly as Python would, safely.

    Supports numbers, + - * / // % ** and parentheses, the constants pi, e and tau, and the functions abs, round,
    min, max, sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, atan2, hypot, floor, ceil, factorial,
    degrees and radians (angles in radians). Example: "2 * (3 + 4) ** 2 / sqrt(16)".

    Args:
        expression: The expression to evaluate, at most 1000 characters.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolArgumentsInvalid(
            f"expression is longer than {MAX_EXPRESSION_CHARS} characters", field="args.expression"
        )
    try:
        tree = parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolArgumentsInvalid(f"not a valid expression: {exc.msg}", field="args.expression") from None
    try:
        value = _eval(tree)
    except ZeroDivisionError:
        raise ToolArgumentsInvalid("division by zero", field="args.expression") from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise ToolArgumentsInvalid(f"cannot evaluate: {exc}", field="args.expression") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolArgumentsInvalid("the result is not a finite number", field="args.expression")
    return {"expression": expression, "result": value}


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolating linearly between ranks (numpy's default)."""
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_statistics(
    values: Annotated[list[float], Field(min_length=1, max_length=100_000)],
    percentiles: Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(max_length=20)] = [25, 50, 75],  # noqa: B006
) -> dict[str, Any]:
    """Describe a list of numbers: count, sum, mean, median, mode, sample and population standard deviation,
    variance, min, max, range and percentiles.

    Args:
        values: The numbers (at least one).
        percentiles: Which percentiles to report, each from 0 to 100 (linear interpolation).
    """
    ordered = sorted(values)
    count = len(ordered)
    result: dict[str, Any] = {
        "count": count,
        "sum": math.fsum(ordered),
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "mode": statistics.mode(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "range": ordered[-1] - ordered[0],
        "stdev": statistics.stdev(ordered) if count > 1 else None,
        "pstdev": statistics.pstdev(ordered),
        "variance": statistics.variance(ordered) if count > 1 else None,
        "percentiles": {f"p{q:g}": percentile(ordered, q) for q in percentiles},
    }
    return result
