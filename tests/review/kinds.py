"""A test-only step kind that answers with whatever the run's input says.

`scored` stands in for an AI step in front of a gate: its output, confidence and votes come
from the run's input, so one workflow can produce confident, unsure and confidence-less items.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from workflows.steps.base import Completed, KindConfig, Result, StepContext, StepKind, Usage


class ScoredConfig(KindConfig):
    # With labels, the output schema is {"label": <one of them>}, as for a labelling AI step.
    labels: list[str] | None = None
    # Or any output schema, for edits of numbers, booleans and nested values.
    output_schema: dict[str, Any] | None = None


class ScoredKind(StepKind):
    name = "scored"
    outcomes = None
    Config = ScoredConfig

    def execute(self, ctx: StepContext) -> Result:
        data: dict[str, Any] = ctx.input
        votes = data.get("votes", {})
        return Completed(
            output=data.get("answer"),
            confidence=data.get("confidence"),
            meta={
                "votes": votes,
                "samples": [{"key": key} for key, n in votes.items() for _ in range(n)],
                "tier": "test:scored",
                "model": "test:scored",
                "model_version": "1",
            },
            usage=Usage(calls=1, input_tokens=12, output_tokens=3, cost_usd=Decimal("0.0021")),
        )

    def output_schema(self, config: ScoredConfig) -> dict[str, Any] | None:
        if config.output_schema is not None:
            return config.output_schema
        if config.labels is None:
            return None
        return {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": config.labels}},
            "required": ["label"],
            "additionalProperties": False,
        }


KIND = ScoredKind()
