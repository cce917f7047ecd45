"""One expression language everywhere: CEL (cel-python), never `eval`.

Expressions see `{input, steps: {<id>: {output, confidence, outcome}}}`.

An expression comes from a definition and runs over untrusted input, so both are bounded.
`check` (run when a definition is validated) refuses expressions longer than
HITL_CEL_MAX_LENGTH characters or nested deeper than HITL_CEL_MAX_DEPTH levels. `evaluate`
stops after HITL_CEL_MAX_STEPS evaluation steps: a count, not a clock, so the same expression
over the same data always succeeds or always fails, and a failure is never worth a retry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import celpy
import lark
from celery.exceptions import SoftTimeLimitExceeded
from celpy import celtypes
from django.conf import settings


class ExpressionError(ValueError):
    """An expression that does not parse, or fails when evaluated."""


class ExpressionBudgetExceeded(ExpressionError):
    """An expression that did more work than HITL_CEL_MAX_STEPS allows."""


@dataclass(frozen=True, slots=True)
class Activation:
    """A context converted to CEL values once, for any number of `evaluate` calls.

    Opaque: make one with `prepare`.
    """

    values: Mapping[str, Any]


_ENV = celpy.Environment()

# Parse-tree rules that open a nested sub-expression or apply an operator: what the depth
# limit counts. The precedence rules below count only when they hold an operator (more than
# one child); with one child they are the grammar's plumbing, about ten levels of it under
# every sub-expression.
_NESTING = frozenset(
    {
        "paren_expr",
        "list_lit",
        "map_lit",
        "ident_arg",
        "dot_ident_arg",
        "member_dot",
        "member_dot_arg",
        "member_index",
        "member_object",
    }
)
_PRECEDENCE = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary"}
)
# The rules whose Evaluator method, given one child, returns that child's value and does
# nothing else (cel-python 0.5). The evaluator skips them: a third of the recursion per
# sub-expression and fewer steps, with the same result.
_PASS_THROUGH = _PRECEDENCE | {"member"}


def check(source: str) -> None:
    """Raise ExpressionError unless `source` is a well-formed CEL expression within limits."""
    _runner(source)


def prepare(context: Mapping[str, Any]) -> Activation:
    """Convert a JSON-like context to CEL values, for evaluating many expressions over it."""
    try:
        values = {name: celpy.json_to_cel(value) for name, value in context.items()}
    except RecursionError:
        raise ExpressionError("the data is nested too deep to evaluate expressions over") from None
    return Activation(MappingProxyType(values))


def evaluate(source: str, context: Mapping[str, Any] | Activation) -> Any:
    """Evaluate `source` over a context (or a prepared one) and return a plain JSON-like value.

    Every failure is an ExpressionError; ExpressionBudgetExceeded past HITL_CEL_MAX_STEPS.
    """
    runner = _runner(source)
    activation = context if isinstance(context, Activation) else prepare(context)
    limit = settings.HITL_CEL_MAX_STEPS
    budget = _Budget(limit)
    try:
        evaluator = _Evaluator(runner.ast, runner.new_activation(), budget)
        result = evaluator.evaluate(dict(activation.values))
        if isinstance(result, celpy.CELEvalError):
            raise result
        return _to_json(result, budget)
    except _OutOfBudget:
        raise ExpressionBudgetExceeded(
            f"{_excerpt(source)} stopped after {limit:,} evaluation steps (HITL_CEL_MAX_STEPS): "
            "it does too much work for the data it was given"
        ) from None
    except SoftTimeLimitExceeded:
        # Evaluation is deterministic: a retry would run out of time the same way.
        raise ExpressionError(
            f"{_excerpt(source)} ran out of time (the step's soft time limit) while evaluating"
        ) from None
    except celpy.CELEvalError as exc:
        raise ExpressionError(f"{source!r} failed: {_eval_message(exc)}") from None
    except RecursionError:
        raise ExpressionError(f"{_excerpt(source)} failed: nested too deep to evaluate") from None
    except MemoryError:
        raise
    except Exception as exc:
        # cel-python raises plain TypeError, ValueError, CELSyntaxError... for some inputs.
        raise ExpressionError(f"{source!r} failed: {type(exc).__name__}: {exc}") from None


def to_json(value: Any) -> Any:
    """CEL values back to plain Python JSON types."""
    return _to_json(value, _Budget(None))


def _runner(source: str) -> celpy.Runner:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be a non-empty string")
    limit = settings.HITL_CEL_MAX_LENGTH
    if len(source) > limit:
        # Checked before parsing, so the parser's work is bounded too.
        raise ExpressionError(
            f"invalid expression {_excerpt(source)}: longer than {limit:,} characters "
            "(HITL_CEL_MAX_LENGTH)"
        )
    program = _program(source, settings.HITL_CEL_MAX_DEPTH)
    if isinstance(program, str):
        raise ExpressionError(program)
    return program


@functools.lru_cache(maxsize=2048)
def _program(source: str, max_depth: int) -> celpy.Runner | str:
    """The program, or why there is none: a refusal is cached too, as parsing it cost as much."""
    try:
        ast = _ENV.compile(source)
    except celpy.CELParseError as exc:
        # The parser's message carries a caret under the offending character.
        return f"invalid expression {source!r}: {exc}"
    except Exception as exc:  # cel-python raises assorted errors for unsupported syntax
        return f"invalid expression {source!r}: {exc}"
    if _depth(ast) > max_depth:
        return (
            f"invalid expression {_excerpt(source)}: nested deeper than {max_depth} levels "
            "(HITL_CEL_MAX_DEPTH)"
        )
    return _ENV.program(ast)


def _depth(tree: lark.Tree) -> int:
    """Nesting depth: brackets, calls, field access and operators on the deepest path."""
    # Iterative: the tree of an expression refused here is too deep to walk recursively.
    deepest = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING or (node.data in _PRECEDENCE and len(node.children) > 1):
            depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in node.children if isinstance(child, lark.Tree))
    return deepest


class _OutOfBudget(Exception):
    """Internal: not a ValueError or TypeError, which cel-python turns into CEL error values."""


class _Budget:
    __slots__ = ("left",)

    def __init__(self, steps: int | None):
        self.left = steps

    def spend(self, steps: int = 1) -> None:
        if self.left is not None:
            self.left -= steps
            if self.left < 0:
                raise _OutOfBudget


class _Evaluator(celpy.Evaluator):
    """cel-python's interpreter, counting its steps against a budget."""

    def __init__(self, ast: lark.Tree, activation: celpy.Activation, budget: _Budget):
        super().__init__(ast, activation=activation)
        self._budget = budget

    def sub_evaluator(self, ast: lark.Tree) -> celpy.Evaluator:
        # Macro bodies (map, filter, all, exists, reduce...) run here, once per item.
        return _Evaluator(ast, self.activation, self._budget)

    def _visit_tree(self, tree: lark.Tree) -> Any:
        # lark's Interpreter sends every node through here, from visit and visit_children.
        while tree.data in _PASS_THROUGH and len(tree.children) == 1:
            child = tree.children[0]
            if not isinstance(child, lark.Tree):
                break
            tree = child
        self._budget.spend()
        value = super()._visit_tree(tree)
        if tree.data == "addition" and isinstance(value, str | bytes | list | dict):
            # Concatenation copies: doubling a string in a loop costs little else.
            self._budget.spend(len(value))
        return value


def _excerpt(source: str) -> str:
    """The start of an expression, for messages about one too long to quote whole."""
    return repr(source if len(source) <= 60 else source[:60] + "...")


def _eval_message(exc: celpy.CELEvalError) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def _to_json(value: Any, budget: _Budget) -> Any:
    # Each value counts: sharing lets a few steps build a result far larger than themselves.
    budget.spend()
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
        return {str(_to_json(k, budget)): _to_json(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v, budget) for v in value]
    return str(value)
