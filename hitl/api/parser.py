"""Request bodies: JSON that PostgreSQL can store, or a 400 before any service sees it.

Python's `json` accepts what `jsonb` refuses or what would only fail deep in a service:
NaN and Infinity (also as an overflowing number such as 1e400), the NUL character, lone
surrogates, and nesting deep enough to exhaust the stack. Each is refused here with a
message, so bad input is a 400, never a 500.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from hitl.api.errors import ApiError

MAX_DEPTH = 64
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ApiError(400, "malformed_json", f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "the request body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ApiError:
        raise
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers too long to convert.
        raise ApiError(
            400, "malformed_json", f"the request body is not valid JSON: {exc}"
        ) from None
    check_storable(value)
    return value


def check_storable(value: Any) -> None:
    """Iterative, so that a value nested 100,000 levels deep is refused, not a RecursionError."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, "malformed_json", f"the JSON is nested deeper than {MAX_DEPTH}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ApiError(400, "malformed_json", "a number is too large to store")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if _UNSTORABLE.search(text):
        raise ApiError(
            400,
            "malformed_json",
            "a string holds NUL (\\u0000) or a lone surrogate, which cannot be stored",
        )


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        return parse_json(request.body)
