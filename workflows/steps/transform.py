"""`transform`: computes output fields with CEL expressions over the run's context."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from workflows import expressions
from workflows.steps.base import Completed, Failed, KindConfig, Result, StepContext, StepKind


class TransformConfig(KindConfig):
    # field name -> CEL expression
    output: dict[str, str] = Field(min_length=1)
    # Optional CEL expression whose string value becomes the step's outcome, for branching.
    outcome: str | None = None

    @field_validator("output")
    @classmethod
    def _expressions_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            try:
                expressions.check(source)
            except expressions.ExpressionError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    @field_validator("outcome")
    @classmethod
    def _outcome_parses(cls, value: str | None) -> str | None:
        if value is not None:
            expressions.check(value)
        return value


class TransformKind(StepKind):
    name = "transform"
    outcomes = None
    Config = TransformConfig

    def execute(self, ctx: StepContext) -> Result:
        config: TransformConfig = ctx.config
        context = ctx.activation
        output: dict[str, Any] = {}
        try:
            for name, source in config.output.items():
                output[name] = expressions.evaluate(source, context)
            outcome = expressions.evaluate(config.outcome, context) if config.outcome else ""
        except expressions.ExpressionError as exc:
            # The same input fails the same way every time: retrying cannot help.
            return Failed(str(exc), retryable=False)
        return Completed(output=output, outcome=str(outcome or ""))


KIND = TransformKind()
