"""Runs: list, read (and wait for), cancel, resume a wait step.

Reading takes `runs:read`; cancelling and resuming take `runs:start`, like starting (see
`hitl.api.workflows`), and the workflow's admin role.
"""

# No `from __future__ import annotations`: django-ninja reads these views' annotations at
# runtime, through the idempotency wrapper, whose module does not know these names.

from django.http import HttpRequest
from ninja import Path, Query, Router

from hitl.api import pagination
from hitl.api.auth import Grant, grant
from hitl.api.errors import ApiError
from hitl.api.idempotency import idempotent_post
from hitl.api.schemas import (
    BIGINT,
    DecisionOut,
    ReviewOut,
    RunCancelIn,
    RunFilters,
    RunOut,
    RunPage,
    RunResumeIn,
    RunSummaryOut,
    StepOut,
    responses,
)
from hitl.api.waits import MAX_WAIT_SECONDS, wait_for_run
from workflows.errors import NotAllowed
from workflows.models import Workflow
from workflows.selectors_runs import RunCursor, RunDetail, keyset_page, run_get, run_list
from workflows.services.api import run_cancel_as, run_resume_wait

router = Router(tags=["runs"])

RunId = Path(..., ge=1, le=BIGINT)


def visible_run(g: Grant, run_id: int) -> RunDetail:
    try:
        return run_get(user=g.user, run_id=run_id, within=g.within)
    except NotAllowed as exc:
        # The same answer for a run that does not exist and one out of reach.
        raise ApiError(404, "not_found", str(exc)) from None


def run_out(g: Grant, run_id: int) -> RunOut:
    detail = visible_run(g, run_id)
    return RunOut(
        **RunSummaryOut.fields_of(detail.run),
        callback_url=detail.run.callback_endpoint.url if detail.run.callback_endpoint else None,
        input=detail.run.input,
        output=detail.output,
        error=detail.run.error,
        steps=[StepOut.of(step) for step in detail.steps],
        reviews=[
            ReviewOut(
                task=review.task.pk,
                step=review.task.step_run.step_id,
                status=review.task.status,
                reason=review.task.reason,
                created_at=review.task.created_at,
                closed_at=review.task.closed_at,
                decision=DecisionOut.of(review.decision) if review.decision else None,
            )
            for review in detail.reviews
        ],
    )


@router.get("", response=responses(RunPage, 400), operation_id="runs_list")
def runs_list(request: HttpRequest, filters: Query[RunFilters]) -> RunPage:
    """The runs you may read, newest first."""
    g = grant(request, "runs:read")
    workflow = None
    if filters.workflow is not None:
        workflow = Workflow.objects.filter(slug=filters.workflow).first()
        if workflow is None:
            # An unknown workflow has no runs (as one out of reach has none you may read).
            return RunPage(items=[], next_cursor=None)
    runs = run_list(
        user=g.user,
        within=g.within,
        workflow=workflow,
        status=filters.status,
        outcome="" if filters.outcome == "none" else filters.outcome,
        created_after=filters.created_after,
        created_before=filters.created_before,
        after=pagination.run_cursor(filters.cursor),
    )
    rows, last = keyset_page(runs, size=filters.limit, cursor_of=RunCursor.of)
    return RunPage(
        items=[RunSummaryOut.of(run) for run in rows],
        next_cursor=pagination.encode_run_cursor(last),
    )


@router.get("/{run_id}", response=responses(RunOut, 404, 429), operation_id="runs_get")
def runs_get(
    request: HttpRequest,
    run_id: int = RunId,
    wait: float = Query(
        0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds to wait for the run to finish before answering (at most 30).",
    ),
) -> RunOut:
    """A run with its steps, final output and review decisions; with `wait`, answered as
    soon as the run has finished (or when the time is up, whatever its status)."""
    g = grant(request, "runs:read")
    visible_run(g, run_id)
    wait_for_run(run_id, wait)
    return run_out(g, run_id)


@idempotent_post(
    router, "/{run_id}/cancel", response=responses(RunOut, 404, 409), operation_id="runs_cancel"
)
def runs_cancel(
    request: HttpRequest, run_id: int = RunId, payload: RunCancelIn | None = None
) -> RunOut:
    """Cancel a run that has not finished. Workflow admins only. The body is optional."""
    g = grant(request, "runs:start")
    detail = visible_run(g, run_id)
    reason = payload.reason if payload else ""
    run_cancel_as(user=g.user, run=detail.run, actor=g.actor, reason=reason)
    return run_out(g, run_id)


@idempotent_post(
    router,
    "/{run_id}/resume",
    response=responses(RunOut, 400, 404, 409),
    operation_id="runs_resume",
)
def runs_resume(
    request: HttpRequest, run_id: int = RunId, payload: RunResumeIn | None = None
) -> RunOut:
    """Complete the `wait` step the run waits at, with `output` and `outcome`, and carry on.
    A gate is not resumed here: decide its review task. Workflow admins only."""
    g = grant(request, "runs:start")
    detail = visible_run(g, run_id)
    payload = payload or RunResumeIn()
    run_resume_wait(
        user=g.user,
        run=detail.run,
        actor=g.actor,
        output=payload.output,
        outcome=payload.outcome,
        step_id=payload.step,
    )
    return run_out(g, run_id)
