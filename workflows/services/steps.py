"""Executing steps: claim, commit, execute outside any transaction, record.

At-least-once delivery, effectively-once effects: a Celery message is only a nudge, the
conditional claim decides who runs a step, and a result is recorded only by the attempt
that still holds the lease.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from workflows import engine
from workflows.definitions import WorkflowDefinition
from workflows.models import AuditEvent, Run, StepRun
from workflows.services.audit import Actor, audit_event
from workflows.steps import get_kind
from workflows.steps.base import (
    Completed,
    Failed,
    Result,
    StepContext,
    StepView,
    Usage,
    Waiting,
)

logger = logging.getLogger(__name__)
_rng = random.SystemRandom()
SYSTEM = Actor.system()


def step_enqueue_on_commit(step_run: StepRun) -> None:
    """Nudge a worker once the transaction that made the step due has committed."""
    from workflows.tasks import step_execute_task

    step_execute_task.apply_async_on_commit(args=[step_run.pk], queue=get_kind(step_run.kind).queue)


def _definition(run: Run) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate(run.version.definition)


def step_create(
    *, run: Run, definition: WorkflowDefinition, step_id: str, now: datetime
) -> StepRun:
    """Write a READY step in the caller's transaction and enqueue it on commit."""
    step = definition.step(step_id)
    step_run = StepRun.objects.create(
        run=run,
        step_id=step.id,
        kind=step.kind,
        position=definition.position(step.id),
        status=StepRun.Status.READY,
        due_at=now,
        enqueued_at=now,
        created_at=now,
        max_attempts=step.max_attempts or settings.HITL_STEP_MAX_ATTEMPTS,
    )
    step_enqueue_on_commit(step_run)
    return step_run


def _claimable(now: datetime) -> Q:
    return Q(status=StepRun.Status.READY, due_at__lte=now) | Q(
        status=StepRun.Status.RUNNING, lease_expires_at__lte=now
    )


def step_execute(*, step_run_id: int, now: datetime | None = None) -> StepRun | None:
    """Run one step, if this caller wins the claim. Returns the recorded StepRun or None."""
    now = now or timezone.now()
    step_run = _claim(step_run_id, now)
    if step_run is None:
        return None
    run = step_run.run
    kind = get_kind(step_run.kind)
    definition = _definition(run)
    ctx = _context(step_run, definition, now)
    started = time.monotonic()
    # Outside any transaction: a model or HTTP call must never hold a database lock.
    try:
        result = kind.execute(ctx)
    except SoftTimeLimitExceeded:
        result = Failed("the step exceeded its time limit", retryable=True)
    except Exception as exc:
        logger.exception("step %s of run %s raised", step_run.step_id, run.pk)
        result = Failed(f"{type(exc).__name__}: {exc}", retryable=False)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return step_record(
        step_run=step_run,
        result=result,
        elapsed_ms=elapsed_ms,
        now=timezone.now() if now is None else now,
    )


def _claim(step_run_id: int, now: datetime) -> StepRun | None:
    with transaction.atomic():
        # One conditional update decides the race: zero rows means someone else has it.
        claimed = (
            StepRun.objects.filter(_claimable(now), pk=step_run_id)
            .filter(attempts__lt=F("max_attempts"))
            .update(
                status=StepRun.Status.RUNNING,
                attempts=F("attempts") + 1,
                lease_expires_at=now + settings.HITL_STEP_LEASE,
                started_at=Coalesce(F("started_at"), now),
            )
        )
        if not claimed:
            _park_exhausted(Q(pk=step_run_id), now)
            return None
        step_run = StepRun.objects.select_related("run__version", "run__workflow").get(
            pk=step_run_id
        )
        run = step_run.run
        if run.status in Run.FINISHED:
            StepRun.objects.filter(pk=step_run.pk).update(
                status=StepRun.Status.CANCELLED, lease_expires_at=None, finished_at=now
            )
            return None
        if run.status == Run.Status.PENDING:
            Run.objects.filter(pk=run.pk, status=Run.Status.PENDING).update(
                status=Run.Status.RUNNING, updated_at=now
            )
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=SYSTEM,
                    verb="step.started",
                    object_type="step_run",
                    object_id=step_run.pk,
                    payload={"run": run.pk, "step": step_run.step_id, "attempt": step_run.attempts},
                    now=now,
                )
            ]
        )
    return step_run


