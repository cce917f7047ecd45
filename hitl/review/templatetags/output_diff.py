"""What a decision changed: the AI's answer against the output that went on, field by field.

`output_changes(before, after)` is the Python side; `{% output_diff before after %}` renders
it with `components/output_diff.html`. Any page that shows a decision can use both
(`{% load output_diff %}`): the desk's task page does, for decided tasks and for the edit box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import template

register = template.Library()


class _Absent:
    """A field one side does not have (unlike a field that is null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class FieldChange:
    path: tuple[str, ...]  # () is the whole output
    before: Any
    after: Any

    @property
    def field(self) -> str:
        return ".".join(self.path) or "output"

    @property
    def kind(self) -> str:
        if self.before is ABSENT:
            return "added"
        if self.after is ABSENT:
            return "removed"
        return "changed"

    @property
    def before_text(self) -> str:
        return _shown(self.before)

    @property
    def after_text(self) -> str:
        return _shown(self.after)


def output_changes(before: Any, after: Any, path: tuple[str, ...] = ()) -> list[FieldChange]:
    """The fields that differ between two JSON outputs, in the order the fields appear.

    Objects are compared key by key (nested objects by path, "a.b"); anything else (a list,
    a string, a null) changes as a whole. Equality is JSON's: true is not 1, but 1 is 1.0.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for key in [*before, *(k for k in after if k not in before)]:
            was, now = before.get(key, ABSENT), after.get(key, ABSENT)
            if isinstance(was, dict) and isinstance(now, dict):
                changes += output_changes(was, now, (*path, str(key)))
            elif not _same(was, now):
                changes.append(FieldChange((*path, str(key)), was, now))
        return changes
    return [] if _same(before, after) else [FieldChange(path, before, after)]


def _same(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return value if value else "(empty)"
    return json.dumps(value, ensure_ascii=False, default=str)


@register.inclusion_tag("components/output_diff.html")
def output_diff(
    before: Any, after: Any, rejected: bool = False, unchanged: str = ""
) -> dict[str, Any]:
    """The diff of `after` against `before`: a rejection (no output), no change, or the
    changed fields. `unchanged` replaces the words shown when nothing changed."""
    return {
        "changes": [] if rejected else output_changes(before, after),
        "rejected": rejected,
        "unchanged": unchanged or "No change: the AI's answer went on as it was.",
    }
