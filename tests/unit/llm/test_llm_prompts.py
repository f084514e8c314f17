"""Prompts are data files in shared/llm/prompts, loaded by name and filled by placeholder."""

from __future__ import annotations

import pytest

from shared.llm.chat import load_prompt, render_prompt

PLACEHOLDERS = {
    "task_planner": {"style": "plan", "style_rules": "R", "tools": "T"},
    "task_style_plan": {"max_steps": "8"},
    "task_style_code": {"allowed_modules": "asyncio, json", "max_tool_calls": "20"},
    "task_results": {"results": "X"},
    "answer": {},
    "repair": {"error": "E"},
}


@pytest.mark.parametrize("name", sorted(PLACEHOLDERS), ids=sorted(PLACEHOLDERS))
def test_each_prompt_renders_with_exactly_its_placeholders(name: str) -> None:
    rendered = render_prompt(name, **PLACEHOLDERS[name])

    assert "{{" not in rendered
    assert all(value in rendered for value in PLACEHOLDERS[name].values())


def test_rendering_substitutes_values_verbatim_once() -> None:
    rendered = render_prompt("repair", error="Your reply was not valid JSON {{tools}} $x")

    assert "Your reply was not valid JSON {{tools}} $x" in rendered


def test_the_plan_prompt_explains_references_between_steps() -> None:
    text = load_prompt("task_style_plan")

    assert '{"$ref": "<step id>"}' in text
    assert "depends_on" in text


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        pytest.param({"style": "plan", "tools": "T"}, "missing ['style_rules']", id="missing"),
        pytest.param({"style": "plan", "style_rules": "R", "tools": "T", "tool": "x"}, "unknown ['tool']",
                     id="unknown"),
    ],
)
def test_placeholders_must_match_exactly(values: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        render_prompt("task_planner", **values)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("../settings", "lowercase identifiers", id="path-traversal"),
        pytest.param("Planner_Plan", "lowercase identifiers", id="uppercase"),
        pytest.param("planner_sql", "no prompt named 'planner_sql'; available: answer, repair", id="unknown"),
    ],
)
def test_only_prompt_files_can_be_loaded(name: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        load_prompt(name)
