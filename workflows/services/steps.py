"""Executing steps: claim, commit, execute outside any transaction, record.

At-least-once delivery, effectively-once effects: a Celery message is only a nudge, the
conditional claim decides who runs a step, and a result is recorded only by the attempt
that still holds the lease. The claim and the record of a completed step are the hot path,
in SQL (`workflows.services.fastpath`); everything else here is the ORM path.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from workflows import engine, instruments, logs
from workflows.definitions import WorkflowDefinition
from workflows.errors import Conflict
from workflows.models import Event, Run, StepRun
from workflows.services import fastpath
from workflows.services.alerts import alert_raise
from workflows.services.audit import Actor, audit_record
from workflows.services.callbacks import run_event
from workflows.services.hooks import HOOKS
from workflows.steps import get_kind
from workflows.steps.base import Completed, Failed, Result, StepContext, Usage, Waiting
from workflows.versions import step_config, version_definition

logger = logging.getLogger(__name__)
_rng = random.SystemRandom()
SYSTEM = Actor.system()
# The Celery task that executes a step (`workflows.tasks`), sent by name: the services never
# import the tasks module, which imports them.
STEP_EXECUTE_TASK = "hitl.step_execute"


def step_enqueue_on_commit(step_run: StepRun) -> None:
    """Nudge a worker once the transaction that made the step due has committed."""
    args = (step_run.pk,)
    queue = get_kind(step_run.kind).queue
    transaction.on_commit(lambda: current_app.send_task(STEP_EXECUTE_TASK, args=args, queue=queue))


def step_create(
    *, run: Run, definition: WorkflowDefinition, step_id: str, now: datetime
) -> StepRun:
    """Write a READY step in the caller's transaction and enqueue it on commit."""
    step_run = _new_step(run, definition, step_id, now)
    step_run.save(force_insert=True)
    step_enqueue_on_commit(step_run)
    return step_run


