"""Span handles: what a ``with telemetry.<kind>_span(...) as span:`` block gets to record on its span.

A handle wraps one OpenTelemetry span. Attributes set through it pass :func:`safe_attributes` (content only when
capture is on). When the block ends the handle records its outcome and duration on the span, and the matching
metrics: callers never record a tool call's span and its counters separately.

Outcome: ``ok`` unless the block calls :meth:`SpanHandle.set_outcome` or raises. An exception sets the outcome to
the exception's ``code`` (every :class:`~shared.errors.WeftError` has one) or ``error`` (``canceled`` for
cancellation), the span status to ERROR and ``error.type`` to the exception's qualified class name. The exception
itself (message, stack trace) is added as a span event only when content capture is on: messages meant for the LLM
may quote arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.telemetry import attributes as attr
from shared.telemetry.attributes import safe_attributes
from shared.telemetry.metrics import Metrics

__all__ = ["LlmCallSpan", "SandboxSpan", "SearchSpan", "SpanHandle", "ToolCallSpan"]

H = TypeVar("H", bound="SpanHandle")

_CANCELLATION = (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt, SystemExit)


def error_type(exc: BaseException) -> str:
    """``error.type`` for an exception: its fully qualified class name (builtins without a module prefix)."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def outcome_of(exc: BaseException) -> str:
    """The outcome an exception stands for: ``canceled``, the exception's ``code``, or ``error``."""
    if isinstance(exc, _CANCELLATION):
        return "canceled"
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else "error"


class SpanHandle:
    """A live span with the content policy applied; see the module docstring for how it ends."""

    _outcome_key = attr.OUTCOME
    _duration_key: str | None = None

    def __init__(self, span: Span, *, capture_content: bool) -> None:
        self.span = span
        """The underlying OpenTelemetry span (set attributes through the handle so the content policy applies)."""
        self.capture_content = capture_content
        """Whether content attributes are recorded (``WEFT_TELEMETRY_CAPTURE_CONTENT``)."""
        self.outcome = "ok"
        """``ok``, an error code, or what :meth:`set_outcome` set."""
        self.duration_ms: float | None = None
        """Set when the block ends."""
        self._error = False
        self._explicit = False

    def set_attribute(self, key: str, value: object) -> None:
        """Set one attribute (dropped or hashed if it is content and capture is off)."""
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, object]) -> None:
        """Set several attributes through :func:`safe_attributes`."""
        self.span.set_attributes(safe_attributes(attributes, capture_content=self.capture_content))

    def set_outcome(self, outcome: str, *, error: bool | None = None, error_type: str | None = None) -> None:
        """Record how the operation went: ``ok`` or an error code (``ErrorInfo.code``), e.g. ``tool_timeout``.

        ``error`` defaults to ``outcome != "ok"``; pass ``False`` for outcomes that are not failures (a replay step
        that stopped at pending tool calls). ``error_type`` sets ``error.type`` (default: the outcome).
        """
        self.outcome = outcome
        self._explicit = True
        self._error = outcome != "ok" if error is None else error
        if self._error:
            self.span.set_status(Status(StatusCode.ERROR, outcome))
            self.span.set_attribute(attr.ERROR_TYPE, error_type or outcome)

    def _fail(self, exc: BaseException) -> None:
        if not self._explicit or not self._error:
            self.outcome = outcome_of(exc)
        self._error = True
        self.span.set_status(Status(StatusCode.ERROR, self.outcome))
        self.span.set_attribute(attr.ERROR_TYPE, error_type(exc))
        if self.capture_content:
            self.span.record_exception(exc, escaped=True)

    def _finish(self, duration_ms: float) -> None:
        """Record outcome and duration on the span; subclasses add their metrics."""
        self.duration_ms = duration_ms
        self.span.set_attribute(self._outcome_key, self.outcome)
        if self._duration_key is not None:
            self.span.set_attribute(self._duration_key, duration_ms)


class ToolCallSpan(SpanHandle):
    """One tool call (``weft.tool.*``); counts ``weft.tool.calls`` and ``weft.tool.duration`` when it ends."""

    _outcome_key = attr.TOOL_OUTCOME
    _duration_key = attr.TOOL_DURATION_MS

    def __init__(self, span: Span, *, capture_content: bool, metrics: Metrics, tool: str) -> None:
        super().__init__(span, capture_content=capture_content)
        self._metrics = metrics
        self._tool = tool

    def record_arguments(self, arguments: Mapping[str, object]) -> None:
        """The call's arguments: recorded with capture on, else only their SHA-256 (``StepRecord.args_hash``)."""
        self.set_attribute(attr.TOOL_ARGUMENTS, dict(arguments))

    def record_result(self, result: object) -> None:
        """The tool's result: recorded only with capture on."""
        self.set_attribute(attr.TOOL_RESULT, result)

    def _finish(self, duration_ms: float) -> None:
        super()._finish(duration_ms)
        self._metrics.tool_call(self._tool, self.outcome, duration_ms)


