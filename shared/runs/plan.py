"""Plan mode: validate a plan against the catalog, find each step's dependencies, resolve ``$ref`` arguments.

Everything here is pure and deterministic (no I/O, clock or randomness), because it runs inside the Durable
orchestrator: the same plan and results give the same graph, errors and arguments on every replay.

References: any value inside a step's ``args`` may be ``{"$ref": "stepId.path.to.value"}`` (exactly that one key).
``"s1"`` is the whole result of step ``s1``; ``.key`` looks up a dict key, ``.0`` or ``[0]`` a list index. A
reference implies a dependency on its step, so listing it in ``depends_on`` as well is allowed but not needed. A
reference's value is unknown until its step has run, so schema checks skip it; they still catch missing, unexpected
and mistyped arguments around it.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.catalog.catalog import argument_problems
from shared.errors import QUOTED_CHARS, InvalidRequest, PlanInvalid, quoted, quoted_list
from shared.models import ModelLimits, Plan, Step, ToolSpec, check_plan_limits, format_field
from shared.suggestions import NameIndex, close_matches

if TYPE_CHECKING:
    from shared.catalog.catalog import Catalog

__all__ = [
    "REF_KEY",
    "PlanGraph",
    "PlanProblem",
    "Ref",
    "check_plan",
    "is_ref",
    "parse_ref",
    "referenced_steps",
    "resolve_refs",
    "resolve_refs_except",
    "validate_plan",
]

REF_KEY = "$ref"
_REF = re.compile(r"(?P<step>[A-Za-z_][A-Za-z0-9_-]{0,63})(?P<path>(?:\.[^.\[\]]+|\[[0-9]{1,18}\])*)")
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[([0-9]{1,18})\]")
_MAX_INDEX_DIGITS = 18
"""Digits of a list index (``[i]`` or ``.i``): a longer one is past any list's end (and ``int()`` refuses 4,301)."""
_MAX_REPORTED = 10
"""Problems a :class:`PlanInvalid` message lists."""
_MAX_SUGGESTED = _MAX_REPORTED
"""Unknown step ids and tools per check that get a did-you-mean; the rest are only named (a small plan can name
thousands, and each suggestion compares the name with up to ``shared.suggestions.MAX_CANDIDATES`` others)."""
_MAX_WALKED_CHARS = 2 * QUOTED_CHARS
"""How much of a ``$ref``'s walked path its message shows (its start and its end)."""
_MAX_CYCLE_SHOWN = 10
"""Steps of a dependency cycle its message names."""

Path = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Ref:
    """A parsed ``$ref``: the step whose result it reads and the path inside that result."""

    step: str
    """Id of the step whose result is read."""
    path: Path
    """Keys (``str``; digit strings also index lists) and list indexes (``int``, from ``[n]``)."""
    text: str
    """The reference as written."""


def is_ref(value: Any) -> bool:
    """Whether ``value`` is a reference placeholder: a dict whose only key is ``$ref``."""
    return isinstance(value, Mapping) and len(value) == 1 and REF_KEY in value


def parse_ref(text: Any) -> Ref:
    """Parse ``"s1.items[0].name"``; :class:`ValueError` with an explanation if malformed."""
    if not isinstance(text, str):
        raise ValueError(f"$ref must be a string like 'step_id.path.to.value', got {type(text).__name__}")
    match = _REF.fullmatch(text)
    if not match:
        raise ValueError(
            f"$ref {quoted(text)} is malformed: write 'step_id' for the whole result or 'step_id.key.0.key' / "
            "'step_id.key[0]' for a part of it"
        )
    path = tuple(int(index) if index else key for key, index in _SEGMENT.findall(match.group("path")))
    return Ref(match.group("step"), path, text)


