"""One expression language everywhere: CEL (cel-python), never `eval`.

Expressions see `{input, steps: {<id>: {output, confidence, outcome}}}`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import celpy
from celpy import celtypes


class ExpressionError(ValueError):
    """An expression that does not parse, or fails when evaluated."""


_ENV = celpy.Environment()


@functools.lru_cache(maxsize=2048)
def _program(source: str) -> celpy.Runner:
    try:
        return _ENV.program(_ENV.compile(source))
    except celpy.CELParseError as exc:
        # The parser's message carries a caret under the offending character.
        raise ExpressionError(f"invalid expression {source!r}: {exc}") from None
    except Exception as exc:  # cel-python raises assorted errors for unsupported syntax
        raise ExpressionError(f"invalid expression {source!r}: {exc}") from None


def check(source: str) -> None:
    """Raise ExpressionError unless `source` is a well-formed CEL expression."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be a non-empty string")
    _program(source)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate `source` over a JSON-like context and return a plain JSON-like value."""
    check(source)
    activation = {name: celpy.json_to_cel(value) for name, value in context.items()}
    try:
        result = _program(source).evaluate(activation)
    except celpy.CELEvalError as exc:
        raise ExpressionError(f"{source!r} failed: {_eval_message(exc)}") from None
    if isinstance(result, celpy.CELEvalError):
        raise ExpressionError(f"{source!r} failed: {_eval_message(result)}")
    return to_json(result)


def _eval_message(exc: celpy.CELEvalError) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def to_json(value: Any) -> Any:
    """CEL values back to plain Python JSON types."""
    if value is None or isinstance(value, celtypes.NullType):
        return None
    if isinstance(value, celtypes.BoolType | bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(to_json(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return str(value)
