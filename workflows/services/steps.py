"""Executing steps: claim, commit, execute outside any transaction, record.

At-least-once delivery, effectively-once effects: a Celery message is only a nudge, the
conditional claim decides who runs a step, and a result is recorded only by the attempt
that still holds the lease.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import F, Field, Q
from django.utils import timezone

from workflows import engine
from workflows.canonical import canonical_json
from workflows.definitions import WorkflowDefinition
from workflows.errors import Conflict
from workflows.models import AuditEvent, Run, StepRun, WorkflowVersion
from workflows.services.audit import Actor, audit_event
from workflows.steps import get_kind
from workflows.steps.base import (
    Completed,
    Failed,
    Result,
    StepContext,
    StepKind,
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

    step_execute_task.apply_async_on_commit(
        args=(step_run.pk,), queue=get_kind(step_run.kind).queue
    )


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


# The claim, in one round trip. One conditional UPDATE decides the race (zero rows: someone
# else has the step); the same statement marks a pending run as running, audits the start,
# and returns what execution needs, including the outputs of the run's completed steps.
# The payload digest is the SHA-256 of the canonical JSON that `audit_event` would write.
_CLAIM_SQL = """
WITH run_locked AS (
    -- The run row first, as every transition of a run takes it (record, resume, cancel): a
    -- claim that locked the step and then a pending run could deadlock with a cancel. The
    -- step's UPDATE depends on it, so PostgreSQL takes this lock before the step's.
    SELECT id FROM workflows_run
    WHERE id = (SELECT run_id FROM workflows_steprun WHERE id = %(id)s)
    FOR UPDATE
),
claimed AS (
    UPDATE workflows_steprun
    SET status = 'running', attempts = attempts + 1, lease_expires_at = %(lease)s,
        started_at = COALESCE(started_at, %(now)s)
    WHERE id = %(id)s AND attempts < max_attempts
      AND run_id = (SELECT id FROM run_locked)
      AND ((status = 'ready' AND due_at <= %(now)s)
           OR (status = 'running' AND lease_expires_at <= %(now)s))
    RETURNING id, run_id, step_id, kind, position, attempts, max_attempts, meta,
              calls, input_tokens, output_tokens, cost_usd
),
run_started AS (
    UPDATE workflows_run SET status = 'running', updated_at = %(now)s
    WHERE id = (SELECT run_id FROM claimed) AND status = 'pending'
    RETURNING id
),
audited AS (
    INSERT INTO workflows_auditevent (created_at, actor_type, actor_id, actor_label, verb,
        object_type, object_id, payload, payload_sha256, prev_hash, hash)
    SELECT %(now)s, 'system', '', %(actor)s, 'step.started', 'step_run', c.id::text,
           p.text::jsonb, encode(sha256(convert_to(p.text, 'UTF8')), 'hex'), '', ''
    FROM claimed c, LATERAL (
        SELECT '{"attempt":' || c.attempts || ',"run":' || c.run_id
               || ',"step":' || to_json(c.step_id)::text || '}' AS text
    ) p
    RETURNING id
)
SELECT c.id, c.run_id, c.step_id, c.kind, c.position, c.attempts, c.max_attempts, c.meta,
       c.calls, c.input_tokens, c.output_tokens, c.cost_usd,
       r.status, r.outcome, r.input, r.version_id, r.workflow_id, w.slug,
       (SELECT COALESCE(json_agg(json_build_array(s.step_id, s.output, s.confidence, s.outcome)),
                        '[]')
        FROM workflows_steprun s WHERE s.run_id = c.run_id AND s.status = 'completed') AS earlier,
       (SELECT count(*) FROM audited) AS audited
