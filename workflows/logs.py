"""Structured logs: the ids of what a line is about, and a JSON formatter.

`request_id`, `run_id`, `step_id` and `task_id` live in context variables: the request
middleware (hitl/requestid.py), the step executor and the Celery task signals set them, and
`ContextFilter`, on the console handler (settings.LOGGING), copies them onto every record that
handler writes. So a line logged deep inside a service names its request or its step without
any caller passing ids down. `JsonFormatter` writes one JSON object per line, with any
`extra={...}` fields a caller gave (the alert service's `alert_kind`, `workflow`, ...).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FIELDS = ("request_id", "run_id", "step_id", "task_id")
_VARS: dict[str, ContextVar[Any]] = {
    name: ContextVar(f"hitl_{name}", default=None) for name in FIELDS
}
# What every LogRecord has; anything else on a record came from `extra=` and is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def bind(**values: Any) -> None:
    """Set ids for the rest of this context (a Celery task: cleared by `clear` after it)."""
    for name, value in values.items():
        _VARS[name].set(value)


def clear() -> None:
    for var in _VARS.values():
        var.set(None)


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Set ids for the duration of a block, then put back what was there."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, Any]:
    return {name: var.get() for name, var in _VARS.items() if var.get() is not None}


class ContextFilter(logging.Filter):
    """Adds the context's ids to a record (never overwriting ones given in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the ids that
    are set, any extra fields, and the traceback as text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
