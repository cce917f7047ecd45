"""Small, safe formatting helpers for the review desk (autoescaping stays on everywhere)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

register = template.Library()

LONG_TEXT = 280


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
