"""Review tasks: created by gates, claimed as leases, decided once, escalated, swept for SLAs.

Locking order, everywhere: the run row, then the task row. Deciding locks the run (as
recording, resuming and cancelling do), so two decisions on one task serialise and the
second finds the task decided. Anything that inserts a task also holds the run first: the
insert's foreign-key check would otherwise wait on a decision holding the run while the
decision waits on the task.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jsonschema
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from workflows import notifications
from workflows.access import (
    access_task_decide,
    access_task_reassign,
    can_decide_task,
    is_workflow_admin,
    tasks_decidable_q,
)
from workflows.errors import Conflict, InvalidInput
from workflows.models import AuditEvent, Decision, ReviewSkip, ReviewTask, Run, StepRun, Workflow
from workflows.models.review import QUEUE_ORDER
from workflows.selectors import task_shown
from workflows.services.audit import Actor, audit_event
from workflows.services.runs import run_resume
from workflows.steps.gate import guarded_output_schema

SYSTEM = Actor.system("review")
LIVE = list(ReviewTask.LIVE)
MAX_REASON = 2000
# What the audit trail keeps of a gate's routing: enough to recompute calibration strata.
GATE_AUDITED = ("decision", "reason", "guards", "label", "confidence", "threshold", "audit_rate")


# --- Creation and cancellation (inside the engine's transactions) ----------------------------


def gate_record(*, run: Run, step_run: StepRun, waiting: bool, now: datetime) -> ReviewTask | None:
    """Audit a gate's routing and, when it waits, open its review task.

    Called from the gate's `on_record`, inside the transaction that records the result (the
    caller holds the run's lock), so the task exists exactly when the gate is waiting.
    """
    meta = step_run.meta
    events = [
        audit_event(
            actor=SYSTEM,
            verb="gate.decided",
            object_type="step_run",
            object_id=step_run.pk,
            payload={
                "run": run.pk,
                "step": step_run.step_id,
                **{key: meta.get(key) for key in GATE_AUDITED},
            },
            now=now,
        )
    ]
    task = None
    if waiting:
        guarded = StepRun.objects.filter(run_id=run.pk, step_id=meta["guards"]).first()
        task = _task_create(
            run=run,
            step_run=step_run,
            guarded=guarded,
            audience=ReviewTask.Audience.REVIEWERS,
            reason=meta["reason"],
            priority=meta.get("priority", 0),
            now=now,
            events=events,
        )
    AuditEvent.objects.bulk_create(events)
    return task


def review_tasks_cancel(*, step_run: StepRun, now: datetime | None = None) -> int:
    """Close a gate's live task when its run is cancelled (inside the cancelling transaction)."""
    now = now or timezone.now()
    tasks = list(
        ReviewTask.objects.select_for_update().filter(step_run_id=step_run.pk, status__in=LIVE)
    )
    for task in tasks:
        task.status = ReviewTask.Status.CANCELLED
        task.closed_at = now
        task.claim_expires_at = None
        task.save(update_fields=["status", "closed_at", "claim_expires_at"])
    AuditEvent.objects.bulk_create(
        [_event(SYSTEM, "review.cancelled", task, {"run": task.run_id}, now) for task in tasks]
    )
    return len(tasks)


def _task_create(
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
) -> ReviewTask:
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
        priority=priority,
        due_at=due_at,
        warn_at=warn_at,
        created_at=now,
    )
    events.append(
        _event(
            SYSTEM,
            "review.created",
            task,
            {
                "run": run.pk,
                "step": step_run.step_id,
                "reason": reason,
                "audience": audience,
                "priority": priority,
                "due_at": due_at.isoformat() if due_at else None,
                "escalated_from": escalated_from.pk if escalated_from else None,
            },
            now,
        )
    )
    return task


# --- Claims --------------------------------------------------------------------------------


