"""Every periodic sweep, in one place: what beat runs to keep `due_at`-style promises.

Nothing in hitl waits on a Celery countdown. Work that falls due later is a timestamp
column, and these sweeps find what is due:

- `steps_sweep`: due steps whose message was lost, lapsed leases, steps out of attempts;
- `review_sweep`: lapsed claims, SLA warnings, SLA breaches and their escalation;
- `ai_budget_sweep`: AI steps that waited for the daily cost cap, once there is headroom;
- `deliveries_sweep`: due callbacks whose message was lost, lapsed leases, exhausted ones.

Each is a service the Celery tasks in `workflows.tasks` call on beat's schedule.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from workflows import notifications
from workflows.models import AuditEvent, Delivery, Event, ReviewTask, Run, StepRun
from workflows.services.audit import Actor, audit_event, audit_record
from workflows.services.callbacks import delivery_enqueue_on_commit, task_event
from workflows.services.deliveries import deliveries_park_exhausted
from workflows.services.hooks import spent_today
from workflows.services.review.claims import claim_at_maximum, claim_drop
from workflows.services.review.quorum import quorum_escalate_overdue
from workflows.services.review.tasks import SYSTEM as REVIEW_SYSTEM
from workflows.services.review.tasks import review_task_escalate
from workflows.services.steps import step_enqueue_on_commit, steps_park_exhausted

# --- Steps ---------------------------------------------------------------------------------


def steps_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Re-send due steps whose message was lost, and park exhausted ones.

    Covers a worker killed mid-step (lease expiry), a flushed Redis and a web process that
    died between commit and enqueue.
    """
    now = now or timezone.now()
    parked = steps_park_exhausted(now=now)
    stale = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - settings.HITL_REENQUEUE_AFTER)
    due = (
        StepRun.objects.filter(
            Q(status=StepRun.Status.READY, due_at__lte=now)
            | Q(
                status=StepRun.Status.RUNNING,
                lease_expires_at__lte=now,
                attempts__lt=F("max_attempts"),
            )
        )
        .filter(stale)
        .order_by("due_at")
        .values_list("pk", "kind")[:limit]
    )
    with transaction.atomic():
        rows = list(due)
        StepRun.objects.filter(pk__in=[pk for pk, _ in rows]).update(enqueued_at=now)
        for pk, kind in rows:
            step_enqueue_on_commit(StepRun(pk=pk, kind=kind))
    return {"enqueued": len(rows), "parked": parked}


# --- Review tasks --------------------------------------------------------------------------


def review_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Free lapsed claims, warn before due_at, handle breaches."""
    now = now or timezone.now()
    expired = review_claims_expire(now=now, limit=limit)
    warned = review_sla_warn(now=now, limit=limit)
    breaches = review_sla_breach(now=now, limit=limit)
    return {"claims_expired": expired, "warned": warned, **breaches}


def review_claims_expire(*, now: datetime | None = None, limit: int = 500) -> int:
    """Return tasks whose claim lapsed, or reached the maximum claim time, to the queue."""
    now = now or timezone.now()
    with transaction.atomic():
        tasks = list(
            ReviewTask.objects.select_for_update(skip_locked=True)
            .filter(status=ReviewTask.Status.CLAIMED, claim_expires_at__lte=now)
            .order_by("claim_expires_at")[:limit]
        )
        events = [
            audit_event(
                actor=REVIEW_SYSTEM,
                verb="review.claim_expired",
                target=task,
                payload={
                    "claimed_by": task.claimed_by_id,
                    "why": "max_claim_time" if claim_at_maximum(task) else "lapsed",
                },
            )
            for task in tasks
        ]
        for task in tasks:
            claim_drop(task)
        AuditEvent.objects.bulk_create(events)
    return len(tasks)


def review_sla_warn(*, now: datetime | None = None, limit: int = 500) -> int:
    """Record and send the warning for live tasks past their warn_at but not yet due."""
    now = now or timezone.now()
    with transaction.atomic():
        tasks = list(
            ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("workflow", "claimed_by")
            .filter(
                status__in=ReviewTask.LIVE, warned_at__isnull=True, warn_at__lte=now, due_at__gt=now
            )
            .order_by("warn_at")[:limit]
        )
        for task in tasks:
            task.warned_at = now
            task.save(update_fields=["warned_at"])
            notifications.notify_sla_warning(task)
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=REVIEW_SYSTEM,
                    verb="review.sla_warning",
                    target=task,
                    payload={"due_at": _iso(task.due_at)},
                )
                for task in tasks
            ]
        )
    return len(tasks)


def review_sla_breach(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Record breaches, and escalate overdue reviewer tasks that nobody holds.

    A breach never takes a live claim away: a held task is escalated only if its claim ends
    without a decision (a later sweep finds it open and overdue). Escalated tasks that breach
    are recorded and reported to the admins; escalation is one level deep.
    """
    now = now or timezone.now()
    with transaction.atomic():
        tasks = list(
            ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("workflow", "claimed_by")
            .filter(status__in=ReviewTask.LIVE, breached_at__isnull=True, due_at__lte=now)
            .order_by("due_at")[:limit]
        )
        for task in tasks:
            task.breached_at = now
            task.save(update_fields=["breached_at"])
            notifications.notify_sla_breached(task)
            task_event(task=task, event=Event.TASK_SLA_BREACHED, now=now)
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=REVIEW_SYSTEM,
                    verb="review.sla_breached",
                    target=task,
                    payload={"due_at": _iso(task.due_at), "claimed_by": task.claimed_by_id},
                )
                for task in tasks
            ]
        )
    overdue = (
        ReviewTask.objects.filter(
            Q(status=ReviewTask.Status.OPEN)
            | Q(status=ReviewTask.Status.CLAIMED, claim_expires_at__lte=now),
            audience=ReviewTask.Audience.REVIEWERS,
            due_at__lte=now,
        )
        .order_by("due_at")
        .values_list("pk", "run_id")[:limit]
    )
    escalated = sum(_escalate_overdue(pk, run_id, now) for pk, run_id in list(overdue))
    return {"breached": len(tasks), "escalated": escalated}


