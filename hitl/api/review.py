"""Review tasks: the queue, a task as the desk shows it, claim, release and decide.

The same selectors and services as the desk (`hitl.review.views`), so the same rules: a
team can build its own review front end on these. Reading takes `tasks:read`; claiming,
releasing and deciding take `tasks:decide`.
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
    DecideIn,
    DecisionOut,
    QuorumOut,
    StepOut,
    TaskFilters,
    TaskOut,
    TaskPage,
    TaskSummaryOut,
    responses,
)
from workflows import selectors, services
from workflows.errors import NotAllowed
from workflows.models import Decision, ReviewTask, Workflow
from workflows.models.review import REVIEW_ACTIONS

router = Router(tags=["tasks"])

TaskId = Path(..., ge=1, le=BIGINT)


def visible_task(g: Grant, task_id: int) -> selectors.TaskDetail:
    try:
        detail = selectors.review_task_get(user=g.user, task_id=task_id)
    except NotAllowed as exc:
        # As the desk: the same answer for a task that does not exist and one out of reach.
        raise ApiError(404, "not_found", str(exc)) from None
    if not g.reaches(detail.task.workflow_id):
        raise ApiError(404, "not_found", "no such task, or you may not see it")
    return detail


def task_out(g: Grant, task_id: int) -> TaskOut:
    d = visible_task(g, task_id)
    task = d.task
    return TaskOut(
        **TaskSummaryOut.fields_of(task, can_decide=d.can_decide),
        input=d.input,
        shown=d.shown,
        cost={**d.cost, "cost_usd": f"{d.cost['cost_usd']:f}"} if d.cost else {},
        output_schema=d.output_schema,
        actions=_actions(d),
        claimed_by_me=d.claimed_by_me,
        can_reassign=d.can_reassign,
        waits_for=d.waits_for,
        escalated_from=task.escalated_from_id,
        escalated_to=d.escalated_to.pk if d.escalated_to else None,
        decisions=[DecisionOut.of(decision) for decision in d.decisions],
        final_output=d.final_output,
        steps=[StepOut.of(step) for step in d.steps],
        quorum=QuorumOut.of_view(d.quorum),
    )


def _actions(d: selectors.TaskDetail) -> list[str]:
    """What the viewer may do now, as the desk offers it (escalation is one level deep)."""
    if not d.can_decide or d.task.status not in ReviewTask.LIVE:
        return []
    return [
        action
        for action in REVIEW_ACTIONS
        if not (
            action == Decision.Action.ESCALATE and d.task.audience == ReviewTask.Audience.ESCALATION
        )
    ]


@router.get("", response=responses(TaskPage, 400), operation_id="tasks_list")
def tasks_list(request: HttpRequest, filters: Query[TaskFilters]) -> TaskPage:
    """The review queue in its one order: priority, then SLA, then age. Open and claimed
    tasks unless `status` says otherwise."""
    g = grant(request, "tasks:read")
    workflow = None
    if filters.workflow is not None:
        workflow = Workflow.objects.filter(slug=filters.workflow).first()
        if workflow is None:
            return TaskPage(items=[], next_cursor=None)
    tasks = selectors.review_task_list(
        user=g.user,
        workflow=workflow,
        status=filters.status or ReviewTask.LIVE,
        min_priority=filters.min_priority,
        reason=filters.reason,
        mine=filters.mine,
        actionable=filters.actionable,
    )
    if g.within is not None:
        tasks = tasks.filter(workflow_id__in=list(g.within))
    # The list names each task's gate; it does not show the samples behind the AI's answer.
    tasks = tasks.select_related("step_run").defer("guarded__meta", "step_run__meta")
    rows, last = selectors.review_task_page(
        tasks, after=pagination.task_cursor(filters.cursor), size=filters.limit
    )
    decidable = selectors.review_tasks_decidable(
        tasks=rows, workflows=selectors.workflows_with_tasks_visible(user=g.user)
    )
    return TaskPage(
        items=[
            TaskSummaryOut(**TaskSummaryOut.fields_of(t, can_decide=t.pk in decidable))
            for t in rows
        ],
        next_cursor=pagination.encode_task_cursor(last),
    )


@router.get("/{task_id}", response=responses(TaskOut, 404), operation_id="tasks_get")
def tasks_get(request: HttpRequest, task_id: int = TaskId) -> TaskOut:
    """A task as the desk shows it: the input, the AI's answer and evidence, the cost, the
    decisions, and what you may do with it."""
    g = grant(request, "tasks:read")
    return task_out(g, task_id)


@idempotent_post(
    router, "/{task_id}/claim", response=responses(TaskOut, 404, 409), operation_id="tasks_claim"
)
def tasks_claim(request: HttpRequest, task_id: int = TaskId) -> TaskOut:
    """Claim a task (a lease of `HITL_REVIEW_CLAIM_SECONDS`), or renew your own claim."""
    g = grant(request, "tasks:decide")
    services.review_claim(task=visible_task(g, task_id).task, user=g.user, actor=g.actor)
    return task_out(g, task_id)


@idempotent_post(
    router,
    "/{task_id}/release",
    response=responses(TaskOut, 404, 409),
    operation_id="tasks_release",
)
def tasks_release(request: HttpRequest, task_id: int = TaskId) -> TaskOut:
    """Give a claimed task back to the queue (your own claim; a workflow admin, anyone's)."""
    g = grant(request, "tasks:decide")
    services.review_release(task=visible_task(g, task_id).task, user=g.user, actor=g.actor)
    return task_out(g, task_id)


@idempotent_post(
    router,
    "/{task_id}/decide",
    response=responses(TaskOut, 400, 404, 409),
    operation_id="tasks_decide",
)
def tasks_decide(request: HttpRequest, payload: DecideIn, task_id: int = TaskId) -> TaskOut:
    """Approve, reject, edit (and approve) or escalate. A task nobody else holds is claimed
    in the same transaction, as on the desk; a refused decision leaves no claim behind.
    Reject, edit and escalate need a `reason`; edit needs the whole edited `output`."""
    g = grant(request, "tasks:decide")
    services.review_decide(
        task=visible_task(g, task_id).task,
        user=g.user,
        action=payload.action,
        reason=payload.reason,
        output=payload.output,
        claim=True,
        actor=g.actor,
    )
    return task_out(g, task_id)