def review_claim(*, task: ReviewTask, user: Any, now: datetime | None = None) -> ReviewTask:
    """Claim a task (or renew one's own live claim). The claim is a lease of HITL_REVIEW_CLAIM."""
    now = now or timezone.now()
    access_task_decide(user=user, task=task)
    with transaction.atomic():
        task = _locked(task)
        _check_live(task)
        if _held_by_other(task, user, now):
            raise Conflict(_claimed_message(task))
        if task.assignee_id not in (None, user.pk) and not is_workflow_admin(user, task.workflow):
            raise Conflict(f"task {task.pk} is assigned to {task.assignee}")
        _claim(task, user, now)
    return task


def review_claim_next(
    *, user: Any, workflow: Workflow | None = None, now: datetime | None = None
) -> ReviewTask | None:
    """Claim the first task in the queue's order that `user` may take, or None.

    SKIP LOCKED lets concurrent callers pass over each other's candidates instead of queueing
    behind them, so two callers never get the same task and neither waits.
    """
    now = now or timezone.now()
    with transaction.atomic():
        candidates = (
            ReviewTask.objects.filter(tasks_decidable_q(user))
            .filter(
                Q(status=ReviewTask.Status.OPEN)
                | Q(status=ReviewTask.Status.CLAIMED, claim_expires_at__lte=now)
            )
            .filter(Q(assignee__isnull=True) | Q(assignee_id=user.pk))
            .exclude(pk__in=ReviewSkip.objects.filter(user_id=user.pk).values("task_id"))
        )
        if workflow is not None:
            candidates = candidates.filter(workflow=workflow)
        task = candidates.order_by(*QUEUE_ORDER).select_for_update(skip_locked=True).first()
        if task is None:
            return None
        _claim(task, user, now)
    return task


def review_renew(*, task: ReviewTask, user: Any, now: datetime | None = None) -> ReviewTask:
    """Extend one's own live claim while still working on the task."""
    now = now or timezone.now()
    with transaction.atomic():
        task = _locked(task)
        _check_live(task)
        _check_holds(task, user, now)
        task.claim_expires_at = now + settings.HITL_REVIEW_CLAIM
        task.save(update_fields=["claim_expires_at"])
    return task


def review_release(*, task: ReviewTask, user: Any, now: datetime | None = None) -> ReviewTask:
    """Give a claimed task back to the queue."""
    now = now or timezone.now()
    with transaction.atomic():
        task = _locked(task)
        _check_live(task)
        _check_holds(task, user, now, lapsed_ok=True)
        _unclaim(task)
        AuditEvent.objects.bulk_create(
            [_event(Actor.for_user(user), "review.released", task, {}, now)]
        )
    return task


def review_skip(*, task: ReviewTask, user: Any, now: datetime | None = None) -> ReviewTask:
    """Give a task back and stop "next task" from offering it to this reviewer again."""
    now = now or timezone.now()
    with transaction.atomic():
        task = _locked(task)
        _check_live(task)
        _check_holds(task, user, now, lapsed_ok=True)
        _unclaim(task)
        if task.assignee_id == user.pk:
            # A skipped assignment would otherwise sit with nobody able to take it.
            task.assignee = None
            task.save(update_fields=["assignee"])
        ReviewSkip.objects.get_or_create(task=task, user=user, defaults={"created_at": now})
        AuditEvent.objects.bulk_create(
            [_event(Actor.for_user(user), "review.skipped", task, {}, now)]
        )
    return task


def review_reassign(
    *, task: ReviewTask, user: Any, to: Any, now: datetime | None = None
) -> ReviewTask:
    """Assign a live task to `to` (or back to the pool with None). Workflow admins only.

    A claim held by anyone else is dropped: the task is now `to`'s to claim.
    """
    now = now or timezone.now()
    access_task_reassign(user=user, task=task)
    if to is not None and not can_decide_task(to, task):
        raise InvalidInput(f"{to} may not decide task {task.pk}: choose one of its reviewers")
    with transaction.atomic():
        task = _locked(task)
        _check_live(task)
        previous = task.assignee_id
        if task.status == ReviewTask.Status.CLAIMED and (to is None or task.claimed_by_id != to.pk):
            _unclaim(task)
        task.assignee = to
        task.save(update_fields=["assignee"])
        AuditEvent.objects.bulk_create(
            [
                _event(
                    Actor.for_user(user),
                    "review.reassigned",
                    task,
                    {"from": previous, "to": to.pk if to else None},
                    now,
                )
            ]
        )
        if to is not None:
            notifications.notify_assigned(task)
    return task