def _escalate_overdue(task_id: int, run_id: int, now: datetime) -> bool:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        task = (
            ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("step_run", "guarded")
            .filter(
                Q(status=ReviewTask.Status.OPEN)
                | Q(status=ReviewTask.Status.CLAIMED, claim_expires_at__lte=now),
                pk=task_id,
                due_at__lte=now,
            )
            .first()
        )
        if task is None:
            return False  # claimed, decided or escalated meanwhile
        if task.seat:
            # A quorum escalates as one group, once none of its seats is held.
            return quorum_escalate_overdue(task=task, run=run, now=now)
        task.status = ReviewTask.Status.ESCALATED
        task.closed_at = now
        task.claimed_by = None
        task.claimed_at = None
        task.claim_expires_at = None
        task.save(
            update_fields=["status", "closed_at", "claimed_by", "claimed_at", "claim_expires_at"]
        )
        events: list[AuditEvent] = []
        review_task_escalate(
            task=task, run=run, reason="sla_breach", actor=REVIEW_SYSTEM, now=now, events=events
        )
        AuditEvent.objects.bulk_create(events)
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- AI spend ------------------------------------------------------------------------------


def ai_budget_sweep(*, now: datetime | None = None) -> int:
    """Send AI steps that waited for budget back to READY where the workflow has headroom
    again: a new day, or a raised (or removed) cap. Returns how many resumed."""
    now = now or timezone.now()
    waiting = (
        StepRun.objects.filter(status=StepRun.Status.WAITING, meta__waiting_for="budget")
        .values_list("pk", "run__workflow_id", "run__workflow__daily_cost_cap_usd")
        .order_by("pk")
    )
    headroom: dict[int, bool] = {}
    resumed = 0
    for pk, workflow_id, cap in waiting:
        if workflow_id not in headroom:
            headroom[workflow_id] = cap is None or spent_today(workflow_id, now) < cap
        if headroom[workflow_id] and _budget_requeue(pk, now):
            resumed += 1
    return resumed


def _budget_requeue(step_run_pk: int, now: datetime) -> bool:
    with transaction.atomic():
        step_run = StepRun.objects.select_related("run").get(pk=step_run_pk)
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
        meta = {k: v for k, v in step_run.meta.items() if k not in ("waiting_for", "budget")}
        updated = StepRun.objects.filter(
            pk=step_run_pk, status=StepRun.Status.WAITING, meta__waiting_for="budget"
        ).update(status=StepRun.Status.READY, due_at=now, enqueued_at=now, meta=meta)
        if not updated or run.status != Run.Status.WAITING:
            return False
        run.status = Run.Status.RUNNING
        run.updated_at = now
        run.save(update_fields=["status", "updated_at"])
        step_run.refresh_from_db()
        step_enqueue_on_commit(step_run)
        audit_record(
            actor=Actor.system(),
            verb="step.budget_resumed",
            target=step_run,
            payload={"run": run.pk, "step": step_run.step_id},
        )
    return True


# --- Callbacks -----------------------------------------------------------------------------


def deliveries_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Re-send due deliveries whose message was lost, and park exhausted ones.

    Covers retries falling due (never a countdown), a worker killed mid-send (lease
    expiry), a flushed Redis and a process that died between commit and enqueue.
    """
    now = now or timezone.now()
    parked = deliveries_park_exhausted(now=now)
    stale = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - settings.HITL_REENQUEUE_AFTER)
    due = (
        Delivery.objects.filter(
            Q(status=Delivery.Status.PENDING, due_at__lte=now)
            | Q(
                status=Delivery.Status.SENDING,
                lease_expires_at__lte=now,
                attempts__lt=F("max_attempts"),
            )
        )
        .filter(stale)
        .order_by("due_at")
        .values_list("pk", flat=True)[:limit]
    )
    with transaction.atomic():
        ids = list(due)
        Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        for pk in ids:
            delivery_enqueue_on_commit(pk)
    return {"enqueued": len(ids), "parked": parked}
