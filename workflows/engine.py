"""Pure engine logic: given a definition and a run's state, what happens next.

No ORM, no I/O: services call these functions inside their transactions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from workflows.definitions import DEFAULT_BRANCH, END, WorkflowDefinition

# Outcomes that settle how a run ended; the latest one on the run's path wins.
DECISIVE_OUTCOMES = frozenset({"approved", "rejected"})
REJECTED = "rejected"


@dataclass(frozen=True)
class Next:
    step_id: str
    position: int
    kind: str


@dataclass(frozen=True)
class Finish:
    pass


def first_step(definition: WorkflowDefinition) -> Next:
    step = definition.steps[0]
    return Next(step.id, 0, step.kind)


def after(definition: WorkflowDefinition, step_id: str, outcome: str) -> Next | Finish:
    """Where a run goes once `step_id` completes with `outcome`."""
    position = definition.position(step_id)
    step = definition.steps[position]
    target: str | None
    if isinstance(step.next, str):
        target = step.next
    elif isinstance(step.next, dict):
        target = step.next.get(outcome) or step.next.get(DEFAULT_BRANCH)
    else:
        target = None
    if target is None and outcome == REJECTED:
        # A rejection ends the run unless the definition routes it somewhere (`on_reject`).
        target = END
    if target is None:
        following = position + 1
        if following >= len(definition.steps):
            return Finish()
        step = definition.steps[following]
        return Next(step.id, following, step.kind)
    if target == END:
        return Finish()
    return Next(target, definition.position(target), definition.step(target).kind)


def run_outcome(current: str, step_outcome: str) -> str:
    """The run's outcome after a step: the latest decisive outcome on its path."""
    return step_outcome if step_outcome in DECISIVE_OUTCOMES else current


def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> timedelta:
    """Exponential backoff with full jitter on top, so retries of many steps spread out."""
    exponential = min(cap, base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=exponential + rng.uniform(0, base))