class LlmCallSpan(SpanHandle):
    """One chat completion, following the GenAI semantic conventions; counts tokens and latency when it ends."""

    _outcome_key = attr.LLM_OUTCOME
    _duration_key = attr.LLM_DURATION_MS

    def __init__(self, span: Span, *, capture_content: bool, metrics: Metrics, role: str, deployment: str) -> None:
        super().__init__(span, capture_content=capture_content)
        self._metrics = metrics
        self._role = role
        self._deployment = deployment
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0

    def record_usage(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> None:
        """Tokens the call spent (``Usage.prompt_tokens``, ``completion_tokens``, ``cached_tokens``).

        Sets ``gen_ai.usage.*`` on the span and adds to ``weft.llm.tokens``. Meant to be called once; a later call
        with larger running totals (streaming) records only the increase.
        """
        totals = (input_tokens, output_tokens, cached_tokens)
        before = (self.input_tokens, self.output_tokens, self.cached_tokens)
        increase = [max(0, new - old) for new, old in zip(totals, before, strict=True)]
        self.input_tokens, self.output_tokens, self.cached_tokens = (
            max(new, old) for new, old in zip(totals, before, strict=True)
        )
        self.span.set_attributes({
            attr.GEN_AI_USAGE_INPUT_TOKENS: self.input_tokens,
            attr.GEN_AI_USAGE_OUTPUT_TOKENS: self.output_tokens,
            attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: self.cached_tokens,
        })
        self._metrics.llm_tokens(self._role, self._deployment, input_tokens=increase[0], output_tokens=increase[1],
                                 cached_tokens=increase[2])

    def set_response(
        self, *, model: str | None = None, response_id: str | None = None, finish_reasons: Sequence[str] = ()
    ) -> None:
        """What the service reported: ``gen_ai.response.model``, ``.id`` and ``.finish_reasons``."""
        self.set_attributes({
            attr.GEN_AI_RESPONSE_MODEL: model,
            attr.GEN_AI_RESPONSE_ID: response_id,
            attr.GEN_AI_RESPONSE_FINISH_REASONS: list(finish_reasons) or None,
        })

    def record_input_messages(self, messages: Sequence[Mapping[str, object]]) -> None:
        """The prompt (``gen_ai.input.messages``, wire-format messages): recorded only with capture on."""
        self.set_attribute(attr.GEN_AI_INPUT_MESSAGES, list(messages))

    def record_output_messages(self, messages: Sequence[Mapping[str, object]]) -> None:
        """The completion (``gen_ai.output.messages``): recorded only with capture on."""
        self.set_attribute(attr.GEN_AI_OUTPUT_MESSAGES, list(messages))

    def _finish(self, duration_ms: float) -> None:
        super()._finish(duration_ms)
        self._metrics.llm_call(self._role, self._deployment, self.outcome, duration_ms)


class SandboxSpan(SpanHandle):
    """One sandbox run (``weft.sandbox.*``); counts ``weft.sandbox.runs`` and its duration when it ends."""

    _outcome_key = attr.SANDBOX_OUTCOME
    _duration_key = attr.SANDBOX_DURATION_MS

    def __init__(self, span: Span, *, capture_content: bool, metrics: Metrics, mode: str) -> None:
        super().__init__(span, capture_content=capture_content)
        self._metrics = metrics
        self._mode = mode

    def set_tool_calls(self, count: int) -> None:
        """How many tool calls the code made (inline) or left pending (replay)."""
        self.span.set_attribute(attr.SANDBOX_TOOL_CALLS, count)

    def record_code(self, code: str) -> None:
        """The code: recorded with capture on, else only its SHA-256."""
        self.set_attribute(attr.SANDBOX_CODE, code)

    def _finish(self, duration_ms: float) -> None:
        super()._finish(duration_ms)
        self._metrics.sandbox_run(self._mode, self.outcome, duration_ms)


class SearchSpan(SpanHandle):
    """One tool search (``weft.search.*``)."""

    _duration_key = attr.SEARCH_DURATION_MS

    def set_results(self, count: int) -> None:
        """How many tools the search returned."""
        self.span.set_attribute(attr.SEARCH_RESULTS, count)

    def record_query(self, query: str) -> None:
        """The query text: recorded only with capture on."""
        self.set_attribute(attr.SEARCH_QUERY, query)


@contextmanager
def open_span(
    tracer: trace.Tracer,
    name: str,
    make_handle: Callable[[Span], H],
    *,
    clock: Callable[[], float],
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, object] | None = None,
    context: Context | None = None,
    capture_content: bool = False,
) -> Iterator[H]:
    """Start a current span, yield its handle, and end it with outcome and duration (see the module docstring)."""
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=safe_attributes(attributes or {}, capture_content=capture_content),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        handle = make_handle(span)
        started = clock()
        try:
            yield handle
        except BaseException as exc:
            handle._fail(exc)
            raise
        finally:
            handle._finish((clock() - started) * 1000.0)
