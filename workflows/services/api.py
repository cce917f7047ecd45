"""Run writes on behalf of a person: the access checks the run services leave to their callers.

`run_start`, `run_cancel` and `run_resume` trust their caller (the CLI, the seed and the
engine act as the system). A face that acts for a user, such as the REST API, goes through
these instead: they check the user's role first (`workflows.access.access_runs_manage`), and
resuming from outside is limited to `wait` steps, since a gate is completed only by deciding
its review task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows.access import access_runs_manage
from workflows.errors import Conflict, InvalidInput
from workflows.models import Run, StepRun, Workflow, WorkflowVersion
from workflows.services.audit import Actor
from workflows.services.runs import run_cancel, run_resume, run_start

# The one kind a run may be resumed at from outside; every other waiting kind (a gate, an
# AI step waiting for its budget) is completed by the engine itself.
RESUMABLE_KIND = "wait"
_MAX_OUTCOME = StepRun._meta.get_field("outcome").max_length or 32


def run_start_as(
    *,
    user: Any,
    workflow: Workflow,
    input: Any,
    actor: Actor,
    version: int | None = None,
    source: str = "api",
    callback_url: str | None = None,
    now: datetime | None = None,
) -> Run:
    """Start a run of `workflow` (on version number `version`, or the active one)."""
    access_runs_manage(user=user, workflow=workflow)
    pinned = None
    if version is not None:
        pinned = WorkflowVersion.objects.filter(workflow=workflow, number=version).first()
        if pinned is None:
            raise InvalidInput(f"workflow {workflow.slug!r} has no version {version}")
    return run_start(
        workflow=workflow,
        input=input,
        actor=actor,
        source=source,
        started_by=user,
        version=pinned,
        callback_url=callback_url,
        now=now,
    )


def run_cancel_as(
    *, user: Any, run: Run, actor: Actor, reason: str = "", now: datetime | None = None
) -> Run:
    access_runs_manage(user=user, workflow=run.workflow)
    return run_cancel(run=run, actor=actor, reason=reason, now=now)


def run_resume_wait(
    *,
    user: Any,
    run: Run,
    actor: Actor,
    output: Any = None,
    outcome: str = "",
    step_id: str | None = None,
    now: datetime | None = None,
) -> Run:
    """Complete the `wait` step `run` waits at (`step_id`, or its only waiting step)."""
    access_runs_manage(user=user, workflow=run.workflow)
    if len(outcome) > _MAX_OUTCOME or "\x00" in outcome:
        raise InvalidInput(f"an outcome is at most {_MAX_OUTCOME} characters")
    waiting = StepRun.objects.filter(run=run, status=StepRun.Status.WAITING)
    if step_id is not None:
        waiting = waiting.filter(step_id=step_id)
    step = waiting.order_by("position").first()
    if step is None:
        at = f" at step {step_id!r}" if step_id is not None else ""
        raise Conflict(f"run {run.pk} is not waiting{at}")
    if step.kind != RESUMABLE_KIND:
        raise Conflict(
            f"run {run.pk} waits at {step.kind} step {step.step_id!r}, which is not resumed"
            " from outside: only wait steps are (a gate is completed by deciding its review task)"
        )
    # run_resume locks the run and checks again that the step still waits.
    return run_resume(
        run=run, step_id=step.step_id, actor=actor, output=output, outcome=outcome, now=now
    )