def _park_exhausted(where: Q, now: datetime) -> int:
    """Fail steps that lost their worker on every allowed attempt, instead of looping."""
    parked = 0
    candidates = StepRun.objects.filter(
        where,
        status=StepRun.Status.RUNNING,
        lease_expires_at__lte=now,
        attempts__gte=F("max_attempts"),
    ).values_list("pk", "attempts")
    for pk, attempts in candidates:
        error = (
            f"worker lost {attempts} times: the step was still running when its lease expired "
            f"on every attempt; gave up after {attempts} attempts"
        )
        with transaction.atomic():
            step_run = StepRun.objects.select_related("run").get(pk=pk)
            run = Run.objects.select_for_update().get(pk=step_run.run_id)
            done = StepRun.objects.filter(
                pk=pk, status=StepRun.Status.RUNNING, attempts=attempts
            ).update(status=StepRun.Status.FAILED, error=error, finished_at=now)
            if done:
                _fail_run(run, step_run, error, now, events := [])
                AuditEvent.objects.bulk_create(events)
                parked += 1
                logger.error("parked step %s of run %s: %s", step_run.step_id, run.pk, error)
    return parked


def _context(step_run: StepRun, definition: WorkflowDefinition, now: datetime) -> StepContext:
    run = step_run.run
    earlier = StepRun.objects.filter(run_id=run.pk, status=StepRun.Status.COMPLETED).values_list(
        "step_id", "output", "confidence", "outcome"
    )
    step = definition.step(step_run.step_id)
    return StepContext(
        run_id=run.pk,
        step_run_id=step_run.pk,
        workflow_id=run.workflow_id,
        workflow_slug=run.workflow.slug,
        version_id=run.version_id,
        step_id=step_run.step_id,
        attempt=step_run.attempts,
        config=get_kind(step.kind).validate(step.config),
        input=run.input,
        steps={sid: StepView(out, conf, outcome) for sid, out, conf, outcome in earlier},
        now=now,
    )


def _usage_fields(step_run: StepRun, usage: Usage | None, elapsed_ms: int) -> dict[str, Any]:
    # Spend accumulates over attempts: a retried AI call was still paid for.
    if usage is None:
        return {"latency_ms": elapsed_ms}
    return {
        "calls": step_run.calls + usage.calls,
        "input_tokens": step_run.input_tokens + usage.input_tokens,
        "output_tokens": step_run.output_tokens + usage.output_tokens,
        "cost_usd": step_run.cost_usd + Decimal(usage.cost_usd),
        "latency_ms": usage.latency_ms if usage.latency_ms is not None else elapsed_ms,
    }


def step_fail(
    *, step_run: StepRun, error: str, retryable: bool, now: datetime | None = None
) -> StepRun | None:
    """Record a failed attempt: back to READY after a backoff if retryable, else fail the run."""
    return step_record(
        step_run=step_run,
        result=Failed(error, retryable=retryable),
        elapsed_ms=0,
        now=now or timezone.now(),
    )


def step_record(
    *,
    step_run: StepRun,
    result: Result,
    elapsed_ms: int,
    now: datetime,
) -> StepRun | None:
    """Record an attempt's result in one short transaction, if the attempt still owns the step."""
    attempt = step_run.attempts
    events: list[AuditEvent] = []
    with transaction.atomic():
        # The run row serialises every transition of one run (resume, cancel, record).
        run = Run.objects.select_for_update().select_related("version").get(pk=step_run.run_id)
        fields: dict[str, Any] = {
            "lease_expires_at": None,
            **_usage_fields(step_run, result.usage, elapsed_ms),
        }
        retry_at = None
        if isinstance(result, Completed):
            fields.update(
                status=StepRun.Status.COMPLETED,
                output=result.output,
                outcome=result.outcome,
                confidence=result.confidence,
                meta={**step_run.meta, **result.meta},
                finished_at=now,
                error="",
            )
        elif isinstance(result, Waiting):
            fields.update(
                status=StepRun.Status.WAITING,
                output=result.output,
                confidence=result.confidence,
                meta={**step_run.meta, **result.meta, "waiting_for": result.reason},
            )
        elif result.retryable and attempt < step_run.max_attempts:
            delay = engine.retry_delay(
                attempt,
                base=settings.HITL_RETRY_BACKOFF_BASE,
                cap=settings.HITL_RETRY_BACKOFF_MAX,
                rng=_rng,
            )
            retry_at = now + delay
            # No countdown in Redis: the sweeper enqueues the step once due_at has passed.
            fields.update(
                status=StepRun.Status.READY,
                due_at=retry_at,
                enqueued_at=None,
                error=result.error,
                meta={**step_run.meta, **result.meta},
            )
        else:
            error = result.error
            if result.retryable:
                error = f"gave up after {attempt} attempts: {error}"
            fields.update(
                status=StepRun.Status.FAILED,
                error=error,
                finished_at=now,
                meta={**step_run.meta, **result.meta},
            )
        owned = StepRun.objects.filter(
            pk=step_run.pk, status=StepRun.Status.RUNNING, attempts=attempt
        ).update(**fields)
        if not owned:
            # The lease expired and another attempt took over (or the run was cancelled):
            # that attempt records; this result is dropped, never stored twice.
            logger.warning("attempt %s of step %s lost its lease", attempt, step_run.pk)
            return None
        for name, value in fields.items():
            setattr(step_run, name, value)
        payload: dict[str, Any] = {"run": run.pk, "step": step_run.step_id, "attempt": attempt}
        if isinstance(result, Completed):
            events.append(
                _event("step.completed", step_run, {**payload, "outcome": result.outcome}, now)
            )
            _advance(run, step_run, now, events)
        elif isinstance(result, Waiting):
            events.append(
                _event("step.waiting", step_run, {**payload, "reason": result.reason}, now)
            )
            run.status = Run.Status.WAITING
            run.updated_at = now
            run.save(update_fields=["status", "updated_at"])
        elif retry_at is not None:
            events.append(
                _event(
                    "step.retry_scheduled",
                    step_run,
                    {**payload, "error": result.error, "due_at": retry_at.isoformat()},
                    now,
                )
            )
        else:
            events.append(
                _event("step.failed", step_run, {**payload, "error": step_run.error}, now)
            )
            _fail_run(run, step_run, step_run.error, now, events)
        get_kind(step_run.kind).on_record(step_run=step_run, result=result, run=run)
        AuditEvent.objects.bulk_create(events)
    return step_run


