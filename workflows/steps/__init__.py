"""Step kinds are plug-ins, found through `settings.HITL_STEP_KINDS` (module paths)."""

from __future__ import annotations

import functools
import importlib

from django.conf import settings

from workflows.steps.base import StepKind


class UnknownKind(KeyError):
    pass


@functools.cache
def registry() -> dict[str, StepKind]:
    kinds: dict[str, StepKind] = {}
    for path in settings.HITL_STEP_KINDS:
        kind = importlib.import_module(path).KIND
        kinds[kind.name] = kind
    return kinds


def get_kind(name: str) -> StepKind:
    try:
        return registry()[name]
    except KeyError:
        raise UnknownKind(name) from None
