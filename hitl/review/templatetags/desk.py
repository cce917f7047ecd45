"""Small, safe formatting helpers for the review desk (autoescaping stays on everywhere)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

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


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def gate_reason(gate: dict[str, Any] | None, confidence: float | None = None) -> str:
    """Why the gate sent the item to a person, in words."""
    gate = gate or {}
    reason = gate.get("reason") or ""
    if reason == "below_threshold":
        threshold = gate.get("threshold")
        conf = "none" if confidence is None else f"{confidence:.2f}"
        if threshold is None:
            return f"no threshold set yet ({conf})"
        return f"below threshold {threshold:.2f} ({conf})"
    if reason == "no_confidence":
        return "no confidence: the AI gave no usable answer score"
    if reason == "audit_sample":
        rate = gate.get("audit_rate")
        share = f" ({rate * 100:.0f}% of passing items)" if isinstance(rate, int | float) else ""
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
    return f"{(count / total * 100) if total else 0:.0f}%"
