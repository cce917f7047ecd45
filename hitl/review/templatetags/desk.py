"""Small, safe formatting helpers for the review desk (autoescaping stays on everywhere)."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from workflows.models import ReviewTask
from workflows.models.review import REVIEW_ACTIONS, ReviewAction

register = template.Library()

LONG_TEXT = 280

# Unicode's Bidi_Control characters: embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069) and the invisible direction marks. Rendered as they are, they reorder what
# a reviewer reads ("invoice\u202efdp.exe" shows as "invoiceexe.pdf"), so untrusted text
# shows each one as a visible token instead.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def _token(match: re.Match[str]) -> str:
    return f"⟨U+{ord(match.group()):04X}⟩"


def _text_of(value: Any) -> str:
    return "" if value is None else str(value)


@register.filter(needs_autoescape=True)
def reveal(value: Any, autoescape: bool = True) -> SafeString:
    """Untrusted text for an element's content: escaped, with every bidirectional control
    character shown as a marked ⟨U+202E⟩ token. Apply it last, after any truncation."""
    text = _text_of(value)
    escaped = str(conditional_escape(text)) if autoescape else text
    return mark_safe(  # noqa: S308 - escaped above; the only markup added is the token's span
        _BIDI.sub(
            lambda m: f'<span class="bidi" title="hidden direction control">{_token(m)}</span>',
            escaped,
        )
    )


@register.filter
def reveal_plain(value: Any) -> str:
    """The same tokens as plain text (autoescaped as usual), for where no markup can go."""
    return _BIDI.sub(_token, _text_of(value))


@register.filter
def bidi_controls(value: Any) -> str:
    """The bidirectional controls `value` holds, as tokens ("" when none)."""
    return " ".join(dict.fromkeys(_token(m) for m in _BIDI.finditer(_text_of(value))))


@register.filter
def json_bidi_escaped(value: Any) -> str:
    """JSON text with each bidi control written as its \\uXXXX escape: the same JSON value,
    shown without reordering (in JSON text these characters only occur inside strings)."""
    return _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", _text_of(value))


@register.filter
def pretty(value: Any) -> str:
    """JSON for humans; the template escapes it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.filter
def is_long(value: Any) -> bool:
    return len(pretty(value)) > LONG_TEXT or pretty(value).count("\n") > 8


def _number(value: Any) -> float | None:
    # A bool is an int to Python, and a string times 100 is the string repeated: neither is a
    # score. Anything that is not a number is shown as missing, never raw.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@register.filter
def percent(value: Any, digits: int = 0) -> str:
    """A score in [0, 1] as a percentage, the one way the desk shows confidence: "61%".

    Never "100%" for a score below 1, nor "0%" for one above 0: such a score gets a digit or
    two more ("99.7%"), and past that is cut, not rounded, to "99.99%" or "0.01%".
    """
    number = _number(value)
    if number is None:
        return "—"
    for extra in range(3):
        text = _fixed(number * 100, digits + extra)
        if not ((text == "100" and number < 1) or (text == "0" and number > 0)):
            return f"{text}%"
    edge = 100 - 10 ** -(digits + 2) if number < 1 and number > 0.5 else 10 ** -(digits + 2)
    return f"{_fixed(edge, digits + 2)}%"


def _fixed(number: float, digits: int) -> str:
    text = f"{number:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _percent_apart(value: float, other: float) -> str:
    """`value` as a percentage with just enough digits not to read as equal to `other`."""
    for digits in range(0, 4):
        if percent(value, digits) != percent(other, digits) or value == other:
            return percent(value, digits)
    return percent(value, 4)


@register.filter
def gate_reason(gate: dict[str, Any] | None, confidence: Any = None) -> str:
    """Why the gate sent the item to a person, in words."""
    gate = gate or {}
    reason = gate.get("reason") or ""
    if reason == "below_threshold":
        threshold = _number(gate.get("threshold"))
        score = _number(confidence)
        if score is None:
            conf = "no confidence"
        elif threshold is None:
            conf = f"confidence {percent(score)}"
        else:
            conf = f"confidence {_percent_apart(score, threshold)}"
        if threshold is None:
            return f"no threshold set yet ({conf})"
        return f"below threshold {percent(threshold)} ({conf})"
    if reason == "no_confidence":
        return "no confidence: the AI gave no usable answer score"
    if reason == "audit_sample":
        rate = _number(gate.get("audit_rate"))
        share = f" ({percent(rate)} of passing items)" if rate is not None else ""
        return f"audit sample{share}"
    if reason.startswith("rule:"):
        return f"rule: {reason.removeprefix('rule:').replace('_', ' ')}"
    return reason.replace("_", " ") or "—"


@register.filter
def task_reason(reason: str) -> str:
    if reason.startswith("rule:"):
        return "rule: " + reason.removeprefix("rule:").replace("_", " ")
    return reason.replace("_", " ")


@register.filter
def timeleft(due: datetime | None, now: datetime | None = None) -> str:
    """'in 3h 20m' or 'overdue 5m'; empty without an SLA."""
    if due is None:
        return ""
    now = now or timezone.now()
    seconds = int((due - now).total_seconds())
    overdue = seconds < 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    else:
        text = f"{minutes}m"
    return f"overdue {text}" if overdue else f"in {text}"


@register.filter
def overdue(due: datetime | None, now: datetime | None = None) -> bool:
    return due is not None and due < (now or timezone.now())


@register.filter
def items(value: Any) -> Any:
    return value.items() if isinstance(value, dict) else []


@register.filter
def vote_share(count: int, total: int) -> str:
    return percent(count / total if total else 0)


@register.simple_tag
def sla(task: ReviewTask, now: datetime | None = None) -> dict[str, Any]:
    """A task's SLA as the desk shows it: the time left while the task is live; once closed,
    whether it was met or missed (a decision) or nothing (handed on, or cancelled).

    Returns {"text", "late", "live"}; the text is "" when there is nothing to show.
    """
    due = task.due_at
    live = task.status in ReviewTask.LIVE
    shown = {"text": "", "late": False, "live": live}
    if due is None:
        return shown
    now = now or timezone.now()
    if live:
        return {**shown, "text": timeleft(due, now), "late": overdue(due, now)}
    missed = task.breached_at is not None or (task.closed_at is not None and task.closed_at > due)
    if task.status == ReviewTask.Status.DECIDED:
        return {**shown, "text": "missed" if missed else "met", "late": missed}
    if task.status == ReviewTask.Status.ESCALATED and task.breached_at is not None:
        return {**shown, "text": "missed", "late": True}
    return shown


@register.filter
def action_done(action: str) -> str:
    """A review action in the past tense, as declared: "edited and approved"."""
    declared = REVIEW_ACTIONS.get(action)
    return declared.done if declared else str(action)


@register.filter
def lookup(mapping: Any, key: Any) -> Any:
    """mapping[key], or None: `{{ waiting|lookup:t.pk }}`."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.simple_tag
def review_actions() -> list[ReviewAction]:
    """Every review action as declared, for the shortcuts help: `{% review_actions as a %}`."""
    return list(REVIEW_ACTIONS.values())
