"""Published workflow versions as the engine reads them: parsed once, cached per process.

A version never changes once stored (runs pin it), so its parsed definition, each step's
parsed config and each step's output schema can be cached by version id without ever being
invalidated. Every kind, every service and every face reads them here.
"""

from __future__ import annotations

import functools
from typing import Any

from workflows.definitions import StepDefinition, WorkflowDefinition
from workflows.models import WorkflowVersion
from workflows.steps import get_kind


@functools.lru_cache(maxsize=256)
def version_definition(version_id: int) -> WorkflowDefinition:
    """A version's parsed definition."""
    data = WorkflowVersion.objects.values_list("definition", flat=True).get(pk=version_id)
    return WorkflowDefinition.model_validate(data)


def version_step(version_id: int, step_id: str) -> StepDefinition:
    return version_definition(version_id).step(step_id)


@functools.lru_cache(maxsize=1024)
def step_config(version_id: int, step_id: str) -> Any:
    """The step's config, parsed and checked by its kind (a `KindConfig`)."""
    step = version_step(version_id, step_id)
    return get_kind(step.kind).validate(step.config)


def step_output_schema(version_id: int, step_id: str) -> dict[str, Any] | None:
    """The JSON Schema of the step's output, if its kind knows one.

    A reviewer's edit of that output must match it; None means any JSON object.
    """
    step = version_step(version_id, step_id)
    return get_kind(step.kind).output_schema(step_config(version_id, step_id))


def cache_clear() -> None:
    """Forget every cached version (tests that rewrite a stored version use this)."""
    version_definition.cache_clear()
    step_config.cache_clear()
