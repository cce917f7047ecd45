"""Reads, already scoped to what a user may see (the rules live in `workflows.access`)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from workflows.access import (
    access_task_view,
    can_decide_task,
    is_workflow_admin,
    tasks_decidable_q,
    tasks_visible_q,
    workflow_decides,
    workflows_visible_q,
)
from workflows.definitions import DefinitionError, parse_source
from workflows.errors import NotAllowed
from workflows.models import Decision, ReviewTask, StepRun, Workflow, WorkflowVersion
from workflows.models.review import NO_DUE, QUEUE_ORDER
from workflows.selectors_quorum import QuorumView, quorum_shown, quorum_view
from workflows.versions import step_output_schema

# At most this many samples go into a decision's snapshot; votes summarise the rest.
SHOWN_SAMPLES = 50


def review_task_list(
    *,
    user: Any,
    workflow: Workflow | None = None,
    status: str | Iterable[str] | None = None,
    min_priority: int | None = None,
    assignee: Any = None,
    reason: str | None = None,
    mine: bool = False,
    actionable: bool = False,
) -> QuerySet[ReviewTask]:
    """The queue, in its one order: priority DESC, due_at ASC, created_at ASC, id.

    `actionable` keeps only the tasks the user may decide (a reviewer also sees the tasks
    escalated from their workflow, without deciding them).
    """
    tasks = ReviewTask.objects.filter(tasks_visible_q(user))
    if actionable:
        tasks = tasks.filter(tasks_decidable_q(user))
    if workflow is not None:
        tasks = tasks.filter(workflow=workflow)
    if status is not None:
        tasks = tasks.filter(status__in=[status] if isinstance(status, str) else list(status))
    if min_priority is not None:
        tasks = tasks.filter(priority__gte=min_priority)
    if assignee is not None:
        tasks = tasks.filter(assignee=assignee)
    if reason:
        # "rule" matches every rule:<name>; anything else matches exactly.
        tasks = (
            tasks.filter(reason__startswith="rule:")
            if reason == "rule"
            else tasks.filter(reason=reason)
        )
    if mine:
        tasks = tasks.filter(Q(claimed_by=user) | Q(assignee=user))
    return tasks.select_related("workflow", "claimed_by", "assignee", "guarded").order_by(
        *QUEUE_ORDER
    )


COUNT_CAP = 1000


def review_task_counts(
    *, user: Any, workflow: Workflow | None = None, cap: int = COUNT_CAP
) -> dict[str, int]:
    """How many visible tasks there are in each status, counted up to `cap + 1`.

    Counting stops past the cap (the page shows "1000+"): exact counts over every decided task
    would grow with history and scan it on every refresh. Each status is an index scan over
    (workflow, status) within the workflows the user may see.
    """
    tasks = ReviewTask.objects.filter(tasks_visible_q(user))
    if workflow is not None:
        tasks = tasks.filter(workflow=workflow)
    return {
        status: tasks.filter(status=status).order_by()[: cap + 1].count()
        for status in ReviewTask.Status.values
    }


def workflows_with_tasks_visible(*, user: Any) -> QuerySet[Workflow]:
    """The workflows whose tasks the user may see (for the queue's filter), each with what the
    user may decide there (`decides_reviewers`, `decides_escalation`)."""
    return (
        Workflow.objects.filter(workflows_visible_q(user))
        .annotate(**workflow_decides(user))
        .order_by("name")
    )


@dataclass(frozen=True)
class TaskDetail:
    """What a reviewer needs to decide a task, and what they may do with it."""

    task: ReviewTask
    input: Any
    shown: dict[str, Any]
    cost: dict[str, Any]
    output_schema: dict[str, Any] | None
    steps: list[StepRun]
    decisions: list[Decision]
    can_decide: bool
    can_reassign: bool
    claimed_by_me: bool
    escalated_to: ReviewTask | None = None
    # This task's own decision, once decided (or escalated), and the output it sent on: the
    # gate's output (the AI's answer approved, the reviewer's edit, or None when rejected).
    decision: Decision | None = None
    final_output: Any = None
    # The decision that escalated this task to the escalation level, if one did.
    escalation: Decision | None = None
    # Who decides the task, in words ("the escalation group (ops-leads)").
    waits_for: str = ""
    # With a quorum: the seat, how many decided, and the answers when the viewer may see them.
    quorum: QuorumView | None = None


def review_task_get(*, user: Any, task_id: int) -> TaskDetail:
    task = (
        ReviewTask.objects.select_related(
            "workflow", "run", "step_run", "guarded", "claimed_by", "assignee", "escalated_from"
        )
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        # As for a task the user may not see: ids are not a probe.
        raise NotAllowed("no such task, or you may not see it")
    access_task_view(user=user, task=task)
    guarded = task.guarded
    chain = [t.pk for t in (task.escalated_from, task) if t is not None]
    decisions = list(Decision.objects.filter(task_id__in=chain).select_related("reviewer", "task"))
    quorum = quorum_view(task, user_id=user.pk)
    if quorum is not None and quorum.answers is None:
        # No anchoring: another seat's decision stays hidden until the viewer decides theirs.
        decisions = [d for d in decisions if d.reviewer_id == user.pk]
    decision = next((d for d in decisions if d.task_id == task.pk), None)
    return TaskDetail(
        task=task,
        input=_in_schema_order(task.run.input, task.run.version_id),
        shown=task_shown(task),
        cost=_cost(guarded),
        output_schema=(
            step_output_schema(task.run.version_id, guarded.step_id) if guarded else None
        ),
        steps=list(StepRun.objects.filter(run_id=task.run_id).order_by("position")),
        decisions=decisions,
        can_decide=can_decide_task(user, task),
        can_reassign=is_workflow_admin(user, task.workflow),
        claimed_by_me=task.status == ReviewTask.Status.CLAIMED and task.claimed_by_id == user.pk,
        escalated_to=ReviewTask.objects.filter(escalated_from=task).first(),
        decision=decision,
        final_output=decision_output(decision, guarded.output if guarded else None),
        escalation=next((d for d in decisions if d.task_id == task.escalated_from_id), None),
        waits_for=task_audience(task, named=True),
        quorum=quorum,
    )


def task_audience(task: ReviewTask, *, named: bool = False) -> str:
    """Who decides `task`, in words. `named` adds the group's name (one query more)."""
    workflow = task.workflow
    if task.audience == ReviewTask.Audience.ESCALATION:
        if workflow.escalation_group_id is None:
            return "the workflow's admins"
        group = workflow.escalation_group if named else None
        return f"the escalation group ({group.name})" if group else "the escalation group"
    group = workflow.reviewer_group if named and workflow.reviewer_group_id else None
    return f"the reviewers ({group.name})" if group else "the workflow's reviewers"


def review_tasks_decidable(
    *, tasks: Iterable[ReviewTask], workflows: Iterable[Workflow]
) -> set[int]:
    """Which of `tasks` (a page of the queue) the user may decide, from `workflows` as
    `workflows_with_tasks_visible` gives them: no query of its own."""
    decides: dict[int, dict[str, bool]] = {
        wf.pk: {
            ReviewTask.Audience.REVIEWERS: wf.decides_reviewers,  # type: ignore[attr-defined]
            ReviewTask.Audience.ESCALATION: wf.decides_escalation,  # type: ignore[attr-defined]
        }
        for wf in workflows
    }
    return {
        task.pk for task in tasks if decides.get(task.workflow_id, {}).get(task.audience, False)
    }


def decision_output(decision: Decision | None, answer: Any) -> Any:
    """The output a decision sent on to the gate (as `run_resume` received it): the AI's
    `answer` when approved, the edit when edited, None when rejected or not (yet) decided."""
    if decision is None:
        return None
    if decision.action == Decision.Action.APPROVE:
        return answer
    if decision.action == Decision.Action.EDIT:
        return decision.edited_output
    return None


def _in_schema_order(data: Any, version_id: int) -> Any:
    """The input's fields in the order the workflow's input schema lists them."""
    if not isinstance(data, dict):
        return data
    listed = _input_field_order(version_id)
    ordered = {key: data[key] for key in listed if key in data}
    ordered.update((key, value) for key, value in data.items() if key not in ordered)
    return ordered


@functools.lru_cache(maxsize=256)
def _input_field_order(version_id: int) -> list[str]:
    # From the admin's own text: jsonb (the stored definition) keeps keys shortest first.
    source = WorkflowVersion.objects.values_list("source", flat=True).get(pk=version_id)
    try:
        schema = parse_source(source).get("input_schema") or {}
    except DefinitionError:
        return []
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return list(properties) if isinstance(properties, dict) else []


def task_shown(task: ReviewTask) -> dict[str, Any]:
    """The AI's answer and the evidence behind it, as the reviewer sees it (and a decision keeps).

    Read from the guarded StepRun, which never changes, and the gate's routing record.
    """
    guarded = task.guarded
    meta = guarded.meta if guarded else {}
    gate = task.step_run.meta
    samples = meta.get("samples") or []
    return {
        "step": guarded.step_id if guarded else None,
        "output": guarded.output if guarded else None,
        "confidence": guarded.confidence if guarded else None,
        "votes": meta.get("votes"),
        "samples": samples[:SHOWN_SAMPLES],
        "samples_total": len(samples),
        "tier": meta.get("tier"),
        "model": meta.get("model"),
        "model_version": meta.get("model_version"),
        "gate": {
            key: gate.get(key)
            for key in ("reason", "rule", "label", "threshold", "audit_rate")
            if key in gate
        },
        # Few-shot examples picked from past decisions, when the step asked for them.
        **({"examples": meta["review_examples"]} if meta.get("review_examples") else {}),
        # With a quorum: the seat (never the other answers), or for its escalation, every answer.
        **({"quorum": quorum} if (quorum := quorum_shown(task)) is not None else {}),
    }


def _cost(step_run: StepRun | None) -> dict[str, Any]:
    if step_run is None:
        return {}
    return {
        "calls": step_run.calls,
        "input_tokens": step_run.input_tokens,
        "output_tokens": step_run.output_tokens,
        "cost_usd": step_run.cost_usd,
        "latency_ms": step_run.latency_ms,
    }


@dataclass(frozen=True)
class QueueCursor:
    """Where a queue page ends, in the queue's order: keyset pagination stays fast at any
    depth, where OFFSET would scan every task before the page."""

    priority: int
    due_at: datetime | None
    created_at: datetime
    id: int

    @classmethod
    def of(cls, task: ReviewTask) -> QueueCursor:
        return cls(task.priority, task.due_at, task.created_at, task.pk)

    def encode(self) -> str:
        due = self.due_at.isoformat() if self.due_at else ""
        return f"{self.priority}|{due}|{self.created_at.isoformat()}|{self.id}"

    @classmethod
    def decode(cls, text: str) -> QueueCursor:
        """Raise ValueError on anything that is not a cursor this code wrote."""
        priority, due, created, pk = text.split("|")
        cursor = cls(
            _bounded(int(priority), -(2**31), 2**31),
            _utc(due) if due else None,
            _utc(created),
            _bounded(int(pk), 1, 2**63),
        )
        return cursor


def _bounded(value: int, low: int, high: int) -> int:
    # The columns' own ranges: a number outside them would reach PostgreSQL as an error.
    if not low <= value < high:
        raise ValueError(f"{value} is out of range")
    return value


def _utc(text: str) -> datetime:
    """An aware time that exists in UTC (an offset can push year 1 or 9999 out of range)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range") from None


def review_task_page(
    tasks: QuerySet[ReviewTask], *, after: QueueCursor | None, size: int
) -> tuple[list[ReviewTask], QueueCursor | None]:
    """One page of an ordered queue after `after`, and the cursor of the next page if any.

    The order is priority DESC, due_at ASC (no SLA last), created_at ASC, id ASC.
    """
    if after is not None:
        tasks = tasks.filter(_after(after))
    rows = list(tasks[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return rows, (QueueCursor.of(rows[-1]) if more and rows else None)


def _after(c: QueueCursor) -> RawSQL:
    """Rows after the cursor in the queue's order: one row comparison over the queue key,
    which the expression index `reviewtask_queue_key_idx` bounds (an OR-chain could not)."""
    table = ReviewTask._meta.db_table
    sql = (
        f'(("{table}"."priority" * -1), COALESCE("{table}"."due_at", %s), '
        f'"{table}"."created_at", "{table}"."id") > (%s, %s, %s, %s)'
    )
    params = (NO_DUE, -c.priority, c.due_at or NO_DUE, c.created_at, c.id)
    # Only the model's own table name is formatted in; every value is a bound parameter.
    return RawSQL(sql, params, output_field=BooleanField())  # noqa: S611