def _locked(task: ReviewTask) -> ReviewTask:
    return (
        ReviewTask.objects.select_for_update(of=("self",))
        .select_related("workflow", "claimed_by", "assignee")
        .get(pk=task.pk)
    )


def _claim(task: ReviewTask, user: Any, now: datetime) -> None:
    renewing = _holds(task, user, now)
    task.status = ReviewTask.Status.CLAIMED
    task.claimed_by = user
    if not renewing:
        # Time spent runs from the claim that leads to the decision, not from a renewal.
        task.claimed_at = now
    task.claim_expires_at = now + settings.HITL_REVIEW_CLAIM
    task.save(update_fields=["status", "claimed_by", "claimed_at", "claim_expires_at"])
    if not renewing:
        AuditEvent.objects.bulk_create(
            [
                _event(
                    Actor.for_user(user),
                    "review.claimed",
                    task,
                    {"until": task.claim_expires_at.isoformat()},
                    now,
                )
            ]
        )


def _unclaim(task: ReviewTask) -> None:
    task.status = ReviewTask.Status.OPEN
    task.claimed_by = None
    task.claimed_at = None
    task.claim_expires_at = None
    task.save(update_fields=["status", "claimed_by", "claimed_at", "claim_expires_at"])


def _holds(task: ReviewTask, user: Any, now: datetime) -> bool:
    return (
        task.status == ReviewTask.Status.CLAIMED
        and task.claimed_by_id == user.pk
        and task.claim_expires_at is not None
        and task.claim_expires_at > now
    )


def _held_by_other(task: ReviewTask, user: Any, now: datetime) -> bool:
    return (
        task.status == ReviewTask.Status.CLAIMED
        and task.claimed_by_id != user.pk
        and task.claim_expires_at is not None
        and task.claim_expires_at > now
    )


def _check_live(task: ReviewTask) -> None:
    if task.status == ReviewTask.Status.DECIDED:
        decision = Decision.objects.filter(task=task).select_related("reviewer").first()
        by = f" by {decision.reviewer}" if decision else ""
        raise Conflict(f"task {task.pk} has already been decided{by}")
    if task.status == ReviewTask.Status.ESCALATED:
        successor = ReviewTask.objects.filter(escalated_from=task).values_list("pk", flat=True)
        where = f": task {successor[0]} carries on" if successor else ""
        raise Conflict(f"task {task.pk} has been escalated{where}")
    if task.status == ReviewTask.Status.CANCELLED:
        raise Conflict(f"task {task.pk} was cancelled with its run")


def _check_holds(task: ReviewTask, user: Any, now: datetime, *, lapsed_ok: bool = False) -> None:
    """Raise Conflict unless `user` holds the claim (a lapsed one too, with `lapsed_ok`)."""
    if task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != user.pk:
        if _held_by_other(task, user, now):
            raise Conflict(_claimed_message(task))
        raise Conflict(f"you have not claimed task {task.pk}: claim it first")
    assert task.claim_expires_at is not None
    if not lapsed_ok and task.claim_expires_at <= now:
        raise Conflict(
            f"your claim on task {task.pk} expired at {task.claim_expires_at:%Y-%m-%d %H:%M} UTC;"
            " claim it again"
        )


def _claimed_message(task: ReviewTask) -> str:
    until = task.claim_expires_at
    when = f" until {until:%Y-%m-%d %H:%M} UTC" if until else ""
    return f"task {task.pk} is claimed by {task.claimed_by}{when}"


# --- Decisions -----------------------------------------------------------------------------