FROM claimed c
JOIN workflows_run r ON r.id = c.run_id
JOIN workflows_workflow w ON w.id = r.workflow_id
"""


def step_execute(*, step_run_id: int, now: datetime | None = None) -> StepRun | None:
    """Run one step, if this caller wins the claim. Returns the recorded StepRun or None.

    `now` pins the clock for tests; by default the claim and the record each read it.
    """
    claimed = _claim(step_run_id, now or timezone.now())
    if claimed is None:
        return None
    step_run, earlier = claimed
    run = step_run.run
    kind = get_kind(step_run.kind)
    definition = version_definition(run.version_id)
    ctx = _context(step_run, definition, earlier, now or timezone.now())
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
        step_run=step_run, result=result, elapsed_ms=elapsed_ms, now=now or timezone.now()
    )


def _claim(step_run_id: int, now: datetime) -> tuple[StepRun, list[list[Any]]] | None:
    params: dict[str, Any] = {
        "id": step_run_id,
        "now": now,
        "lease": now + settings.HITL_STEP_LEASE,
        "actor": SYSTEM.label,
    }
    with _server_binding_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    if row is None:
        _park_exhausted(Q(pk=step_run_id), now)
        return None
    (
        pk,
        run_id,
        step_id,
        kind,
        position,
        attempts,
        max_attempts,
        meta,
        calls,
        input_tokens,
        output_tokens,
        cost_usd,
        run_status,
        outcome,
        run_input,
        version_id,
        workflow_id,
        slug,
        earlier,
        _,
    ) = row
    run = Run(
        id=run_id,
        status=run_status,
        outcome=outcome,
        input=_json(run_input),
        version_id=version_id,
        workflow_id=workflow_id,
    )
    run._workflow_slug = slug  # type: ignore[attr-defined]
    step_run = StepRun(
        id=pk,
        run=run,
        step_id=step_id,
        kind=kind,
        position=position,
        status=StepRun.Status.RUNNING,
        attempts=attempts,
        max_attempts=max_attempts,
        meta=_json(meta),
        calls=calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
    )
    if run_status in Run.FINISHED:
        # Unreachable through the services (cancelling a run cancels its open steps), but a
        # step of a finished run must never execute.
        StepRun.objects.filter(pk=pk).update(
            status=StepRun.Status.CANCELLED, lease_expires_at=None, finished_at=now
        )
        return None
    return step_run, _json(earlier)


@contextmanager
def _server_binding_cursor() -> Iterator[CursorWrapper]:
    """A cursor for the two statements every step runs: the claim and the fast record.

    It binds parameters server-side, unlike Django's own cursors, so that psycopg can prepare
    these statements once per connection when DATABASES' `prepare_threshold` option allows
    it: both are large, and parsing and planning them costs more than running them. Django's
    client-side cursors never prepare, so that option changes nothing else. Still wrapped by
    Django: errors are translated and queries logged and counted as for any other cursor.
    """
    # What connection.cursor() does before it makes its cursor.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    with wrapper(psycopg.Cursor(connection.connection), connection) as cursor:
        yield cursor


def _json(value: Any) -> Any:
    # Raw cursors return json/jsonb already decoded by psycopg; text only if cast as such.
    return json.loads(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=256)
def version_definition(version_id: int) -> WorkflowDefinition:
    """A version's parsed definition. Published versions never change, so caching is safe."""
    data = WorkflowVersion.objects.values_list("definition", flat=True).get(pk=version_id)
    return WorkflowDefinition.model_validate(data)


@functools.lru_cache(maxsize=1024)
def _step_config(version_id: int, step_id: str) -> Any:
    step = version_definition(version_id).step(step_id)
    return get_kind(step.kind).validate(step.config)


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
                events: list[AuditEvent] = []
                _fail_run(run, step_run, error, now, events)
                AuditEvent.objects.bulk_create(events)
                parked += 1
                logger.error("parked step %s of run %s: %s", step_run.step_id, run.pk, error)
    return parked


