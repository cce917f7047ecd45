"""Forms of the review desk. The edit form is built from the guarded step's output schema."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django import forms

from workflows.models import Decision
from workflows.models.review import REVIEW_ACTIONS

# What a number field accepts: plain decimal, ASCII digits only. Python's int() and float()
# would also take "1_000", "١٢", "nan" and "infinity", none of which a reviewer means.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Deeper JSON than this is refused before parsing, not met with a RecursionError.
MAX_JSON_DEPTH = 32


class DecisionForm(forms.Form):
    action = forms.ChoiceField(choices=[(a.value, a.label) for a in REVIEW_ACTIONS.values()])
    reason = forms.CharField(
        required=False, max_length=Decision.MAX_REASON, widget=forms.Textarea, strip=False
    )


class FilterForm(forms.Form):
    """The queue's filters; anything unparseable is dropped, never an error page."""

    workflow = forms.SlugField(required=False)
    status = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Open and claimed"),
            ("open", "Open"),
            ("claimed", "Claimed"),
            ("decided", "Decided"),
            ("escalated", "Escalated"),
            ("cancelled", "Cancelled"),
        ],
    )
    priority = forms.IntegerField(required=False, label="Priority at least")
    reason = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Any reason"),
            ("below_threshold", "Below threshold"),
            ("no_confidence", "No confidence"),
            ("audit_sample", "Audit sample"),
            ("rule", "A rule"),
            ("escalated", "Escalated"),
            ("sla_breach", "SLA breach"),
            ("quorum_split", "Quorum split"),
        ],
    )
    mine = forms.BooleanField(required=False, label="Mine")
    after = forms.CharField(required=False)


def edit_fields(
    schema: dict[str, Any] | None, current: Any, original: Any = None
) -> list[dict[str, Any]]:
    """Fields for editing an output, from its JSON Schema: one per top-level property.

    Enums become selects, numbers and booleans get their inputs, and anything nested is
    edited as JSON text. Without a schema, the whole output is one JSON field.
    """
    current = current if isinstance(current, dict) else {}
    original = original if isinstance(original, dict) else current
    if not schema or schema.get("type") != "object" or not schema.get("properties"):
        return [
            {
                "name": "__json__",
                "label": "Output (JSON)",
                "kind": "json",
                "value": json.dumps(current, indent=2, ensure_ascii=False),
                "original": json.dumps(original, indent=2, ensure_ascii=False),
                "required": True,
            }
        ]
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema["properties"].items():
        value = current.get(name)
        before = original.get(name)
        field: dict[str, Any] = {
            "name": name,
            "label": prop.get("title") or name.replace("_", " ").capitalize(),
            "required": name in required,
            "description": prop.get("description", ""),
        }
        if "enum" in prop:
            field.update(
                kind="select",
                choices=[str(c) for c in prop["enum"]],
                value=_text(value),
                original=_text(before),
            )
        elif prop.get("type") == "boolean":
            field.update(kind="boolean", value=bool(value), original=bool(before))
        elif prop.get("type") in ("integer", "number"):
            field.update(
                kind="number",
                value=_text(value),
                original=_text(before),
                step="1" if prop.get("type") == "integer" else "any",
            )
        elif prop.get("type") == "string":
            field.update(kind="text", value=_text(value), original=_text(before))
        else:
            field.update(
                kind="json",
                value=json.dumps(value, ensure_ascii=False),
                original=json.dumps(before, ensure_ascii=False),
            )
        fields.append(field)
    return fields


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class EditError(ValueError):
    pass


def parse_edit(schema: dict[str, Any] | None, data: Any) -> Any:
    """The edited output from POSTed fields; schema validation happens in the service."""
    if not schema or schema.get("type") != "object" or not schema.get("properties"):
        return _json(data.get("out:__json__", ""), "the output")
    output: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        key = f"out:{name}"
        kind = prop.get("type")
        if kind == "boolean" and "enum" not in prop:
            output[name] = data.get(key) in ("on", "true", "1")
            continue
        raw = data.get(key, "")
        if raw == "":
            continue  # left empty: absent (the schema says whether that is allowed)
        if "enum" in prop:
            match = [c for c in prop["enum"] if str(c) == raw]
            output[name] = match[0] if match else raw
        elif kind == "integer":
            output[name] = _number(raw, int, name)
        elif kind == "number":
            output[name] = _number(raw, float, name)
        elif kind == "string":
            output[name] = raw
        else:
            output[name] = _json(raw, name)
    return output


def _number(raw: str, cast: Any, name: str) -> Any:
    text = raw.strip()
    pattern = _INTEGER if cast is int else _NUMBER
    if not pattern.fullmatch(text):
        kind = "a whole number" if cast is int else "a number"
        raise EditError(f"{name}: {raw!r} is not {kind} (plain decimal digits)")
    value = cast(text)
    if cast is float and not math.isfinite(value):
        raise EditError(f"{name}: {raw!r} is too large")
    return value


def _json(raw: str, name: str) -> Any:
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise EditError(f"{name}: nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EditError(f"{name}: not valid JSON ({exc.msg})") from None
    except ValueError as exc:
        raise EditError(f"{name}: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _nesting(raw: str) -> int:
    """How deep brackets nest in `raw`, outside strings: an upper bound of JSON depth."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
