from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from workflows.definitions import (
    DefinitionError,
    WorkflowDefinition,
    definition_hash,
    definition_json_schema,
    parse_source,
    validate_definition,
)
from workflows.steps import get_kind


def definition(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "slug": "demo",
        "name": "Demo",
        "steps": [
            {"id": "a", "kind": "transform", "config": {"output": {"x": "1"}}},
            {"id": "b", "kind": "wait"},
        ],
    }
    base.update(overrides)
    return base


def errors_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        validate_definition(data)
    return info.value.errors


def test_it_accepts_a_valid_definition() -> None:
    parsed = validate_definition(definition())
    assert [s.id for s in parsed.steps] == ["a", "b"]


def test_it_rejects_duplicate_step_ids_naming_the_step() -> None:
    steps = [
        {"id": "a", "kind": "wait"},
        {"id": "a", "kind": "wait"},
    ]
    assert ("steps[1] (a).id", "duplicate step id 'a'") in errors_of(definition(steps=steps))


def test_it_rejects_an_unknown_kind() -> None:
    errors = errors_of(definition(steps=[{"id": "a", "kind": "teleport"}]))
    assert errors[0][0] == "steps[0] (a).kind"
    assert "unknown step kind 'teleport'" in errors[0][1]


def test_it_rejects_a_dangling_transition() -> None:
    steps = [{"id": "a", "kind": "wait", "next": "nowhere"}, {"id": "b", "kind": "wait"}]
    assert ("steps[0] (a).next", "no step with id 'nowhere'") in errors_of(definition(steps=steps))


def test_it_rejects_a_backward_transition_as_a_cycle() -> None:
    steps = [{"id": "a", "kind": "wait"}, {"id": "b", "kind": "wait", "next": {"x": "a"}}]
    loc, msg = errors_of(definition(steps=steps))[0]
    assert loc == "steps[1] (b).next.x"
    assert "no cycles" in msg


def test_it_rejects_a_bad_cel_expression_naming_the_field() -> None:
    steps = [{"id": "calc", "kind": "transform", "config": {"output": {"x": "input.amount >"}}}]
    loc, msg = errors_of(definition(steps=steps))[0]
    assert loc == "steps[0] (calc).config.output"
    assert "x: invalid expression" in msg


def test_it_rejects_unknown_config_keys() -> None:
    steps = [{"id": "a", "kind": "wait", "config": {"reasn": "typo"}}]
    loc, msg = errors_of(definition(steps=steps))[0]
    assert loc == "steps[0] (a).config.reasn"
    assert "Extra inputs" in msg


def test_it_rejects_an_invalid_input_schema() -> None:
    loc, msg = errors_of(definition(input_schema={"type": "nonsense"}))[0]
    assert loc == "input_schema"
    assert "not a valid JSON Schema" in msg


def test_it_reports_every_problem_at_once() -> None:
    steps = [
        {"id": "a", "kind": "teleport"},
        {"id": "b", "kind": "wait", "next": "zzz"},
    ]
    assert len(errors_of(definition(steps=steps))) == 2


def test_it_rejects_a_bad_step_id_format() -> None:
    loc, _ = errors_of(definition(steps=[{"id": "Bad-Id", "kind": "wait"}]))[0]
    assert loc == "steps[0] (Bad-Id).id"


def test_hash_ignores_formatting_but_not_content() -> None:
    one = validate_definition(definition())
    same = validate_definition(definition(description=""))
    other = validate_definition(definition(name="Other"))
    assert definition_hash(one) == definition_hash(same)
    assert definition_hash(one) != definition_hash(other)


def test_json_schema_lists_the_format_and_kind_configs() -> None:
    schema = definition_json_schema()
    assert "steps" in schema["properties"]
    assert "transform" in schema["$defs"]["kind_configs"]


# --- Limits -------------------------------------------------------------------------------
# A definition is untrusted text: every way it could make the server do unbounded work is
# refused with a DefinitionError that names the limit and the setting that raises it.


def laughs(levels: int, width: int = 10) -> str:
    """A "billion laughs": each anchor is a list of `width` aliases of the one before."""
    lines = ["slug: demo", "name: Demo", "steps: [{id: a, kind: wait}]", "input_schema:"]
    lines.append("  x-0: &a0 [" + ", ".join(["lol"] * width) + "]")
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"  x-{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def parse_errors(text: str) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        parse_source(text)
    return info.value.errors


def nested(depth: int) -> str:
    return "{slug: demo, input_schema: " + "[" * depth + "]" * depth + "}"


