"""Review tasks come and go with their gate: opened when a gate waits, escalated, cancelled.

These run inside the engine's transactions (the caller holds the run's row lock): a gate's
`on_record` reaches `gate_record` and its `on_cancel` reaches `review_tasks_cancel` through
the step hooks (`workflows.services.hooks`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from workflows import notifications
from workflows.models import AuditEvent, Decision, Event, ReviewTask, Run, StepRun
from workflows.services.audit import Actor, audit_event
from workflows.services.callbacks import task_event

SYSTEM = Actor.system("review")
# What the audit trail keeps of a gate's routing: enough to recompute calibration strata.
GATE_AUDITED = ("decision", "reason", "guards", "label", "confidence", "threshold", "audit_rate")


def gate_record(*, run: Run, step_run: StepRun, waiting: bool, now: datetime) -> ReviewTask | None:
    """Audit a gate's routing and, when it waits, open its review task (or, with a quorum, its
    seats; the first is returned).

    Called from the gate's `on_record`, inside the transaction that records the result (the
    caller holds the run's lock), so the task exists exactly when the gate is waiting.
    """
    meta = step_run.meta
    events = [
        audit_event(
            actor=SYSTEM,
            verb="gate.decided",
            target=step_run,
            payload={
                "run": run.pk,
                "step": step_run.step_id,
                **{key: meta.get(key) for key in GATE_AUDITED},
            },
        )
    ]
    task = None
    if waiting:
        guarded = StepRun.objects.filter(run_id=run.pk, step_id=meta["guards"]).first()
        # With a quorum, m seats for the one gate step; without, the one task (seat 0).
        quorum = meta.get("quorum")
        for seat in range(1, quorum["of"] + 1) if quorum else [0]:
            created = review_task_create(
                run=run,
                step_run=step_run,
                guarded=guarded,
                audience=ReviewTask.Audience.REVIEWERS,
                reason=meta["reason"],
                priority=meta.get("priority", 0),
                now=now,
                events=events,
                seat=seat,
            )
            task = task or created
    AuditEvent.objects.bulk_create(events)
    return task


def review_tasks_cancel(*, step_run: StepRun, now: datetime | None = None) -> int:
    """Close a gate's live task when its run is cancelled (inside the cancelling transaction)."""
    now = now or timezone.now()
    tasks = list(
        ReviewTask.objects.select_for_update().filter(
            step_run_id=step_run.pk, status__in=ReviewTask.LIVE
        )
    )
    for task in tasks:
        task.status = ReviewTask.Status.CANCELLED
        task.closed_at = now
        task.claim_expires_at = None
        task.save(update_fields=["status", "closed_at", "claim_expires_at"])
    AuditEvent.objects.bulk_create(
        [
            audit_event(
                actor=SYSTEM,
                verb="review.cancelled",
                target=task,
                payload={"run": task.run_id},
            )
            for task in tasks
        ]
    )
    return len(tasks)


def review_task_create(
    *,
    run: Run,
    step_run: StepRun,
    guarded: StepRun | None,
    audience: str,
    reason: str,
    priority: int,
    now: datetime,
    events: list[AuditEvent],
    escalated_from: ReviewTask | None = None,
    seat: int = 0,
) -> ReviewTask:
    """Open a task for a waiting gate; its audit event is appended to `events` for the caller."""
    sla_minutes = step_run.meta.get("sla_minutes")
    due_at = warn_at = None
    if sla_minutes:
        sla = timedelta(minutes=sla_minutes)
        due_at = now + sla
        warn_at = now + sla * settings.HITL_SLA_WARNING_FRACTION
    task = ReviewTask.objects.create(
        workflow_id=run.workflow_id,
        run=run,
        step_run=step_run,
        guarded=guarded,
        audience=audience,
        reason=reason,
        escalated_from=escalated_from,
        seat=seat,
        priority=priority,
        due_at=due_at,
        warn_at=warn_at,
        created_at=now,
    )
    events.append(
        audit_event(
            actor=SYSTEM,
            verb="review.created",
            target=task,
            payload={
                "run": run.pk,
                "step": step_run.step_id,
                "reason": reason,
                "audience": audience,
                "priority": priority,
                "due_at": due_at.isoformat() if due_at else None,
                "escalated_from": escalated_from.pk if escalated_from else None,
                "seat": seat,
            },
        )
    )
    task_event(task=task, event=Event.TASK_CREATED, now=now)
    return task


def review_task_escalate(
    *,
    task: ReviewTask,
    run: Run,
    reason: str,
    actor: Actor,
    now: datetime,
    events: list[AuditEvent],
    decision: Decision | None = None,
    answers: list[dict[str, Any]] | None = None,
) -> ReviewTask:
    """Open the escalation-level task for `task`, already saved as ESCALATED (run locked).

    `decision` is the reviewer's, when one escalated (rather than the SLA sweep); `answers`,
    for a quorum's escalation, every answer its seats gave, kept with `review.escalated`."""
    successor = review_task_create(
        run=run,
        step_run=task.step_run,
        guarded=task.guarded,
        audience=ReviewTask.Audience.ESCALATION,
        reason=reason,
        priority=task.priority,
        now=now,
        events=events,
        escalated_from=task,
    )
    events.append(
        audit_event(
            actor=actor,
            verb="review.escalated",
            target=task,
            payload={
                "to": successor.pk,
                "reason": reason,
                **({"answers": answers} if answers is not None else {}),
            },
        )
    )
    notifications.notify_escalated(successor)
    task_event(
        task=task, event=Event.TASK_ESCALATED, now=now, decision=decision, escalated_to=successor
    )
    return successor