def _new_step(run: Run, definition: WorkflowDefinition, step_id: str, now: datetime) -> StepRun:
    """The unsaved READY row of a step that is due now; the model supplies every default."""
    step = definition.step(step_id)
    return StepRun(
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


def step_execute(*, step_run_id: int, now: datetime | None = None) -> StepRun | None:
    """Run one step, if this caller wins the claim. Returns the recorded StepRun or None.

    `now` pins the clock for tests; by default the claim and the record each read it.
    """
    claim_at = now or timezone.now()
    claimed = fastpath.claim(
        step_run_id=step_run_id,
        now=claim_at,
        lease=claim_at + settings.HITL_STEP_LEASE,
        actor=SYSTEM,
    )
    if claimed is None:
        steps_park_exhausted(where=Q(pk=step_run_id), now=claim_at)
        return None
    step_run = claimed.step_run()
    if claimed.run_status in Run.FINISHED:
        # Unreachable through the services (cancelling a run cancels its open steps), but a
        # step of a finished run must never execute.
        StepRun.objects.filter(pk=claimed.step_run_id).update(
            status=StepRun.Status.CANCELLED, lease_expires_at=None, finished_at=claim_at
        )
        return None
    kind = get_kind(claimed.kind)
    ctx = StepContext(
        run_id=claimed.run_id,
        step_run_id=claimed.step_run_id,
        workflow_id=claimed.workflow_id,
        workflow_slug=claimed.workflow_slug,
        version_id=claimed.version_id,
        step_id=claimed.step_id,
        attempt=claimed.attempt,
        config=step_config(claimed.version_id, claimed.step_id),
        input=claimed.run_input,
        steps=claimed.earlier,
        now=now or timezone.now(),
        hooks=HOOKS,
    )
    # Every line logged from here on names the run and step (workflows/logs.py).
    with logs.bound(run_id=claimed.run_id, step_id=claimed.step_id):
        started = time.monotonic()
        # Outside any transaction: a model or HTTP call must never hold a database lock.
        try:
            result = kind.execute(ctx)
        except SoftTimeLimitExceeded:
            result = Failed("the step exceeded its time limit", retryable=True)
        except Exception as exc:
            logger.exception("step %s of run %s raised", claimed.step_id, claimed.run_id)
            result = Failed(f"{type(exc).__name__}: {exc}", retryable=False)
        elapsed = time.monotonic() - started
        instruments.step_observed(kind=claimed.kind, result=result, seconds=elapsed)
        return step_record(
            step_run=step_run,
            result=result,
            elapsed_ms=int(elapsed * 1000),
            now=now or timezone.now(),
        )


def steps_park_exhausted(*, where: Q | None = None, now: datetime) -> int:
    """Fail steps that lost their worker on every allowed attempt, instead of looping."""
    parked = 0
    candidates = StepRun.objects.filter(
        where or Q(),
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
                run_fail(run=run, step_run=step_run, error=error, now=now)
                parked += 1
                alert_raise(
                    kind="step_parked",
                    message=f"parked step {step_run.step_id} of run {run.pk}: {error}",
                    workflow=run.workflow,
                    details={"run": run.pk, "step": step_run.step_id, "attempts": attempts},
                    now=now,
                )
    return parked


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
    """Record an attempt's result in one short transaction, if the attempt still owns the step.

    The common case, a completed step of a kind without a record hook, is one SQL statement
    (`_record_completed`), unless it finishes a run whose workflow reports `run.completed`.
    Everything else takes the ORM path below, with the same effects and the same lock order.
    """
    kind = get_kind(step_run.kind)
    if isinstance(result, Completed) and not kind.record_hook:
        handled, recorded = _record_completed(step_run, result, elapsed_ms, now)
        if handled:
            return recorded
    attempt = step_run.attempts
    with transaction.atomic():
        # The run row serialises every transition of one run (resume, cancel, record).
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
        fields: dict[str, Any] = {
            "lease_expires_at": None,
            **_usage_fields(step_run, result.usage, elapsed_ms),
            **_result_fields(step_run, result, now),
        }
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
            _audit_step("step.completed", step_run, {**payload, "outcome": result.outcome}, now)
            run_advance(run=run, step_run=step_run, now=now)
        elif isinstance(result, Waiting):
            _audit_step("step.waiting", step_run, {**payload, "reason": result.reason}, now)
            run.status = Run.Status.WAITING
            run.updated_at = now
            run.save(update_fields=["status", "updated_at"])
        elif step_run.status == StepRun.Status.READY:
            assert step_run.due_at is not None
            due = {"error": result.error, "due_at": step_run.due_at.isoformat()}
            _audit_step("step.retry_scheduled", step_run, {**payload, **due}, now)
        else:
            _audit_step("step.failed", step_run, {**payload, "error": step_run.error}, now)
            run_fail(run=run, step_run=step_run, error=step_run.error, now=now)
        if kind.record_hook:
            kind.on_record(step_run=step_run, result=result, run=run, now=now, hooks=HOOKS)
    return step_run


def _result_fields(step_run: StepRun, result: Result, now: datetime) -> dict[str, Any]:
    """The StepRun columns a result sets (besides usage and the released lease)."""
    if isinstance(result, Completed):
        return _completed_fields(step_run, result, now)
    if isinstance(result, Waiting):
        return {
            "status": StepRun.Status.WAITING,
            "output": result.output,
            "confidence": result.confidence,
            "meta": {**step_run.meta, **result.meta, "waiting_for": result.reason},
        }
    meta = {**step_run.meta, **result.meta}
    attempt = step_run.attempts
    if result.retryable and attempt < step_run.max_attempts:
        delay = engine.retry_delay(
            attempt,
            base=settings.HITL_RETRY_BACKOFF_BASE,
            cap=settings.HITL_RETRY_BACKOFF_MAX,
            rng=_rng,
        )
        # No countdown in Redis: the sweeper enqueues the step once due_at has passed.
        return {
            "status": StepRun.Status.READY,
            "due_at": now + delay,
            "enqueued_at": None,
            "error": result.error,
            "meta": meta,
        }
    error = result.error
    if result.retryable:
        error = f"gave up after {attempt} attempts: {error}"
    return {"status": StepRun.Status.FAILED, "error": error, "finished_at": now, "meta": meta}


def _completed_fields(step_run: StepRun, result: Completed, now: datetime) -> dict[str, Any]:
    return {
        "status": StepRun.Status.COMPLETED,
        "output": result.output,
        "outcome": result.outcome,
        "confidence": result.confidence,
        "meta": {**step_run.meta, **result.meta},
        "finished_at": now,
        "error": "",
    }


def _record_completed(
    step_run: StepRun, result: Completed, elapsed_ms: int, now: datetime
) -> tuple[bool, StepRun | None]:
    """step_record for a Completed result of a kind without a record hook: one statement.

    (False, None) when it finishes a run whose workflow reports `run.completed`: nothing was
    written, and the ORM path records it with its callbacks.
    """
    run = step_run.run
    attempt = step_run.attempts
    definition = version_definition(run.version_id)
    # Pure: depends on the definition (pinned) and the step's outcome, not on the run's row.
    decision = engine.after(definition, step_run.step_id, result.outcome)
    next_step = (
        _new_step(run, definition, decision.step_id, now)
        if isinstance(decision, engine.Next)
        else None
    )
    fields: dict[str, Any] = {
        "lease_expires_at": None,
        **_usage_fields(step_run, result.usage, elapsed_ms),
        **_completed_fields(step_run, result, now),
    }
    record = fastpath.CompletedRecord(
        step_run_id=step_run.pk,
        attempt=attempt,
        run_id=run.pk,
        workflow_id=run.workflow_id,
        fields=fields,
        outcomes={
            current: engine.run_outcome(current, result.outcome)
            for current in {"", *Run.Outcome.values, run.outcome}
        },
        next_step=next_step,
        actor=SYSTEM,
        payload={
            "run": run.pk,
            "step": step_run.step_id,
            "attempt": attempt,
            "outcome": result.outcome,
        },
        now=now,
    )
    # A single statement commits on its own; inside a caller's transaction, the savepoint
    # keeps a failure from breaking it, as the ORM path's atomic() does.
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        done = fastpath.record_completed(record)
        if done.subscribed:
            return False, None
        if not done.recorded:
            logger.warning("attempt %s of step %s lost its lease", attempt, step_run.pk)
            return True, None
        if next_step is not None:
            next_step.pk = done.next_step_id
            step_enqueue_on_commit(next_step)
    for name, value in fields.items():
        setattr(step_run, name, value)
    return True, step_run


def _audit_step(verb: str, step_run: StepRun, payload: dict[str, Any], now: datetime) -> None:
    audit_record(actor=SYSTEM, verb=verb, target=step_run, payload=payload)


def run_advance(*, run: Run, step_run: StepRun, now: datetime) -> Run:
    """Make the run's next step due after `step_run` completed, or finish the run.

    The caller holds the run's row lock and has saved `step_run` as completed.
    """
    definition = version_definition(run.version_id)
    run.outcome = engine.run_outcome(run.outcome, step_run.outcome)
    decision = engine.after(definition, step_run.step_id, step_run.outcome)
    run.updated_at = now
    if isinstance(decision, engine.Next):
        run.status = Run.Status.RUNNING
        run.save(update_fields=["status", "outcome", "updated_at"])
        step_create(run=run, definition=definition, step_id=decision.step_id, now=now)
        return run
    run.status = Run.Status.COMPLETED
    run.finished_at = now
    run.save(update_fields=["status", "outcome", "updated_at", "finished_at"])
    audit_record(actor=SYSTEM, verb="run.completed", target=run, payload={"outcome": run.outcome})
    run_event(run=run, event=Event.RUN_COMPLETED, output=step_run.output, now=now)
    return run


def run_fail(*, run: Run, step_run: StepRun, error: str, now: datetime) -> Run:
    """Fail the run because `step_run` failed for good. The caller holds the run's lock."""
    run.status = Run.Status.FAILED
    run.error = f"step {step_run.step_id!r} failed: {error}"
    run.finished_at = now
    run.updated_at = now
    run.save(update_fields=["status", "error", "finished_at", "updated_at"])
    audit_record(
        actor=SYSTEM,
        verb="run.failed",
        target=run,
        payload={"step": step_run.step_id, "error": error},
    )
    run_event(run=run, event=Event.RUN_FAILED, output=None, now=now)
    return run


def run_drive(*, run: Run, now: datetime | None = None, limit: int = 100) -> Run:
    """Execute a run's due steps in this process until none is left.

    For seeding, the CLI and tests: the same claim/record path as a worker, with no broker.
    """
    for _ in range(limit):
        due = StepRun.objects.filter(
            run=run, status=StepRun.Status.READY, due_at__lte=now or timezone.now()
        ).first()
        if due is None:
            break
        step_execute(step_run_id=due.pk, now=now)
    run.refresh_from_db()
    return run


def step_retry(*, step_run: StepRun, actor: Actor, now: datetime | None = None) -> StepRun:
    """Send a FAILED step round again, with a fresh attempts budget, and reopen its run."""
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
        audit_record(
            actor=actor,
            verb="step.retried",
            target=step_run,
            payload={"run": run.pk, "step": step_run.step_id},
        )
    return step_run
