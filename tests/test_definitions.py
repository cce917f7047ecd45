from __future__ import annotations

from typing import Any

import pytest

from workflows.definitions import (
    DefinitionError,
    definition_hash,
    definition_json_schema,
    validate_definition,
)


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
