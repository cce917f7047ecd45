"""What an AI step may answer: a label from a list, or a JSON object matching a schema.

Model output is untrusted: it is parsed and validated here, and an answer that fails is an
invalid sample, recorded and never silently accepted.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, model_validator

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class OutputError(ValueError):
    pass


class OutputSpec(BaseModel):
    # Part of a step's config: unknown keys are errors, as in every kind's config.
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] | None = Field(default=None, min_length=2)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _exactly_one(self) -> OutputSpec:
        if (self.labels is None) == (self.schema_ is None):
            raise ValueError("give exactly one of `labels` (a list) or `schema` (JSON Schema)")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.schema_ is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(self.schema_)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
            if self.schema_.get("type") != "object":
                raise ValueError('schema must describe an object ("type": "object")')
        return self

    def json_schema(self) -> dict[str, Any]:
        """The schema of an answer, for structured output and for validating edits."""
        if self.labels is not None:
            return {
                "title": "answer",
                "type": "object",
                "properties": {"label": {"type": "string", "enum": list(self.labels)}},
                "required": ["label"],
                "additionalProperties": False,
            }
        assert self.schema_ is not None
        return {"title": "answer", **self.schema_}

    def describe(self) -> str:
        if self.labels is not None:
            return 'a JSON object {"label": <one of ' + ", ".join(self.labels) + ">}"
        return "a JSON object matching this JSON Schema: " + json.dumps(self.schema_)

    def validate_value(self, value: Any) -> Any:
        """Check an answer (the model's or a reviewer's edit); return it normalised."""
        if self.labels is not None:
            label = value.get("label") if isinstance(value, dict) else value
            if not isinstance(label, str):
                raise OutputError("the answer has no label")
            match = _match_label(label, self.labels)
            if match is None:
                raise OutputError(f"{label!r} is not one of {', '.join(self.labels)}")
            return {"label": match}
        if not isinstance(value, dict):
            raise OutputError("the answer is not a JSON object")
        errors = sorted(
            jsonschema.Draft202012Validator(self.schema_ or {}).iter_errors(value),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            raise OutputError(f"{where}: {errors[0].message}")
        return value

    def parse_text(self, text: str) -> Any:
        """Parse a model's text answer: JSON (possibly fenced), or a bare label."""
        stripped = text.strip()
        fenced = _FENCE.match(stripped)
        if fenced:
            stripped = fenced.group(1)
        try:
            value: Any = json.loads(stripped)
        except json.JSONDecodeError:
            if self.labels is None:
                raise OutputError("the answer is not valid JSON") from None
            value = stripped
        return self.validate_value(value)


def _match_label(label: str, labels: list[str]) -> str | None:
    if label in labels:
        return label
    folded = label.strip().strip(".\"'").casefold()
    for candidate in labels:
        if candidate.casefold() == folded:
            return candidate
    return None