def review_decide(
    *,
    task: ReviewTask,
    user: Any,
    action: str,
    reason: str = "",
    output: Any = None,
    now: datetime | None = None,
) -> Decision:
    """Decide a task one holds a live claim on: approve, reject, edit (and approve), escalate.

    Approve, edit and reject complete the gate through `run_resume` with the final output
    (the AI's, the edit, or none for a rejection); the guarded step is never changed.
    Escalate hands the task to the escalation level and the run keeps waiting.
    """
    now = now or timezone.now()
    if action not in Decision.Action.values:
        allowed = ", ".join(Decision.Action.values)
        raise InvalidInput(f"unknown action {action!r}: choose one of {allowed}")
    reason = (reason or "").strip()
    if action in Decision.OVERRIDES and not reason:
        raise InvalidInput(f"a reason is required to {Decision.Action(action).label.lower()}")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is too long (at most {MAX_REASON} characters)")
    if action != Decision.Action.EDIT and output is not None:
        raise InvalidInput("only edit takes an output; approve keeps the AI's answer")
    access_task_decide(user=user, task=task)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=task.run_id)
        task = (
            ReviewTask.objects.select_for_update(of=("self",))
            .select_related("workflow", "step_run", "guarded", "claimed_by")
            .get(pk=task.pk)
        )
        _check_live(task)
        _check_holds(task, user, now)
        if action == Decision.Action.ESCALATE and task.audience == ReviewTask.Audience.ESCALATION:
            raise InvalidInput(
                f"task {task.pk} is already escalated and escalation is one level deep:"
                " approve, edit or reject it"
            )
        edited = _edited_output(task, run, output) if action == Decision.Action.EDIT else None
        assert task.claimed_at is not None
        decision = Decision.objects.create(
            task=task,
            reviewer=user,
            action=action,
            edited_output=edited,
            reason=reason,
            shown=task_shown(task),
            claimed_at=task.claimed_at,
            decided_at=now,
            time_spent=now - task.claimed_at,
        )
        actor = Actor.for_user(user)
        escalating = action == Decision.Action.ESCALATE
        task.status = ReviewTask.Status.ESCALATED if escalating else ReviewTask.Status.DECIDED
        task.closed_at = now
        task.claim_expires_at = None
        task.save(update_fields=["status", "closed_at", "claim_expires_at"])
        events = [
            _event(
                actor,
                "review.decided",
                task,
                {"run": run.pk, "action": action, "reason": reason, "decision": decision.pk},
                now,
            )
        ]
        if escalating:
            _escalate(task, run=run, reason="escalated", actor=actor, now=now, events=events)
            AuditEvent.objects.bulk_create(events)
            return decision
        AuditEvent.objects.bulk_create(events)
        _resume(task, run, decision, actor, now)
    return decision


