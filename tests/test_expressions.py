"""CEL expressions: results, and the bounds that keep an expression from running away."""

from __future__ import annotations

import dataclasses
from typing import Any

import celpy
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from workflows import expressions
from workflows.definitions import DefinitionError, validate_definition
from workflows.expressions import ExpressionBudgetExceeded, ExpressionError, check, evaluate

CONTEXT = {"input": {"amount": 120, "items": [1, 2, 3]}, "steps": {}}


def nested_parens(depth: int) -> str:
    return "(" * depth + "1" + ")" * depth


@pytest.fixture
def json_to_cel_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every top-level conversion of a context value to CEL."""
    calls: list[Any] = []
    real = celpy.json_to_cel

    def spy(value: Any) -> Any:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(celpy, "json_to_cel", spy)
    return calls


# --- Results ------------------------------------------------------------------------------


def test_it_evaluates_over_a_plain_context() -> None:
    assert evaluate("input.amount > 100", CONTEXT) is True
    assert evaluate("input.items.map(x, x * 2)", CONTEXT) == [2, 4, 6]
    assert evaluate("{'a': input.amount}", CONTEXT) == {"a": 120}


def test_a_prepared_context_is_converted_once_for_any_number_of_expressions(
    json_to_cel_calls: list[Any],
) -> None:
    activation = expressions.prepare(CONTEXT)
    assert len(json_to_cel_calls) == len(CONTEXT)
    results = [evaluate(f"input.amount + {i}", activation) for i in range(10)]
    assert results == [120 + i for i in range(10)]
    assert len(json_to_cel_calls) == len(CONTEXT)  # nothing converted again
    # A plain mapping is still accepted, converted on each call as before.
    evaluate("input.amount", CONTEXT)
    assert len(json_to_cel_calls) == 2 * len(CONTEXT)


def test_a_prepared_context_is_immutable_and_independent_of_its_source() -> None:
    context: dict[str, Any] = {"input": {"amount": 1}}
    activation = expressions.prepare(context)
    context["input"]["amount"] = 2
    assert evaluate("input.amount", activation) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        activation.values = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        activation.values["input"] = None  # type: ignore[index]


def test_it_rejects_a_malformed_expression() -> None:
    with pytest.raises(ExpressionError, match="invalid expression"):
        check("input.amount >")
    with pytest.raises(ExpressionError, match="non-empty"):
        check("  ")


# --- The evaluation budget ----------------------------------------------------------------


def test_it_stops_a_runaway_nested_map_with_a_budget(settings: Any) -> None:
    assert settings.HITL_CEL_MAX_STEPS == 100_000
    settings.HITL_CEL_MAX_STEPS = 10_000  # the same, ten times sooner
    context = {"input": {"l": list(range(1000))}}
    with pytest.raises(ExpressionBudgetExceeded) as info:
        evaluate("input.l.map(x, input.l.map(y, x * y))", context)
    assert "10,000 evaluation steps (HITL_CEL_MAX_STEPS)" in str(info.value)
    assert isinstance(info.value, ExpressionError)  # callers fail the step, never retry


def test_the_budget_is_a_count_not_a_clock(settings: Any) -> None:
    source = "input.l.map(x, x + 1)"
    small, large = {"input": {"l": list(range(10))}}, {"input": {"l": list(range(500))}}
    settings.HITL_CEL_MAX_STEPS = 1000
    # Every run of the same expression over the same data costs the same.
    for _ in range(3):
        assert evaluate(source, small) == list(range(1, 11))
        with pytest.raises(ExpressionBudgetExceeded):
            evaluate(source, large)
    settings.HITL_CEL_MAX_STEPS = 10_000
    assert len(evaluate(source, large)) == 500


def test_the_budget_holds_inside_macros_that_swallow_errors(settings: Any) -> None:
    # exists() and || turn evaluation errors into values; running out must not be one.
    settings.HITL_CEL_MAX_STEPS = 1000
    context = {"input": {"l": list(range(1000))}}
    for source in (
        "input.l.exists(x, x < 0)",
        "input.l.all(x, x >= 0)",
        "false || input.l.exists(x, x < 0)",
        "input.l.exists_one(x, x == 0)",
    ):
        with pytest.raises(ExpressionBudgetExceeded):
            evaluate(source, context)


def test_concatenations_count_their_size_against_the_budget() -> None:
    # 26 doublings: a 128 MiB string from a handful of steps, if only steps were counted.
    context = {"input": {"l": list(range(26))}}
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate("input.l.reduce(r, i, 'ab', r + r)", context)


def test_the_result_counts_against_the_budget() -> None:
    # Each step doubles the result by sharing: 2^18 values to convert back, from 18 steps.
    context = {"input": {"l": list(range(18))}}
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate("input.l.reduce(r, i, [1], [r, r])", context)


# --- Failures ------------------------------------------------------------------------------


def test_a_time_limit_inside_an_expression_is_a_permanent_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spent = 0

    def spend(self: Any, steps: int = 1) -> None:
        nonlocal spent
        spent += 1
        if spent == 50:  # Celery's soft time limit, raised in the middle of the work
            raise SoftTimeLimitExceeded()

    monkeypatch.setattr(expressions._Budget, "spend", spend)
    with pytest.raises(ExpressionError) as info:
        evaluate("input.l.exists(x, x < 0)", {"input": {"l": list(range(100))}})
    assert not isinstance(info.value, ExpressionBudgetExceeded)
    assert "ran out of time" in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "[1, 'a'].min()",  # TypeError inside cel-python
        "input.items.reduce(r, i, 0)",  # ValueError
        "[1].map(1, 2)",  # CELSyntaxError, only found when evaluated
    ],
)
def test_every_cel_python_failure_is_an_expression_error(source: str) -> None:
    with pytest.raises(ExpressionError, match="failed"):
        evaluate(source, CONTEXT)


def test_data_too_deep_to_convert_is_an_expression_error() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(ExpressionError, match="too deep"):
        expressions.prepare({"input": deep})
    with pytest.raises(ExpressionError, match="too deep"):
        evaluate("1", {"input": deep})


# --- Limits checked at import ---------------------------------------------------------------


def test_it_accepts_nesting_up_to_the_depth_limit_and_evaluates_it() -> None:
    assert evaluate(nested_parens(50), {}) == 1
    expected: list[Any] = []
    for _ in range(49):
        expected = [expected]
    assert evaluate("[" * 50 + "]" * 50, {}) == expected
    assert evaluate("+".join(["1"] * 51), {}) == 51  # 50 additions


def test_it_rejects_nesting_deeper_than_the_limit_at_check() -> None:
    for source in (nested_parens(51), "+".join(["1"] * 52), "!" * 51 + "true"):
        with pytest.raises(ExpressionError) as info:
            check(source)
        assert "deeper than 50 levels (HITL_CEL_MAX_DEPTH)" in str(info.value)


def test_it_rejects_3000_nested_parentheses_with_a_clear_error(settings: Any) -> None:
    source = nested_parens(3000)
    with pytest.raises(ExpressionError) as info:
        check(source)
    assert "HITL_CEL_MAX_LENGTH" in str(info.value)
    assert len(str(info.value)) < 300  # names the expression without repeating it whole
    settings.HITL_CEL_MAX_LENGTH = 100_000
    with pytest.raises(ExpressionError, match="HITL_CEL_MAX_DEPTH"):
        check(source)
    with pytest.raises(ExpressionError, match="HITL_CEL_MAX_DEPTH"):
        evaluate(source, {})


def test_it_rejects_an_expression_over_the_length_limit(settings: Any) -> None:
    settings.HITL_CEL_MAX_LENGTH = 20
    check("input.amount + 12345")
    with pytest.raises(ExpressionError, match="longer than 20 characters"):
        check("input.amount + 123456")


def test_a_definition_with_too_deep_an_expression_is_refused_naming_step_and_field(
    settings: Any,
) -> None:
    settings.HITL_CEL_MAX_LENGTH = 100_000
    data = {
        "slug": "deep",
        "name": "Deep",
        "steps": [
            {"id": "calc", "kind": "transform", "config": {"output": {"x": nested_parens(3000)}}}
        ],
    }
    with pytest.raises(DefinitionError) as info:
        validate_definition(data)
    [(loc, msg)] = info.value.errors
    assert loc == "steps[0] (calc).config.output"
    assert "x: invalid expression" in msg and "HITL_CEL_MAX_DEPTH" in msg