def _context(
    step_run: StepRun, definition: WorkflowDefinition, earlier: list[list[Any]], now: datetime
) -> StepContext:
    run = step_run.run
    return StepContext(
        run_id=run.pk,
        step_run_id=step_run.pk,
        workflow_id=run.workflow_id,
        workflow_slug=run._workflow_slug,  # type: ignore[attr-defined]
        version_id=run.version_id,
        step_id=step_run.step_id,
        attempt=step_run.attempts,
        config=_step_config(run.version_id, step_run.step_id),
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
    """Record an attempt's result in one short transaction, if the attempt still owns the step.

    The common case, a completed step of a kind with no `on_record` hook, is one SQL statement
    (`_record_completed`). Everything else takes the general path below, through the ORM, with
    the same effects and the same lock order.
    """
    kind = get_kind(step_run.kind)
    if isinstance(result, Completed) and type(kind).on_record is StepKind.on_record:
        return _record_completed(step_run, result, elapsed_ms, now)
    attempt = step_run.attempts
    events: list[AuditEvent] = []
    with transaction.atomic():
        # The run row serialises every transition of one run (resume, cancel, record).
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
        fields: dict[str, Any] = {
            "lease_expires_at": None,
            **_usage_fields(step_run, result.usage, elapsed_ms),
        }
        retry_at = None
        if isinstance(result, Completed):
            fields.update(_completed_fields(step_run, result, now))
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
        kind.on_record(step_run=step_run, result=result, run=run, now=now)
        AuditEvent.objects.bulk_create(events)
    return step_run


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


# step_record's fast path, in one round trip: what the general path does for a completed step
# (complete it if this attempt still owns it, advance or finish the run, write the next step,
# audit), as one statement, which is atomic on its own. Lock order is the general path's: the
# run row first (`run_locked`), then the step. The step's UPDATE depends on `run_locked`, so
# PostgreSQL takes the run's lock before it touches the step row; a cancel that got the run
# first has cancelled the step by the time we get the lock, and the UPDATE, re-checking the
# row's newest version, matches nothing: the result is dropped, as on the general path.
# Zero rows in `completed` (lost lease, cancelled run) means nothing else happens either,
# since every later part reads from it.
_RECORD_COMPLETED_SQL = """
WITH run_locked AS (
    SELECT id FROM workflows_run WHERE id = %(run)s FOR UPDATE
),
completed AS (
    UPDATE workflows_steprun
    SET status = 'completed', output = %(output)s, outcome = %(outcome)s,
        confidence = %(confidence)s, meta = %(meta)s, finished_at = %(now)s, error = '',
        lease_expires_at = NULL, latency_ms = %(latency_ms)s,
        -- NULL: the attempt reported no usage, so what earlier attempts spent stays.
        calls = COALESCE(%(calls)s, calls),
        input_tokens = COALESCE(%(input_tokens)s, input_tokens),
        output_tokens = COALESCE(%(output_tokens)s, output_tokens),
        cost_usd = COALESCE(%(cost_usd)s, cost_usd)
    WHERE id = %(id)s AND status = 'running' AND attempts = %(attempt)s
      AND run_id = (SELECT id FROM run_locked)
    RETURNING id, run_id
),
advanced AS (
    -- The new outcome is engine.run_outcome(locked outcome, step outcome), evaluated in Python
    -- for every value the locked row can hold (`outcomes`); the row's own value picks it.
    UPDATE workflows_run r
    SET status = %(run_status)s, outcome = (%(outcomes)s::jsonb ->> r.outcome),
        updated_at = %(now)s, finished_at = COALESCE(%(run_finished_at)s, r.finished_at)
    FROM completed c
    WHERE r.id = c.run_id
    RETURNING r.id, r.outcome
),
next_step AS (
    -- Every column, valued from the unsaved model `_new_step` builds, defaults included.
    INSERT INTO workflows_steprun (run_id, step_id, kind, position, status, attempts,
        max_attempts, due_at, enqueued_at, lease_expires_at, started_at, finished_at, output,
        outcome, confidence, meta, calls, input_tokens, output_tokens, cost_usd, latency_ms,
        error, created_at)
    SELECT c.run_id, %(next_step_id)s, %(next_kind)s, %(next_position)s, %(next_status)s,
        %(next_attempts)s, %(next_max_attempts)s, %(next_due_at)s, %(next_enqueued_at)s,
        %(next_lease_expires_at)s, %(next_started_at)s, %(next_finished_at)s,
        %(next_output)s, %(next_outcome)s, %(next_confidence)s, %(next_meta)s,
        %(next_calls)s, %(next_input_tokens)s, %(next_output_tokens)s, %(next_cost_usd)s,
        %(next_latency_ms)s, %(next_error)s, %(next_created_at)s
    FROM completed c
    WHERE %(advances)s
    RETURNING id
),
audited AS (
    -- step.completed as `audit_event` built it; run.completed when the run finishes, its
    -- payload digest the SHA-256 of the canonical JSON `audit_event` would write (as in the
    -- claim). ORDER BY gives the ids in the order bulk_create would.
    INSERT INTO workflows_auditevent (created_at, actor_type, actor_id, actor_label, verb,
        object_type, object_id, payload, payload_sha256, prev_hash, hash)
    SELECT %(now)s, %(actor_type)s, %(actor_id)s, %(actor_label)s, e.verb, e.object_type,
           e.object_id, e.payload::jsonb, e.payload_sha256, '', ''
    FROM (
        SELECT 1, 'step.completed', 'step_run', c.id::text, %(payload)s, %(payload_sha256)s
        FROM completed c
        UNION ALL
        SELECT 2, 'run.completed', 'run', a.id::text, p.text,
               encode(sha256(convert_to(p.text, 'UTF8')), 'hex')
        FROM advanced a,
             LATERAL (SELECT '{"outcome":' || to_json(a.outcome)::text || '}' AS text) p
        WHERE NOT %(advances)s
    ) e (ord, verb, object_type, object_id, payload, payload_sha256)
    ORDER BY e.ord
    RETURNING id
)
SELECT (SELECT count(*) FROM completed), (SELECT id FROM next_step), (SELECT count(*) FROM audited)
"""


def _record_completed(
    step_run: StepRun, result: Completed, elapsed_ms: int, now: datetime
) -> StepRun | None:
    """step_record for a Completed result of a kind with no `on_record` hook."""
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
    event = _event(
        "step.completed",
        step_run,
        {"run": run.pk, "step": step_run.step_id, "attempt": attempt, "outcome": result.outcome},
        now,
    )
    current = {"", *Run.Outcome.values, run.outcome}
    params: dict[str, Any] = {
        "id": step_run.pk,
        "attempt": attempt,
        "run": run.pk,
        "now": now,
        **{
            name: _db_value(name, fields.get(name))
            for name in (
                "output",
                "outcome",
                "confidence",
                "meta",
                "latency_ms",
                "calls",
                "input_tokens",
                "output_tokens",
                "cost_usd",
            )
        },
        "run_status": Run.Status.RUNNING if next_step else Run.Status.COMPLETED,
        "run_finished_at": None if next_step else now,
        "outcomes": json.dumps({o: engine.run_outcome(o, result.outcome) for o in current}),
        "advances": next_step is not None,
        **{
            f"next_{field.attname}": (
                field.get_db_prep_save(getattr(next_step, field.attname), connection)
                if next_step
                else None
            )
            for field in StepRun._meta.concrete_fields
            if not field.primary_key and field.attname != "run_id"
        },
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "payload": canonical_json(event.payload),
        "payload_sha256": event.payload_sha256,
    }
    # A single statement commits on its own; inside a caller's transaction, the savepoint
    # keeps a failure from breaking it, as the general path's atomic() does.
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        with _server_binding_cursor() as cursor:
            cursor.execute(_RECORD_COMPLETED_SQL, params)
            recorded, next_id, _ = cursor.fetchone()
        if not recorded:
            logger.warning("attempt %s of step %s lost its lease", attempt, step_run.pk)
            return None
        if next_step is not None:
            next_step.pk = next_id
            step_enqueue_on_commit(next_step)
    for name, value in fields.items():
        setattr(step_run, name, value)
    return step_run


def _db_value(name: str, value: Any) -> Any:
    """`value` as the ORM would send it for StepRun's field `name` (JSON encoder, decimals)."""
    field = StepRun._meta.get_field(name)
    assert isinstance(field, Field)
    return field.get_db_prep_save(value, connection)


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
    definition = version_definition(run.version_id)
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