def test_it_rejects_text_over_the_byte_limit_before_parsing(settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_BYTES = 100
    # Not even valid YAML: the size is checked first, so the parser never sees it.
    [(loc, msg)] = parse_errors("steps: [" + "x" * 200)
    assert loc == ""
    assert "HITL_DEFINITION_MAX_BYTES" in msg and "100 bytes" in msg


def test_the_byte_limit_counts_utf8_bytes_not_characters(settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_BYTES = 100
    text = "name: " + "é" * 60  # 66 characters, 126 bytes
    assert "HITL_DEFINITION_MAX_BYTES" in parse_errors(text)[0][1]


def test_it_rejects_a_billion_laughs_without_expanding_it(settings: Any) -> None:
    # 10^30 values once expanded: counting them one by one would never finish.
    [(loc, msg)] = parse_errors(laughs(30))
    assert loc == ""
    assert "HITL_DEFINITION_MAX_NODES" in msg and "100,000" in msg


def test_it_accepts_aliases_that_expand_within_the_node_limit(settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_NODES = 2000
    data = parse_source(laughs(3))  # 10 + 100 + 1000 list items, plus the rest
    assert len(data["input_schema"]["x-2"]) == 10
    settings.HITL_DEFINITION_MAX_NODES = 1000
    assert "HITL_DEFINITION_MAX_NODES" in parse_errors(laughs(3))[0][1]


def test_it_rejects_an_alias_that_contains_itself() -> None:
    [(_, msg)] = parse_errors("slug: demo\ninput_schema: &loop {x-self: *loop}\n")
    assert "refers to itself" in msg


def test_it_rejects_nesting_deeper_than_the_depth_limit(settings: Any) -> None:
    assert parse_source(nested(19))["slug"] == "demo"  # 19 lists inside the mapping: 20 levels
    [(loc, msg)] = parse_errors(nested(20))
    assert loc == ""
    assert "HITL_DEFINITION_MAX_DEPTH" in msg and "20 levels" in msg
    assert "line 1" in msg


def test_it_rejects_very_deep_nesting_with_a_clear_error_not_a_recursion_error() -> None:
    # The YAML composer recurses per level: this would raise RecursionError if it ran.
    assert "HITL_DEFINITION_MAX_DEPTH" in parse_errors(nested(50_000))[0][1]


def test_the_depth_limit_counts_nesting_brought_in_by_aliases(settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_DEPTH = 5
    deep = "[[[1]]]"  # three levels, used under two more
    assert parse_source(f"a: &d {deep}\nb: [*d]\n") == {"a": [[[1]]], "b": [[[[1]]]]}
    assert "HITL_DEFINITION_MAX_DEPTH" in parse_errors(f"a: &d {deep}\nb: [[*d]]\n")[0][1]


def test_json_text_gets_the_same_limits(settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_DEPTH = 3
    assert parse_source('{"a": {"b": [1]}}') == {"a": {"b": [1]}}
    assert "HITL_DEFINITION_MAX_DEPTH" in parse_errors('{"a": {"b": [[1]]}}')[0][1]


def test_it_rejects_too_many_steps_before_checking_each_one(settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_STEPS = 3
    # Each step is wrong too, but only the count is reported: nothing else was checked.
    steps = [{"id": f"s{i}", "kind": "teleport"} for i in range(4)]
    assert errors_of(definition(steps=steps)) == [
        ("steps", "4 steps; at most 3 are allowed (HITL_DEFINITION_MAX_STEPS)")
    ]
    assert len(errors_of(definition(steps=steps[:3]))) == 3  # at the limit: checked normally


def test_it_validates_a_definition_at_the_step_limit(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.HITL_DEFINITION_MAX_STEPS == 500
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    wait = type(get_kind("wait"))

    def spy(self: Any, config: Any, step_id: str, earlier: Mapping[str, str]) -> list[str]:
        seen.append((step_id, list(earlier.items())))
        return []

    monkeypatch.setattr(wait, "check_in_definition", spy)
    steps: list[dict[str, Any]] = [
        {"id": f"s{i}", "kind": "wait", "next": f"s{i + 2}" if i < 498 else "end"}
        for i in range(500)
    ]
    steps.append({"id": "g", "kind": "gate", "config": {"guards": "s0"}})
    settings.HITL_DEFINITION_MAX_STEPS = 501
    parsed = validate_definition(definition(steps=steps))
    assert [s.id for s in parsed.steps] == [s["id"] for s in steps]
    # Each step saw exactly the steps before it, in order.
    assert len(seen) == 500
    for index, (step_id, earlier) in enumerate(seen):
        assert step_id == f"s{index}"
        assert earlier == [(f"s{i}", "wait") for i in range(index)]
    assert parsed.position("s499") == 499 and parsed.step("g").kind == "gate"


def test_step_and_position_look_up_by_id_and_follow_changes_to_the_steps() -> None:
    parsed = validate_definition(definition())
    assert parsed.position("b") == 1 and parsed.step("b").id == "b"
    with pytest.raises(KeyError):
        parsed.step("zzz")
    with pytest.raises(KeyError):
        parsed.position("zzz")
    # The index is built once, but a changed list of steps is never answered from a stale one.
    parsed.steps.insert(0, parsed.steps.pop())
    assert parsed.position("b") == 0 and parsed.position("a") == 1
    parsed.steps.append(parsed.steps[0].model_copy(update={"id": "c"}))
    assert parsed.step("c").id == "c" and parsed.position("c") == 2
    # The index is not part of the model: equal definitions stay equal, dumps are unchanged.
    assert parsed == WorkflowDefinition.model_validate(parsed.model_dump())
