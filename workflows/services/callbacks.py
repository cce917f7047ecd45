"""The outbox: one Delivery row per subscribed endpoint, written with the event it reports.

An event (a run finished, a task opened, decided, escalated or overdue) writes its
deliveries in the transaction that makes it happen, so a delivery exists exactly when its
event committed; the sender (`workflows.services.deliveries`) is nudged on commit, and the
deliveries sweep re-sends whatever that nudge lost. A workflow without endpoints pays one
indexed query per event here, and nothing on the engine's fast path (`fastpath`).

Webhook endpoints get the Standard Webhooks envelope `{"type", "timestamp", "data"}`; chat
endpoints get `{"text": ...}` (`workflows.chat`), or nothing for events not worth a message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q, Subquery

from workflows.chat import chat_message
from workflows.models import (
    AuditEvent,
    Decision,
    Delivery,
    Endpoint,
    ReviewTask,
    Run,
    WorkflowVersion,
)
from workflows.notifications import task_url
from workflows.services.audit import Actor, audit_event

# The run input's own `id`, as events report it and as the evaluation split keys on it.
from workflows.splits import input_id

SYSTEM = Actor.system("callbacks")
# The Celery task that sends a delivery (`workflows.tasks`), sent by name and routed to the
# `callbacks` queue in hitl/celery.py.
DELIVERY_SEND_TASK = "hitl.delivery_send"


def delivery_enqueue_on_commit(delivery_id: int) -> None:
    """Nudge the sender once the transaction that wrote (or re-armed) the delivery commits."""
    transaction.on_commit(lambda: current_app.send_task(DELIVERY_SEND_TASK, args=(delivery_id,)))


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def max_attempts() -> int:
    """The first attempt and one per entry of the retry schedule."""
    return len(settings.HITL_DELIVERY_RETRY_SCHEDULE) + 1


def deliveries_enqueue(
    *,
    workflow_id: int,
    run_id: int | None,
    event: str,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    now: datetime,
) -> list[Delivery]:
    """Write a pending Delivery for each active endpoint of the workflow subscribed to `event`
    that hears from run `run_id`: every endpoint, except those kept for the runs that name
    them (`named_runs_only`), which hear only from those.

    In the caller's transaction, which holds whatever the event changed. `data` may be a
    function: it is called only when some endpoint listens, so an event nobody subscribed
    to costs one query.
    """
    hears = Q(named_runs_only=False)
    if run_id is not None:
        named = Run.objects.filter(pk=run_id).values("callback_endpoint_id")[:1]
        hears |= Q(pk__in=Subquery(named))
    endpoints = list(
        Endpoint.objects.filter(
            hears,
            workflow_id=workflow_id,
            active=True,
            event_types__contains=[event],
        ).order_by("pk")
    )
    if not endpoints:
        return []
    if callable(data):
        data = data()
    envelope = {"type": event, "timestamp": now.isoformat(), "data": data}
    rows = []
    for endpoint in endpoints:
        body: dict[str, Any] | None = envelope
        if endpoint.kind == Endpoint.Kind.SLACK:
            body = chat_message(event, data, min_priority=endpoint.min_priority)
        if body is None:
            continue
        rows.append(
            Delivery(
                endpoint=endpoint,
                event=event,
                webhook_id=new_webhook_id(),
                payload=body,
                status=Delivery.Status.PENDING,
                max_attempts=max_attempts(),
                due_at=now,
                enqueued_at=now,
                created_at=now,
            )
        )
    Delivery.objects.bulk_create(rows)
    AuditEvent.objects.bulk_create(
        [
            audit_event(
                actor=SYSTEM,
                verb="delivery.created",
                target=row,
                payload={"endpoint": row.endpoint_id, "event": event, "webhook_id": row.webhook_id},
            )
            for row in rows
        ]
    )
    for row in rows:
        delivery_enqueue_on_commit(row.pk)
    return rows


# --- Run events ----------------------------------------------------------------------------


def run_event(*, run: Run, event: str, output: Any, now: datetime) -> list[Delivery]:
    """`run.completed`, `run.failed` or `run.cancelled`, from the transaction that saved it.

    `output` is the run's final output: the output of the step that finished it (for a run a
    gate finished, the gate's final output: the approved, edited or no answer).
    """
    return deliveries_enqueue(
        workflow_id=run.workflow_id,
        run_id=run.pk,
        event=event,
        data=lambda: run_data(run, output),
        now=now,
    )


def run_data(run: Run, output: Any) -> dict[str, Any]:
    number, slug = (
        WorkflowVersion.objects.filter(pk=run.version_id)
        .values_list("number", "workflow__slug")
        .get()
    )
    last = (
        Decision.objects.filter(task__run_id=run.pk)
        .select_related("reviewer", "task")
        .order_by("-decided_at", "-pk")
        .first()
    )
    return {
        "run": {
            "id": run.pk,
            "status": run.status,
            "outcome": run.outcome,
            "error": run.error,
            "source": run.source,
            "created_at": _iso(run.created_at),
            "finished_at": _iso(run.finished_at),
        },
        "workflow": {"slug": slug, "version": number},
        "input_id": input_id(run.input),
        "output": output,
        "decision": decision_summary(last),
    }


# --- Task events ---------------------------------------------------------------------------


def task_event(
    *,
    task: ReviewTask,
    event: str,
    now: datetime,
    output: Any = None,
    decision: Decision | None = None,
    escalated_to: ReviewTask | None = None,
) -> list[Delivery]:
    """`task.created`, `.decided`, `.escalated` or `.sla_breached`, in the task's transaction.

    `output` is the gate's final output for `task.decided`; `decision` the reviewer's, when
    one decided (or escalated); `escalated_to` the task an escalation opened.
    """
    return deliveries_enqueue(
        workflow_id=task.workflow_id,
        run_id=task.run_id,
        event=event,
        data=lambda: task_data(task, output, decision, escalated_to),
        now=now,
    )


def task_data(
    task: ReviewTask,
    output: Any,
    decision: Decision | None,
    escalated_to: ReviewTask | None,
) -> dict[str, Any]:
    number, slug, run_input = (
        Run.objects.filter(pk=task.run_id)
        .values_list("version__number", "workflow__slug", "input")
        .get()
    )
    return {
        "task": {
            "id": task.pk,
            "status": task.status,
            "audience": task.audience,
            "reason": task.reason,
            "priority": task.priority,
            "created_at": _iso(task.created_at),
            "due_at": _iso(task.due_at),
            "url": task_url(task),
            "escalated_from": task.escalated_from_id,
            "escalated_to": (
                None
                if escalated_to is None
                else {
                    "id": escalated_to.pk,
                    "reason": escalated_to.reason,
                    "audience": escalated_to.audience,
                    "url": task_url(escalated_to),
                }
            ),
        },
        "run": {"id": task.run_id},
        "workflow": {"slug": slug, "version": number},
        "input_id": input_id(run_input),
        "output": output,
        "decision": decision_summary(decision),
    }


# --- Shared --------------------------------------------------------------------------------


def decision_summary(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "task": decision.task_id,
        "action": decision.action,
        "reviewer": decision.reviewer.get_username(),
        "reason": decision.reason,
        "decided_at": _iso(decision.decided_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
