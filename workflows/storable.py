"""Whether a JSON-like value can be stored and used: the one check every input path shares.

PostgreSQL's jsonb refuses NUL characters and unpaired surrogates, JSON has no NaN or
infinity, and a value nested thousands of levels deep breaks whatever walks it recursively
later (validation, rendering, export). Run input from the API or a webhook, and a reviewer's
edited output, are checked here first, so each is refused with a clear message instead of
failing later as a server error. Iterative: a deep value is measured, never recursed into.
"""

from __future__ import annotations

import math
from typing import Any


def json_problem(value: Any, *, max_depth: int, max_chars: int | None = None) -> str | None:
    """What makes `value` unstorable, in words, or None. Depth counts objects and arrays;
    `max_chars` bounds the total length of its strings plus one per value."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    size = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth + 1 > max_depth:
            return f"it is nested more than {max_depth} levels deep"
        if isinstance(item, float) and not math.isfinite(item):
            return f"it holds {item!r}, which is not a JSON number"
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return problem
            size += len(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _text_problem(str(key))
                if problem:
                    return problem
                size += len(str(key))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        size += 1
        if max_chars is not None and size > max_chars:
            return f"it is too large (at most {max_chars} characters)"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a string contains a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a string contains an unpaired surrogate (\\ud800-\\udfff)"
    return None
