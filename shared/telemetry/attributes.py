"""Attribute names (Weft's own and the GenAI semantic conventions) and the content policy for spans and logs.

Content — prompts, completions, tool arguments and results, generated code, search queries — stays out of spans and
logs unless ``WEFT_TELEMETRY_CAPTURE_CONTENT=true``. :func:`safe_attributes` applies that policy to any attribute
mapping: content keys are dropped, except tool arguments and code, which are replaced by a ``<key>_sha256`` digest
(the same digest as ``StepRecord.args_hash``, so a span can be matched to the run's step records without the
arguments themselves). Everything else is coerced to a valid OpenTelemetry attribute value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry.util.types import AttributeValue

__all__ = [
    "ACTIVITY_NAME",
    "BREAKER_FROM",
    "BREAKER_TO",
    "CONTENT_ATTRIBUTES",
    "ERROR_TYPE",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOOL_CALL_ARGUMENTS",
    "GEN_AI_TOOL_CALL_RESULT",
    "GEN_AI_TOOL_NAME",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "HASHED_CONTENT_ATTRIBUTES",
    "LLM_DEPLOYMENT",
    "LLM_DURATION_MS",
    "LLM_OUTCOME",
    "LLM_ROLE",
    "LLM_TOKEN_KIND",
    "MAX_ATTRIBUTE_CHARS",
    "OUTCOME",
    "RUN_DURATION_MS",
    "RUN_ID",
    "RUN_MODE",
    "RUN_STAGE",
    "RUN_STATUS",
    "SANDBOX_BACKEND",
    "SANDBOX_CODE",
    "SANDBOX_DURATION_MS",
    "SANDBOX_MODE",
    "SANDBOX_OUTCOME",
    "SANDBOX_TOOL_CALLS",
    "SEARCH_CATALOG_SIZE",
    "SEARCH_DURATION_MS",
    "SEARCH_K",
    "SEARCH_QUERY",
    "SEARCH_RESULTS",
    "SERVER_ADDRESS",
    "STEP_ID",
    "TOOL_ARGUMENTS",
    "TOOL_DURATION_MS",
    "TOOL_NAME",
    "TOOL_OUTCOME",
    "TOOL_RESULT",
    "content_digest",
    "safe_attributes",
]

# -------------------------------------------------------------------------------------------- Weft's own names
RUN_ID: Final = "weft.run.id"
RUN_MODE: Final = "weft.run.mode"
RUN_STAGE: Final = "weft.run.stage"
RUN_STATUS: Final = "weft.run.status"
RUN_DURATION_MS: Final = "weft.run.duration_ms"
ACTIVITY_NAME: Final = "weft.activity.name"
STEP_ID: Final = "weft.step.id"
OUTCOME: Final = "weft.outcome"
TOOL_NAME: Final = "weft.tool.name"
TOOL_OUTCOME: Final = "weft.tool.outcome"
TOOL_DURATION_MS: Final = "weft.tool.duration_ms"
TOOL_ARGUMENTS: Final = "weft.tool.arguments"
TOOL_RESULT: Final = "weft.tool.result"
SANDBOX_MODE: Final = "weft.sandbox.mode"
SANDBOX_BACKEND: Final = "weft.sandbox.backend"
SANDBOX_OUTCOME: Final = "weft.sandbox.outcome"
SANDBOX_DURATION_MS: Final = "weft.sandbox.duration_ms"
SANDBOX_TOOL_CALLS: Final = "weft.sandbox.tool_calls"
SANDBOX_CODE: Final = "weft.sandbox.code"
SEARCH_K: Final = "weft.search.k"
SEARCH_CATALOG_SIZE: Final = "weft.search.catalog_size"
SEARCH_RESULTS: Final = "weft.search.results"
SEARCH_DURATION_MS: Final = "weft.search.duration_ms"
SEARCH_QUERY: Final = "weft.search.query"
LLM_ROLE: Final = "weft.llm.role"
LLM_DEPLOYMENT: Final = "weft.llm.deployment"
LLM_OUTCOME: Final = "weft.llm.outcome"
LLM_DURATION_MS: Final = "weft.llm.duration_ms"
LLM_TOKEN_KIND: Final = "weft.llm.token_kind"
BREAKER_FROM: Final = "weft.breaker.from"
BREAKER_TO: Final = "weft.breaker.to"

# ------------------------------------------------------------------------- OpenTelemetry semantic conventions
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"
"""Deprecated by ``gen_ai.provider.name``; still set because older Azure Monitor views read it."""
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

# ------------------------------------------------------------------------------------------------ the policy
CONTENT_ATTRIBUTES: Final = frozenset(
    {
        TOOL_ARGUMENTS,
        TOOL_RESULT,
        SANDBOX_CODE,
        SEARCH_QUERY,
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_SYSTEM_INSTRUCTIONS,
        GEN_AI_TOOL_CALL_ARGUMENTS,
        GEN_AI_TOOL_CALL_RESULT,
    }
)
"""Attributes that carry user or model content: kept only when content capture is on."""

HASHED_CONTENT_ATTRIBUTES: Final = frozenset({TOOL_ARGUMENTS, SANDBOX_CODE, GEN_AI_TOOL_CALL_ARGUMENTS})
"""Content attributes replaced by ``<key>_sha256`` when capture is off (the others are dropped)."""

MAX_ATTRIBUTE_CHARS: Final = 8192
"""Longest string value kept (Application Insights truncates custom dimensions at 8,192 characters)."""

_PRIMITIVES = (bool, int, float, str)


def _canonical(value: object) -> str:
    """The text that is hashed or recorded: a string as is, anything else as compact key-sorted JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_digest(value: object) -> str:
    """SHA-256 hex digest of ``value`` (strings as UTF-8, other values as canonical JSON, as ``hash_args`` does)."""
    return hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ATTRIBUTE_CHARS else text[: MAX_ATTRIBUTE_CHARS - 1] + "…"


def _attribute_value(value: object) -> AttributeValue | None:
    """A valid attribute value: primitives and homogeneous primitive lists as they are, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return _truncate(value)
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Sequence) and value and not isinstance(value, bytes | bytearray):
        kinds = {type(item) for item in value}
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            return tuple(_truncate(item) if isinstance(item, str) else item for item in value)
    return _truncate(_canonical(value))


def safe_attributes(attributes: Mapping[str, object], *, capture_content: bool = False) -> dict[str, AttributeValue]:
    """``attributes`` made safe to record on a span or a log record.

    With ``capture_content`` false (the default), keys in :data:`CONTENT_ATTRIBUTES` are removed, and those in
    :data:`HASHED_CONTENT_ATTRIBUTES` are replaced by ``<key>_sha256``. ``None`` values are dropped; other values
    become valid attribute values (strings truncated to :data:`MAX_ATTRIBUTE_CHARS`, mappings and mixed lists as
    JSON text).
    """
    safe: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if key in CONTENT_ATTRIBUTES and not capture_content:
            if key in HASHED_CONTENT_ATTRIBUTES:
                safe[f"{key}_sha256"] = content_digest(value)
            continue
        converted = _attribute_value(value)
        if converted is not None:
            safe[key] = converted
    return safe
