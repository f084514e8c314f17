"""The JSON contract: DTOs stored in Durable history and sent over HTTP.

Request-side models forbid unknown keys, so a typo in a field name is an error rather than a silently ignored value.
Limits that depend on settings (how many steps, how many bytes of arguments, ...) are not part of the models; they
are :class:`ModelLimits`, checked by :func:`validate_request`. Every error names the offending input with a path in
the style ``plan.steps[3].args.city`` (see :func:`format_field`). The result side (:class:`RunResult`,
:class:`ToolResult`, ...) lives in :mod:`shared.results` and is re-exported here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from shared.errors import QUOTED_CHARS, InvalidRequest
from shared.results import (
    ErrorInfo,
    RunMode,
    RunResult,
    RunStatus,
    StepRecord,
    StepStatus,
    TokenUsage,
    ToolResult,
)
from shared.settings import env_int

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "NAME_PATTERN",
    "STEP_ID_PATTERN",
    "ErrorInfo",
    "ModelLimits",
    "Plan",
    "RetryPolicy",
    "RunMode",
    "RunOptions",
    "RunRequest",
    "RunResult",
    "RunStatus",
    "Step",
    "StepRecord",
    "StepStatus",
    "TokenUsage",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "canonical_json",
    "check_plan_limits",
    "format_field",
    "hash_args",
    "parse_json",
    "parse_model",
    "parse_run_request",
    "validate_request",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
"""Tool names: an identifier-like word of at most 64 characters; dots and dashes allowed (``weather.get``)."""
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
"""Step ids: like tool names but without dots, so ``{"$ref": "fetch.items.0"}`` splits unambiguously."""
_STEP_ID_MAX = 64
"""The longest step id ``STEP_ID_PATTERN`` allows."""
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:@-]{1,100}$"
"""Idempotency keys become Durable instance ids, which must not contain ``/ \\ # ?`` and stay short."""

_MODE_FIELDS: dict[str, str] = {"plan": "plan", "code": "code", "task": "task"}

_IDENTIFIER_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$-")