def _edited_output(task: ReviewTask, run: Run, output: Any) -> Any:
    if output is None:
        raise InvalidInput("edit needs the edited output")
    guarded = task.guarded
    schema = guarded_output_schema(run.version_id, guarded.step_id) if guarded else None
    if schema is None:
        if not isinstance(output, dict):
            raise InvalidInput("the edited output must be a JSON object")
    else:
        errors = sorted(
            jsonschema.Draft202012Validator(schema).iter_errors(output),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            problems = "; ".join(
                f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in errors
            )
            raise InvalidInput(f"the edited output does not match the output schema: {problems}")
    if guarded is not None and output == guarded.output:
        raise InvalidInput("the edited output is the AI's answer unchanged: approve it instead")
    return output


def _resume(task: ReviewTask, run: Run, decision: Decision, actor: Actor, now: datetime) -> None:
    guarded = task.guarded
    if decision.action == Decision.Action.REJECT:
        outcome, output = "rejected", None
    elif decision.action == Decision.Action.EDIT:
        outcome, output = "approved", decision.edited_output
    else:
        outcome, output = "approved", guarded.output if guarded else None
    run_resume(
        run=run,
        step_id=task.step_run.step_id,
        actor=actor,
        output=output,
        outcome=outcome,
        # The score the gate judged, kept with the final output for calibration.
        confidence=guarded.confidence if guarded else None,
        meta={
            "review": {
                "task": task.pk,
                "decision": decision.pk,
                "action": decision.action,
                "reviewer": actor.label,
                "decided_at": now.isoformat(),
            }
        },
        now=now,
    )


def _escalate(
    task: ReviewTask,
    *,
    run: Run,
    reason: str,
    actor: Actor,
    now: datetime,
    events: list[AuditEvent],
) -> ReviewTask:
    """Open the escalation-level task for `task`, already saved as ESCALATED (run locked)."""
    successor = _task_create(
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
        _event(actor, "review.escalated", task, {"to": successor.pk, "reason": reason}, now)
    )
    notifications.notify_escalated(successor)
    return successor


# --- Sweepers ------------------------------------------------------------------------------


def review_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Beat's review pass: free lapsed claims, warn before due_at, handle breaches."""
    now = now or timezone.now()
    expired = review_claims_expire(now=now, limit=limit)
    warned = review_sla_warn(now=now, limit=limit)
    breaches = review_sla_breach(now=now, limit=limit)
    return {"claims_expired": expired, "warned": warned, **breaches}


def review_claims_expire(*, now: datetime | None = None, limit: int = 500) -> int:
    """Return tasks whose claim lapsed to the queue."""
    now = now or timezone.now()
    with transaction.atomic():
        tasks = list(
            ReviewTask.objects.select_for_update(skip_locked=True)
            .filter(status=ReviewTask.Status.CLAIMED, claim_expires_at__lte=now)
            .order_by("claim_expires_at")[:limit]
        )
        events = [
            _event(SYSTEM, "review.claim_expired", task, {"claimed_by": task.claimed_by_id}, now)
            for task in tasks
        ]
        for task in tasks:
            _unclaim(task)
        AuditEvent.objects.bulk_create(events)
    return len(tasks)


def review_sla_warn(*, now: datetime | None = None, limit: int = 500) -> int:
    """Record and send the warning for live tasks past their warn_at but not yet due."""
    now = now or timezone.now()
    with transaction.atomic():
        tasks = list(
            ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("workflow", "claimed_by")
            .filter(status__in=LIVE, warned_at__isnull=True, warn_at__lte=now, due_at__gt=now)
            .order_by("warn_at")[:limit]
        )
        for task in tasks:
            task.warned_at = now
            task.save(update_fields=["warned_at"])
            notifications.notify_sla_warning(task)
        AuditEvent.objects.bulk_create(
            [
                _event(SYSTEM, "review.sla_warning", task, {"due_at": _iso(task.due_at)}, now)
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
            .filter(status__in=LIVE, breached_at__isnull=True, due_at__lte=now)
            .order_by("due_at")[:limit]
        )
        for task in tasks:
            task.breached_at = now
            task.save(update_fields=["breached_at"])
            notifications.notify_sla_breached(task)
        AuditEvent.objects.bulk_create(
            [
                _event(
                    SYSTEM,
                    "review.sla_breached",
                    task,
                    {"due_at": _iso(task.due_at), "claimed_by": task.claimed_by_id},
                    now,
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
        task.status = ReviewTask.Status.ESCALATED
        task.closed_at = now
        task.claimed_by = None
        task.claimed_at = None
        task.claim_expires_at = None
        task.save(
            update_fields=["status", "closed_at", "claimed_by", "claimed_at", "claim_expires_at"]
        )
        events: list[AuditEvent] = []
        _escalate(task, run=run, reason="sla_breach", actor=SYSTEM, now=now, events=events)
        AuditEvent.objects.bulk_create(events)
    return True


def _event(
    actor: Actor, verb: str, task: ReviewTask, payload: dict[str, Any], now: datetime
) -> AuditEvent:
    return audit_event(
        actor=actor,
        verb=verb,
        object_type="review_task",
        object_id=task.pk,
        payload=payload,
        now=now,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