def _event(verb: str, step_run: StepRun, payload: dict[str, Any], now: datetime) -> AuditEvent:
    return audit_event(
        actor=SYSTEM,
        verb=verb,
        object_type="step_run",
        object_id=step_run.pk,
        payload=payload,
        now=now,
    )


def _advance(run: Run, step_run: StepRun, now: datetime, events: list[AuditEvent]) -> None:
    """Make the next step due, or finish the run. The caller holds the run's lock."""
    definition = _definition(run)
    run.outcome = engine.run_outcome(run.outcome, step_run.outcome)
    decision = engine.after(definition, step_run.step_id, step_run.outcome)
    run.updated_at = now
    if isinstance(decision, engine.Next):
        run.status = Run.Status.RUNNING
        run.save(update_fields=["status", "outcome", "updated_at"])
        step_create(run=run, definition=definition, step_id=decision.step_id, now=now)
        return
    run.status = Run.Status.COMPLETED
    run.finished_at = now
    run.save(update_fields=["status", "outcome", "updated_at", "finished_at"])
    events.append(
        audit_event(
            actor=SYSTEM,
            verb="run.completed",
            object_type="run",
            object_id=run.pk,
            payload={"outcome": run.outcome},
            now=now,
        )
    )


def _fail_run(
    run: Run, step_run: StepRun, error: str, now: datetime, events: list[AuditEvent]
) -> None:
    run.status = Run.Status.FAILED
    run.error = f"step {step_run.step_id!r} failed: {error}"
    run.finished_at = now
    run.updated_at = now
    run.save(update_fields=["status", "error", "finished_at", "updated_at"])
    events.append(
        audit_event(
            actor=SYSTEM,
            verb="run.failed",
            object_type="run",
            object_id=run.pk,
            payload={"step": step_run.step_id, "error": error},
            now=now,
        )
    )


def steps_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Beat's safety net: re-send due steps whose message was lost, park exhausted ones.

    Covers a worker killed mid-step (lease expiry), a flushed Redis and a web process that
    died between commit and enqueue.
    """
    now = now or timezone.now()
    parked = _park_exhausted(Q(), now)
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


def step_retry(*, step_run: StepRun, actor: Actor, now: datetime | None = None) -> StepRun:
    """Send a FAILED step round again, with a fresh attempts budget, and reopen its run."""
    from workflows.errors import Conflict

    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
        updated = StepRun.objects.filter(pk=step_run.pk, status=StepRun.Status.FAILED).update(
            status=StepRun.Status.READY,
            attempts=0,
            due_at=now,
            enqueued_at=now,
            lease_expires_at=None,
            finished_at=None,
            error="",
        )
        if not updated or run.status != Run.Status.FAILED:
            raise Conflict(f"step {step_run.step_id!r} of run {run.pk} has not failed")
        run.status = Run.Status.RUNNING
        run.error = ""
        run.finished_at = None
        run.updated_at = now
        run.save(update_fields=["status", "error", "finished_at", "updated_at"])
        step_run.refresh_from_db()
        step_enqueue_on_commit(step_run)
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=actor,
                    verb="step.retried",
                    object_type="step_run",
                    object_id=step_run.pk,
                    payload={"run": run.pk, "step": step_run.step_id},
                    now=now,
                )
            ]
        )
    return step_run