# ----------------------------------------------------------------------------------------------------------- helpers


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON text: equal values give equal text (the basis of every hash here)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def hash_args(args: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of a tool call's arguments (``StepRecord.args_hash``)."""
    return hashlib.sha256(canonical_json(dict(args)).encode("utf-8")).hexdigest()


def format_field(parts: Iterable[str | int]) -> str:
    """``("plan", "steps", 3, "args", "city")`` -> ``plan.steps[3].args.city``.

    The first part is the root and is used as it is (it may already be a path, like ``plan.steps[3].args``).
    Integers become ``[n]``; keys that are not plain words become ``["key with spaces"]``; a key longer than
    :data:`~shared.errors.QUOTED_CHARS` is cut (``["abc…"]``).
    """
    out = ""
    for position, part in enumerate(parts):
        if position == 0 and isinstance(part, str):
            out = part
        elif isinstance(part, int):
            out += f"[{part}]"
        elif len(part) > QUOTED_CHARS:  # a caller's key, quoted as errors quote input
            out += f"[{json.dumps(part[:QUOTED_CHARS] + '…', ensure_ascii=False)}]"
        elif part and set(part) <= _IDENTIFIER_KEY:
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


# ------------------------------------------------------------------------------------------------------ tool specs


@functools.lru_cache(maxsize=4096)
def _schema_problem(schema_json: str) -> str | None:
    """Why a JSON schema is invalid, or ``None``; cached because checking against the 2020-12 metaschema takes
    about 10 ms and every worker registers the same specs."""
    schema = json.loads(schema_json)
    validator_cls = jsonschema_validators.validator_for(schema, default=jsonschema_validators.Draft202012Validator)
    try:
        validator_cls.check_schema(schema)
    except jsonschema_exceptions.SchemaError as exc:
        return exc.message
    return None


class RetryPolicy(BaseModel):
    """How the orchestrator retries a failed, retryable tool call (maps onto Durable ``RetryOptions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(3, ge=1, le=20)
    """Attempts in total, including the first."""
    first_interval_ms: int = Field(500, ge=1, le=3_600_000)
    """Delay before the second attempt; Durable doubles it for each further attempt."""


class ToolSpec(BaseModel):
    """What Weft knows about a tool: its name, its arguments' JSON schema and how it may be called."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    """Unique name in the catalog, e.g. ``convert_units`` or ``weather.get``."""
    description: str = ""
    """What the tool does, written for the LLM and for tool search."""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON schema of the arguments object (``"type": "object"``)."""
    tags: list[str] = Field(default_factory=list)
    """Free-form labels used by tool search and filtering."""
    source: str = "python"
    """Where the spec came from: ``python``, ``file``, ``openapi``, ``mcp``, ``demo``."""
    side_effects: bool = False
    """Whether calling the tool changes something outside Weft (writes, sends, buys)."""
    idempotent: bool = True
    """Whether repeating a call with the same idempotency key has the effect of one call."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-call timeout; ``None`` uses the executor's default (``WEFT_TOOL_TIMEOUT_S``)."""
    max_concurrency: int | None = Field(None, ge=1)
    """Concurrent calls allowed per process; ``None`` uses the executor's settings."""
    requires_approval: bool = False
    """Whether a human must approve each call before it runs (``POST /api/runs/{id}/approve``)."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retry policy for retryable failures."""

    @field_validator("parameters")
    @classmethod
    def _parameters_are_an_object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError('parameters must be a JSON schema with "type": "object"')
        try:
            text = canonical_json(value)
        except (TypeError, ValueError) as exc:  # YAML gives dates, non-string keys, NaN: none of them is JSON
            raise ValueError(f"parameters must be JSON data ({type(exc).__name__}: a value JSON cannot hold, such "
                             "as a YAML date: quote it)") from None
        problem = _schema_problem(text)
        if problem is not None:
            raise ValueError(f"parameters is not a valid JSON schema: {problem}")
        return value


# ------------------------------------------------------------------------------------------------------ requests


class Step(BaseModel):
    """One tool call in a plan.

    Any value inside ``args``, at any depth, may be ``{"$ref": "stepId.path.to.value"}``: it is replaced by that part
    of an earlier step's result (``"s1"`` is the whole result; path parts are dict keys or list indexes, ``.0`` or
    ``[0]``). A reference implies a dependency on its step.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN)
    """Unique id within the plan; no dots."""
    tool: str = Field(pattern=NAME_PATTERN)
    """Name of the tool to call."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments; values may be ``{"$ref": ...}`` references to earlier results."""
    depends_on: list[str] = Field(default_factory=list)
    """Ids of steps that must finish first (references add to this implicitly)."""


class Plan(BaseModel):
    """A DAG of tool calls; each step starts as soon as the steps it depends on have finished."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(min_length=1)
    """The steps, in any order; steps ready at the same moment start in this order."""


class RunOptions(BaseModel):
    """How a run executes. Strict: a number or boolean sent as a string (``"3"``, ``"yes"``), a boolean for a number
    or a number for a boolean is an error, not converted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fail_fast: bool = False
    """Stop scheduling new steps after the first failed step (otherwise only its dependents are skipped)."""
    max_parallel: int | None = Field(None, ge=1, le=10_000)
    """Plan mode: most tool calls in flight at once; ``None``: every step that is ready."""
    timeout_s: float | None = Field(None, gt=0, le=31 * 86_400, allow_inf_nan=False)
    """Plan mode: the run's deadline in seconds from its start: steps not started by then are skipped and calls
    still in flight are abandoned as ``timed_out``. ``None``: no deadline."""
    task_style: Literal["plan", "code"] = "plan"
    """Task mode: whether the planner writes a plan (JSON) or code (Python calling tools)."""
    code_execution: Literal["replay", "inline"] = "replay"
    """Code mode: ``replay`` makes every tool call a durable activity (survives restarts, fans out across
    instances); ``inline`` calls tools from inside one activity through the sandbox's pipe (faster, not durable)."""


class RunRequest(BaseModel):
    """``POST /api/runs`` body and queue message: what to run and how.

    ``plan`` is required (and only allowed) in plan mode, ``code`` in code mode, ``task`` in task mode.
    """

    model_config = ConfigDict(extra="forbid")

    mode: RunMode
    """``plan`` (a DAG of tool calls), ``code`` (Python calling tools) or ``task`` (natural language, needs an LLM)."""
    plan: Plan | None = Field(None, validate_default=True)
    """The plan to run (plan mode)."""
    code: str | None = Field(None, validate_default=True)
    """Python source calling tools as ``await name(...)`` (code mode)."""
    tools: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = None
    """Tools the code or task may use; ``None`` means the whole catalog (task mode searches it)."""
    task: str | None = Field(None, validate_default=True)
    """What to do, in natural language (task mode)."""
    options: RunOptions = Field(default_factory=RunOptions)
    """Execution options."""
    idempotency_key: str | None = Field(None, pattern=IDEMPOTENCY_KEY_PATTERN)
    """Same key, same run: a repeated request returns the existing run instead of starting another."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Caller's labels, echoed in status and telemetry."""

    @field_validator("plan", "code", "task")
    @classmethod
    def _matches_mode(cls, value: object, info: ValidationInfo) -> object:
        mode = info.data.get("mode")
        if mode is None:  # mode itself failed validation; that error is reported
            return value
        name = info.field_name
        if value is None and _MODE_FIELDS[mode] == name:
            raise ValueError(f"{name} is required when mode is {mode!r}")
        if value is not None and _MODE_FIELDS[mode] != name:
            raise ValueError(f"{name} is only allowed when mode is {name!r} (mode is {mode!r})")
        return value


class ToolCall(BaseModel):
    """Input of the ``call_tool`` activity: one call of one tool."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    """The run (orchestration instance id)."""
    step_id: str
    """The step within the run (a plan step id, or the code step's call id)."""
    tool: str
    """Tool name."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments with every ``$ref`` already resolved."""
    attempt: int = Field(1, ge=1)
    """Attempt number when the caller knows it (Durable retries re-send the same input, so it may stay 1)."""

    @property
    def idempotency_key(self) -> str:
        """``run_id:step_id``: the same for every retry and restart of this call, passed to the tool."""
        return f"{self.run_id}:{self.step_id}"


# ------------------------------------------------------------------------------------------------------ limits


@dataclass(frozen=True)
class ModelLimits:
    """Size limits on requests. Build with :meth:`from_env`."""

    max_steps: int = 5000
    """Steps per plan (WEFT_MAX_STEPS)."""
    max_args_bytes: int = 64 * 1024
    """UTF-8 bytes of one step's canonical JSON arguments (WEFT_MAX_ARGS_BYTES)."""
    max_plan_bytes: int = 4 * 1024 * 1024
    """UTF-8 bytes of the whole plan's canonical JSON (WEFT_MAX_PLAN_BYTES)."""
    max_id_length: int = 64
    """Characters in a step id (WEFT_MAX_ID_LENGTH); it can only lower the 64 of ``STEP_ID_PATTERN``."""
    max_depends_on: int = 256
    """Entries in one step's ``depends_on`` (WEFT_MAX_DEPENDS_ON)."""
    max_task_chars: int = 32_000
    """Characters of a task-mode task (WEFT_MAX_TASK_CHARS)."""
    max_tools: int = 512
    """Entries in ``tools`` (WEFT_MAX_TOOLS)."""
    max_metadata_items: int = 32
    """Entries in ``metadata`` (WEFT_MAX_METADATA_ITEMS)."""
    max_metadata_chars: int = 1024
    """Characters of one metadata key or value (WEFT_MAX_METADATA_CHARS)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ModelLimits:
        """Read ``WEFT_MAX_*`` from ``env`` (default ``os.environ``); unset names keep their defaults."""
        env = os.environ if env is None else env
        names = {
            "max_steps": "WEFT_MAX_STEPS",
            "max_args_bytes": "WEFT_MAX_ARGS_BYTES",
            "max_plan_bytes": "WEFT_MAX_PLAN_BYTES",
            "max_id_length": "WEFT_MAX_ID_LENGTH",
            "max_depends_on": "WEFT_MAX_DEPENDS_ON",
            "max_task_chars": "WEFT_MAX_TASK_CHARS",
            "max_tools": "WEFT_MAX_TOOLS",
            "max_metadata_items": "WEFT_MAX_METADATA_ITEMS",
            "max_metadata_chars": "WEFT_MAX_METADATA_CHARS",
        }
        return cls(**{attr: env_int(env, name, getattr(cls, attr), minimum=1) for attr, name in names.items()})

    def __post_init__(self) -> None:
        if self.max_id_length > _STEP_ID_MAX:
            raise ValueError(f"setting WEFT_MAX_ID_LENGTH must be <= {_STEP_ID_MAX} (step ids match "
                             f"{STEP_ID_PATTERN}), got {self.max_id_length}")


def _json_bytes(value: Any) -> int:
    return len(canonical_json(value).encode("utf-8"))


def check_plan_limits(plan: Plan, limits: ModelLimits, *, field: str = "plan") -> None:
    """Raise :class:`InvalidRequest` naming the first part of ``plan`` that exceeds ``limits``."""
    if len(plan.steps) > limits.max_steps:
        raise InvalidRequest(
            f"a plan may have at most {limits.max_steps} steps, this one has {len(plan.steps)}", field=f"{field}.steps"
        )
    for index, step in enumerate(plan.steps):
        where = f"{field}.steps[{index}]"
        if len(step.id) > limits.max_id_length:
            raise InvalidRequest(f"step ids may be at most {limits.max_id_length} characters", field=f"{where}.id")
        if len(step.depends_on) > limits.max_depends_on:
            raise InvalidRequest(
                f"depends_on may list at most {limits.max_depends_on} steps, it lists {len(step.depends_on)}",
                field=f"{where}.depends_on",
            )
        try:
            size = _json_bytes(step.args)
        except ValueError as exc:  # NaN or infinity
            raise InvalidRequest(f"arguments must be plain JSON: {exc}", field=f"{where}.args") from None
        if size > limits.max_args_bytes:
            raise InvalidRequest(
                f"arguments may be at most {limits.max_args_bytes} bytes of JSON, these are {size}; "
                "pass large data by reference to an earlier step's result",
                field=f"{where}.args",
            )
    size = _json_bytes(plan.model_dump(mode="json"))
    if size > limits.max_plan_bytes:
        raise InvalidRequest(
            f"a plan may be at most {limits.max_plan_bytes} bytes of JSON, this is {size}", field=field
        )


def validate_request(req: RunRequest, limits: ModelLimits) -> None:
    """Check ``req`` against ``limits``; raise :class:`InvalidRequest` with ``field`` naming the first excess."""
    if req.plan is not None:
        check_plan_limits(req.plan, limits)
    # The code's size is the sandbox's rule (WEFT_SANDBOX_MAX_CODE_BYTES), checked when the run is admitted.
    if req.code is not None and not req.code.strip():
        raise InvalidRequest("code is empty", field="code")
    if req.task is not None:
        if len(req.task) > limits.max_task_chars:
            raise InvalidRequest(
                f"task may be at most {limits.max_task_chars} characters, it is {len(req.task)}", field="task"
            )
        if not req.task.strip():
            raise InvalidRequest("task is empty", field="task")
    if req.tools is not None and len(req.tools) > limits.max_tools:
        raise InvalidRequest(f"tools may list at most {limits.max_tools} names", field="tools")
    if len(req.metadata) > limits.max_metadata_items:
        raise InvalidRequest(f"metadata may have at most {limits.max_metadata_items} entries", field="metadata")
    for key, value in req.metadata.items():
        if len(key) > limits.max_metadata_chars or len(value) > limits.max_metadata_chars:
            raise InvalidRequest(
                f"metadata keys and values may be at most {limits.max_metadata_chars} characters",
                field=format_field(["metadata", key]),
            )


# ------------------------------------------------------------------------------------------------------ parsing

_M = TypeVar("_M", bound=BaseModel)
_MAX_REPORTED_ERRORS = 5


def parse_model(model: type[_M], data: Any, *, field: str = "") -> _M:
    """Validate ``data`` (a mapping, or JSON text/bytes) as ``model``; raise :class:`InvalidRequest` on failure.

    The error's ``field`` is the first problem's path (prefixed by ``field``); its message lists up to five problems.
    """
    try:
        if isinstance(data, str | bytes | bytearray):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False)[:_MAX_REPORTED_ERRORS]:
            path = format_field([field, *error["loc"]])  # a root of "" formats the caller's first key too
            problems.append((path, error["msg"].removeprefix("Value error, ")))
        first_field = problems[0][0] or None
        more = f" (and {exc.error_count() - len(problems)} more)" if exc.error_count() > len(problems) else ""
        message = "; ".join(f"{path or 'body'}: {msg}" for path, msg in problems) + more
        raise InvalidRequest(message, field=first_field) from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(text: bytes | str, *, message: str, field: str = "body") -> Any:
    """``text`` (a request body or payload) parsed by the stdlib's JSON parser; :class:`InvalidRequest` with ``message``
    and ``field`` when it is not JSON. A string or key holding a lone UTF-16 surrogate (an unpaired ``\\ud800``
    escape) is refused too: pydantic's parser refuses it, and no UTF-8 text can carry it further."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidRequest(message, field=field) from None
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise InvalidRequest("the JSON holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); "
                                     "send valid Unicode", field=field)
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return data


def parse_run_request(data: Any) -> RunRequest:
    """Parse a ``POST /api/runs`` body or queue message into a :class:`RunRequest` (errors: :class:`InvalidRequest`)."""
    return parse_model(RunRequest, data)
