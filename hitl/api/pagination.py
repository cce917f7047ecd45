"""Opaque keyset cursors: where the previous page ended, signed so that a cursor the server
did not write is refused (400) instead of reaching a query.

Each list orders by a unique key (a slug, a version number, (created_at, id), the queue's
key); the next page starts strictly after the last row's key, so rows inserted meanwhile never
shift a page, and a deep page costs what the first one does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import signing

from hitl.api.errors import ApiError
from workflows.selectors import QueueCursor
from workflows.selectors_runs import RunCursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_BAD = "the cursor is not one this server gave out (or the list it came from has changed)"


def encode(kind: str, value: Any) -> str:
    return signing.dumps([kind, value], salt="hitl.api.cursor", compress=False)


def decode(kind: str, text: str) -> Any:
    try:
        found, value = signing.loads(text, salt="hitl.api.cursor")
    except (signing.BadSignature, ValueError, TypeError):
        raise ApiError(400, "bad_cursor", _BAD) from None
    if found != kind:
        raise ApiError(400, "bad_cursor", _BAD)
    return value


def run_cursor(text: str | None) -> RunCursor | None:
    if text is None:
        return None
    value = decode("runs", text)
    try:
        created, pk = value
        return RunCursor(datetime.fromisoformat(created), int(pk))
    except (TypeError, ValueError):
        raise ApiError(400, "bad_cursor", _BAD) from None


def encode_run_cursor(cursor: RunCursor | None) -> str | None:
    return encode("runs", [cursor.created_at.isoformat(), cursor.id]) if cursor else None


def task_cursor(text: str | None) -> QueueCursor | None:
    if text is None:
        return None
    try:
        return QueueCursor.decode(str(decode("tasks", text)))
    except (ValueError, OverflowError):
        raise ApiError(400, "bad_cursor", _BAD) from None


def encode_task_cursor(cursor: QueueCursor | None) -> str | None:
    return encode("tasks", cursor.encode()) if cursor else None


def plain_cursor(kind: str, text: str | None, type_: type) -> Any:
    """A cursor holding one value of `type_` (a slug, a version number)."""
    if text is None:
        return None
    value = decode(kind, text)
    if not isinstance(value, type_) or isinstance(value, bool):
        raise ApiError(400, "bad_cursor", _BAD)
    return value
