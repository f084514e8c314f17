"""Prompts, arguments, results, code and queries stay out of spans unless WEFT_TELEMETRY_CAPTURE_CONTENT is on."""

from __future__ import annotations

import json

import pytest

from shared.models import hash_args
from shared.telemetry import CONTENT_ATTRIBUTES, content_digest, safe_attributes
from shared.telemetry.attributes import MAX_ATTRIBUTE_CHARS

SECRET_ARGS = {"to": "alice@example.com", "body": "the launch code is 0000"}
PROMPT = [{"role": "user", "content": "summarise alice's medical record"}]
COMPLETION = [{"role": "assistant", "content": "alice has ..."}]
CODE = "r = await send_mail(to='alice@example.com')"
QUERY = "email alice about her diagnosis"
MARKERS = ("alice", "launch code", "diagnosis", "medical")


def emit_everything(telemetry, clock):
    with telemetry.activity_span("llm_answer", "run-1"):
        with telemetry.tool_call_span("send_mail", "run-1", "s1") as call:
            call.record_arguments(SECRET_ARGS)
            call.record_result({"sent_to": "alice@example.com"})
        with telemetry.llm_call_span("worker", "worker", run_id="run-1") as llm:
            llm.record_input_messages(PROMPT)
            llm.record_output_messages(COMPLETION)
        with telemetry.sandbox_span("inline", backend="local", run_id="run-1") as run:
            run.record_code(CODE)
        with telemetry.search_span(5, 10, run_id="run-1") as search:
            search.record_query(QUERY)
        with telemetry.tool_call_span("leaky", "run-1", "s2"):
            raise_and_swallow()


def raise_and_swallow():
    raise ValueError("cannot send to alice@example.com")


def all_text(spans) -> str:
    parts = []
    for span in spans:
        parts += [f"{k}={v}" for k, v in span.attributes.items()]
        for event in span.events:
            parts += [event.name, *(f"{k}={v}" for k, v in event.attributes.items())]
        parts.append(str(span.status.description))
    return "\n".join(parts)


def test_no_content_is_recorded_by_default(pipeline, telemetry):
    with pytest.raises(ValueError, match="alice"):
        emit_everything(telemetry, pipeline.clock)
    text = all_text(pipeline.spans())
    assert len(pipeline.spans()) == 6
    for marker in MARKERS:
        assert marker not in text
    for name in CONTENT_ATTRIBUTES:
        assert f"{name}=" not in text
    call = pipeline.span("execute_tool send_mail")
    assert call.attributes["weft.tool.arguments_sha256"] == hash_args(SECRET_ARGS)
    assert pipeline.span("weft.sandbox inline").attributes["weft.sandbox.code_sha256"] == content_digest(CODE)


def test_content_is_recorded_when_capture_is_on(pipeline, make_telemetry):
    telemetry = make_telemetry(capture_content=True)
    with pytest.raises(ValueError, match="alice"):
        emit_everything(telemetry, pipeline.clock)
    call = pipeline.span("execute_tool send_mail")
    assert json.loads(call.attributes["weft.tool.arguments"]) == SECRET_ARGS
    assert json.loads(call.attributes["weft.tool.result"]) == {"sent_to": "alice@example.com"}
    llm = pipeline.span("chat worker")
    assert json.loads(llm.attributes["gen_ai.input.messages"]) == PROMPT
    assert json.loads(llm.attributes["gen_ai.output.messages"]) == COMPLETION
    assert pipeline.span("weft.sandbox inline").attributes["weft.sandbox.code"] == CODE
    assert pipeline.span("weft.search").attributes["weft.search.query"] == QUERY
    leaky = pipeline.span("execute_tool leaky")
    assert [event.name for event in leaky.events] == ["exception"]
    assert "alice@example.com" in leaky.events[0].attributes["exception.message"]


@pytest.mark.parametrize(
    ("attributes", "capture", "expected"),
    [
        ({"weft.tool.name": "t", "weft.step.id": None}, False, {"weft.tool.name": "t"}),
        ({"weft.tool.result": {"x": 1}, "gen_ai.input.messages": PROMPT}, False, {}),
        ({"weft.tool.arguments": {"b": 2, "a": 1}}, False,
         {"weft.tool.arguments_sha256": hash_args({"a": 1, "b": 2})}),
        ({"weft.tool.arguments": {"b": 2, "a": 1}}, True, {"weft.tool.arguments": '{"a":1,"b":2}'}),
        ({"weft.sandbox.code": "x = 1"}, False, {"weft.sandbox.code_sha256": content_digest("x = 1")}),
        ({"weft.search.query": "q"}, True, {"weft.search.query": "q"}),
        ({"n": 3, "ok": True, "ratio": 0.5}, False, {"n": 3, "ok": True, "ratio": 0.5}),
        ({"names": ["a", "b"], "mixed": [1, "a"], "empty": []}, False,
         {"names": ("a", "b"), "mixed": '[1,"a"]', "empty": "[]"}),
        ({"nested": {"k": [1, 2]}}, False, {"nested": '{"k":[1,2]}'}),
    ],
    ids=["none-dropped", "content-dropped", "arguments-hashed", "arguments-captured", "code-hashed",
         "query-captured", "primitives-kept", "lists", "mapping-as-json"],
)
def test_safe_attributes(attributes, capture, expected):
    assert safe_attributes(attributes, capture_content=capture) == expected


def test_long_strings_are_truncated():
    value = safe_attributes({"weft.note": "x" * (MAX_ATTRIBUTE_CHARS + 10)})["weft.note"]
    assert len(value) == MAX_ATTRIBUTE_CHARS
    assert value.endswith("…")


def test_telemetry_safe_attributes_uses_the_process_setting(make_telemetry):
    assert make_telemetry().safe_attributes({"gen_ai.output.messages": COMPLETION}) == {}
    captured = make_telemetry(capture_content=True).safe_attributes({"gen_ai.output.messages": COMPLETION})
    assert json.loads(captured["gen_ai.output.messages"]) == COMPLETION