def _collect_refs(value: Any, path: Path, out: list[tuple[Path, Any]]) -> None:
    if is_ref(value):
        out.append((path, value[REF_KEY]))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect_refs(item, (*path, key), out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect_refs(item, (*path, index), out)


# --------------------------------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class PlanProblem:
    """One reason a plan cannot run."""

    field: str
    """Where, e.g. ``plan.steps[2].tool``."""
    message: str
    """What is wrong and, where possible, how to fix it."""


@dataclass(frozen=True)
class PlanGraph:
    """A validated plan: its steps and effective dependencies (``depends_on`` plus references), both ways."""

    steps: Mapping[str, Step]
    """Steps by id, in plan order."""
    dependencies: Mapping[str, tuple[str, ...]]
    """For each step, the steps it waits for, in plan order."""
    dependents: Mapping[str, tuple[str, ...]]
    """For each step, the steps that wait for it, in plan order."""
    index: Mapping[str, int]
    """Position of each step in the plan (for ``plan.steps[i]`` field names)."""

    def resolve_args(self, step_id: str, results: Mapping[str, Any]) -> dict[str, Any]:
        """``step_id``'s arguments with references replaced from ``results`` (see :func:`resolve_refs`)."""
        return resolve_refs(self.steps[step_id].args, results, field=f"plan.steps[{self.index[step_id]}].args")


class _CatalogSpecs(Mapping[str, ToolSpec]):
    """A catalog's specs read one at a time (a dict of all of them is 100,000 specs built per check)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def __getitem__(self, name: str) -> ToolSpec:
        found = self._catalog.find(name)  # one read: a source sync may swap the catalog between two
        if found is None:
            raise KeyError(name)
        return found.spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._catalog.names())

    def __len__(self) -> int:
        return len(self._catalog)

    def close_names(self, name: str) -> list[str]:
        return self._catalog.close_names(name)


def _specs_of(catalog: Catalog | Mapping[str, ToolSpec]) -> Mapping[str, ToolSpec]:
    if isinstance(catalog, Mapping):
        return catalog
    return _CatalogSpecs(catalog)


class _Suggestions:
    """"unknown step 'x'; did you mean ...?" for the first ``_MAX_SUGGESTED`` unknown names of one check."""

    def __init__(self, steps: list[str], tools: Mapping[str, ToolSpec]) -> None:
        self._known: dict[str, Iterable[str]] = {"step": steps, "tool": tools}
        self._indexes: dict[str, NameIndex] = {}
        self.left = _MAX_SUGGESTED

    def unknown(self, kind: str, name: str) -> str:
        if self.left <= 0:
            return f"unknown {kind} {quoted(name)}"
        self.left -= 1
        known = self._known[kind]
        if isinstance(known, _CatalogSpecs):  # the catalog keeps an index per version
            close = known.close_names(name)
        else:
            if kind not in self._indexes:
                self._indexes[kind] = NameIndex(known)
            close = self._indexes[kind].close_matches(name, n=3)
        hint = f"; did you mean {', '.join(repr(match) for match in close)}?" if close else ""
        return f"unknown {kind} {quoted(name)}{hint}"


def check_plan(
    plan: Plan,
    catalog: Catalog | Mapping[str, ToolSpec],
    limits: ModelLimits | None = None,
    *,
    check_arguments: bool = True,
    max_problems: int | None = None,
) -> tuple[list[PlanProblem], PlanGraph | None]:
    """Every problem with ``plan`` (empty when it can run), or its first ``max_problems``, and, when there are none,
    its graph.

    ``catalog`` is a :class:`~shared.catalog.catalog.Catalog` or a mapping of tool name to spec (e.g. specs an activity
    returned to the orchestrator). Only the first ten unknown step ids and tools get a did-you-mean (bounded work
    for a plan naming thousands). ``check_arguments=False`` skips the JSON-schema checks of the arguments (the
    orchestrator's replays: the plan was checked when it was admitted, and every call is checked again).
    """
    if max_problems is not None and max_problems < 1:
        raise ValueError("max_problems must be at least 1")
    if limits is not None:
        try:
            check_plan_limits(plan, limits)
        except InvalidRequest as exc:
            return [PlanProblem(exc.field or "plan", exc.message)], None
    specs = _specs_of(catalog)
    index: dict[str, int] = {}
    for i, step in enumerate(plan.steps):
        index.setdefault(step.id, i)
    ids = list(index)
    deps: dict[str, dict[str, str]] = {step_id: {} for step_id in ids}  # step -> {dependency: field that adds it}
    # Lazy, so a plan naming thousands of unknown steps costs only the problems asked for.
    problems = list(itertools.islice(_step_problems(plan, specs, index, deps, check_arguments), max_problems))
    if problems and len(problems) == max_problems:
        return problems, None
    cycle = _find_cycle(ids, deps)
    if cycle:
        shown = cycle if len(cycle) <= _MAX_CYCLE_SHOWN else [*cycle[: _MAX_CYCLE_SHOWN - 1], "…", cycle[-1]]
        text = " -> ".join(shown) + ("" if shown is cycle else f" ({len(cycle) - 1} steps)")
        problems.append(PlanProblem(deps[cycle[0]][cycle[1]], f"dependency cycle: {text} (each waits for the next)"))
    if problems:
        return problems, None
    return [], _build_graph(plan, index, deps)


def _step_problems(
    plan: Plan, specs: Mapping[str, ToolSpec], index: Mapping[str, int], deps: dict[str, dict[str, str]],
    check_arguments: bool,
) -> Iterator[PlanProblem]:
    """The steps' problems in plan order; fills ``deps`` (each step's dependencies) on the way."""
    suggest = _Suggestions(list(index), specs)
    for i, step in enumerate(plan.steps):
        where = f"plan.steps[{i}]"
        mine = deps[step.id]
        if index[step.id] != i:
            first = f"plan.steps[{index[step.id]}]"
            yield PlanProblem(f"{where}.id", f"duplicate step id {step.id!r} (also {first})")
            mine = {}
        for k, dep in enumerate(step.depends_on):
            if dep in index:
                mine.setdefault(dep, f"{where}.depends_on[{k}]")
            else:
                yield PlanProblem(f"{where}.depends_on[{k}]", suggest.unknown("step", dep))
        found: list[tuple[Path, Any]] = []
        _collect_refs(step.args, (), found)
        holes: list[Path] = []
        for path, raw in found:
            field = format_field([f"{where}.args", *path])
            holes.append(path)
            try:
                ref = parse_ref(raw)
            except ValueError as exc:
                yield PlanProblem(field, str(exc))
                continue
            if ref.step == step.id:
                yield PlanProblem(field, f"$ref {quoted(ref.text)} refers to this step's own result")
            elif ref.step not in index:
                yield PlanProblem(field, f"$ref {quoted(ref.text)}: {suggest.unknown('step', ref.step)}")
            else:
                mine.setdefault(ref.step, field)
        spec = specs.get(step.tool)
        if spec is None:
            yield PlanProblem(f"{where}.tool", suggest.unknown("tool", step.tool))
            continue
        if not check_arguments:
            continue
        for problem in argument_problems(spec.parameters, step.args, opaque=holes):
            yield PlanProblem(problem.field(f"{where}.args"), f"{step.tool}: {problem.message}")


def validate_plan(
    plan: Plan, catalog: Catalog | Mapping[str, ToolSpec], limits: ModelLimits | None = None
) -> PlanGraph:
    """Check ``plan`` and return its :class:`PlanGraph`; raise :class:`PlanInvalid` naming the first problem.

    The error's ``field`` is the first problem's; its message lists up to ten problems, each with its field.
    """
    problems, graph = check_plan(plan, catalog, limits, max_problems=_MAX_REPORTED + 1)
    if graph is None:
        shown = problems[:_MAX_REPORTED]
        more = " (and more)" if len(problems) > len(shown) else ""
        message = "; ".join(f"{problem.field}: {problem.message}" for problem in shown) + more
        raise PlanInvalid(message, field=problems[0].field)
    return graph


def _find_cycle(ids: list[str], deps: Mapping[str, Mapping[str, str]]) -> list[str] | None:
    """The first cycle met by a depth-first walk in plan order, as ``[a, b, ..., a]`` (a waits for b ...)."""
    order = {step_id: i for i, step_id in enumerate(ids)}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in ids:
        if root in state:
            continue
        path = [root]
        state[root] = 1
        iters = [iter(sorted(deps[root], key=order.__getitem__))]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(deps[nxt], key=order.__getitem__)))
    return None


def _build_graph(plan: Plan, index: Mapping[str, int], deps: Mapping[str, Mapping[str, str]]) -> PlanGraph:
    by_plan = index.__getitem__
    dependencies = {step_id: tuple(sorted(deps[step_id], key=by_plan)) for step_id in index}
    children: dict[str, list[str]] = {step_id: [] for step_id in index}
    for step_id, parents in dependencies.items():
        for parent in parents:
            children[parent].append(step_id)
    dependents = {step_id: tuple(sorted(kids, key=by_plan)) for step_id, kids in children.items()}
    return PlanGraph(
        steps={step.id: step for step in plan.steps},
        dependencies=dependencies,
        dependents=dependents,
        index=dict(index),
    )


# --------------------------------------------------------------------------------------------------- resolution


def resolve_refs(args: Mapping[str, Any], results: Mapping[str, Any], *, field: str = "args") -> dict[str, Any]:
    """A copy of ``args`` with every ``{"$ref": ...}`` replaced by a (copied) part of ``results[step]``.

    Raises :class:`PlanInvalid` naming the argument (``field`` is its prefix) and the reference when the step has
    no result or the path is not in it.
    """

    def visit(value: Any, path: Path) -> Any:
        if is_ref(value):
            return copy.deepcopy(_lookup(value[REF_KEY], results, format_field([field, *path])))
        if isinstance(value, Mapping):
            return {key: visit(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [visit(item, (*path, i)) for i, item in enumerate(value)]
        return value

    return {key: visit(value, (key,)) for key, value in args.items()}


def resolve_refs_except(value: Any, results: Mapping[str, Any], kept: set[str]) -> Any:
    """``value`` with its references resolved from ``results``, except those into ``kept`` steps (their results live
    in the payload store: the activity reads them)."""
    if is_ref(value):
        if parse_ref(value[REF_KEY]).step in kept:
            return value
        return resolve_refs({"value": value}, results)["value"]
    if isinstance(value, Mapping):
        return {key: resolve_refs_except(item, results, kept) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_refs_except(item, results, kept) for item in value]
    return value


def referenced_steps(value: Any) -> set[str]:
    """The ids of the steps whose results ``value`` references (malformed references name none)."""
    found: list[tuple[Path, Any]] = []
    _collect_refs(value, (), found)
    steps: set[str] = set()
    for _, raw in found:
        with contextlib.suppress(ValueError):
            steps.add(parse_ref(raw).step)
    return steps


def _lookup(raw: Any, results: Mapping[str, Any], field: str) -> Any:
    try:
        ref = parse_ref(raw)
    except ValueError as exc:
        raise PlanInvalid(str(exc), field=field) from None
    if ref.step not in results:
        raise PlanInvalid(
            f"$ref {quoted(ref.text)}: step {quoted(ref.step)} has no result (it did not run or failed)", field=field
        )
    current = results[ref.step]
    for depth, segment in enumerate(ref.path):
        if isinstance(current, list) and (isinstance(segment, int) or (segment.isascii() and segment.isdigit())):
            digits = str(segment)
            position = int(digits) if len(digits) <= _MAX_INDEX_DIGITS else len(current)
            if position >= len(current):
                shown = digits if len(digits) <= _MAX_INDEX_DIGITS else f"{digits[:8]}… ({len(digits)} digits)"
                raise PlanInvalid(
                    f"$ref {quoted(ref.text)}: {_walked(ref, depth)} has {len(current)} items, so index {shown} "
                    "does not exist",
                    field=field,
                )
            current = current[position]
        elif isinstance(current, Mapping) and str(segment) in current:
            current = current[str(segment)]
        elif isinstance(current, Mapping):
            raise PlanInvalid(
                f"$ref {quoted(ref.text)}: {_walked(ref, depth)} has no key {quoted(str(segment))}"
                f"{_key_hint(str(segment), current)}",
                field=field,
            )
        else:
            kind = {list: "list", type(None): "null"}.get(type(current), type(current).__name__)
            looked_up = quoted(segment) if isinstance(segment, str) else segment
            raise PlanInvalid(
                f"$ref {quoted(ref.text)}: {_walked(ref, depth)} is a {kind}, so {looked_up} cannot be looked up in it",
                field=field,
            )
    return current


def _walked(ref: Ref, depth: int) -> str:
    """The part of ``ref`` walked before its segment ``depth``, for a message: ``s1.items[0]``; each key cut as
    :func:`~shared.models.format_field` cuts it and, past ``_MAX_WALKED_CHARS``, only its start and end."""
    text = format_field([ref.step, *ref.path[:depth]])
    if len(text) <= _MAX_WALKED_CHARS:
        return text
    half = _MAX_WALKED_CHARS // 2
    return f"{text[:half]}…{text[-half:]}"


def _key_hint(segment: str, result: Mapping[Any, Any]) -> str:
    """"; did you mean 'x'? (keys: ...)": a bounded suggestion (:mod:`shared.suggestions`) and the first keys, each
    cut (a tool's result may have 100,000 keys, or keys of megabytes)."""
    keys = sorted(map(str, result))
    close = close_matches(segment, keys, n=1)
    hint = f"; did you mean {quoted(close[0])}?" if close else ""
    return f"{hint} (keys: {quoted_list(keys) or 'none'})"
