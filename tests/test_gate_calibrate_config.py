"""A gate's `calibrate:` block: validated at import, every problem named with its step and field."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.definitions import DefinitionError, validate_definition


def gate_definition(calibrate: Any) -> dict[str, Any]:
    return {
        "slug": "calibrated",
        "name": "Calibrated",
        "steps": [
            {"id": "classify", "kind": "probe", "config": {"answer": True}},
            {
                "id": "check",
                "kind": "gate",
                "config": {"threshold": 0.9, "audit_rate": 0.05, "calibrate": calibrate},
            },
        ],
    }


def errors_of(calibrate: Any) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        validate_definition(gate_definition(calibrate))
    return info.value.errors


def test_defaults_recommend_every_200_one_threshold() -> None:
    parsed = validate_definition(gate_definition({"alpha": 0.02, "delta": 0.05}))
    config = parsed.step("check").config["calibrate"]
    assert config == {"alpha": 0.02, "delta": 0.05}  # stored as written
    from workflows.steps.gate import GateConfig

    calibrate = GateConfig.model_validate(parsed.step("check").config).calibrate
    assert calibrate is not None
    assert (calibrate.mode, calibrate.every, calibrate.per_label) == ("recommend", 200, False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha", 0), ("alpha", 0.6), ("delta", -0.1), ("delta", 0.51), ("alpha", "high")],
)
def test_alpha_and_delta_must_lie_in_zero_to_a_half(field: str, value: Any) -> None:
    calibrate = {"alpha": 0.02, "delta": 0.05, field: value}
    locations = [loc for loc, _ in errors_of(calibrate)]
    assert locations == [f"steps[1] (check).config.calibrate.{field}"]


def test_alpha_and_delta_are_required() -> None:
    locations = sorted(loc for loc, _ in errors_of({}))
    assert locations == [
        "steps[1] (check).config.calibrate.alpha",
        "steps[1] (check).config.calibrate.delta",
    ]


def test_an_unknown_mode_is_refused_naming_the_choices() -> None:
    [(loc, message)] = errors_of({"alpha": 0.02, "delta": 0.05, "mode": "sometimes"})
    assert loc == "steps[1] (check).config.calibrate.mode"
    assert "'recommend'" in message and "'auto'" in message


def test_every_is_at_least_one() -> None:
    [(loc, _)] = errors_of({"alpha": 0.02, "delta": 0.05, "mode": "auto", "every": 0})
    assert loc == "steps[1] (check).config.calibrate.every"


def test_an_unknown_field_is_refused() -> None:
    [(loc, _)] = errors_of({"alpha": 0.02, "delta": 0.05, "gamma": 1})
    assert loc == "steps[1] (check).config.calibrate.gamma"
