"""The engine's hot path in SQL: claiming a step, and recording a completed one.

Every step runs these two statements, so each is one round trip (plus a primary-key read
before the claim), prepared once per connection where the settings allow it. They do
exactly what the ORM path in `workflows.services.steps` does, with the same lock order (the
run row first, then the step); `tests/test_engine_fastpath.py` holds the two paths to the
same rows and audit events. Audit payloads are built in Python with the one canonical JSON
function and passed as parameters, so their digests are the ones `audit_event` computes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field

from workflows.canonical import canonical_json, sha256_hex
from workflows.models import Run, StepRun
from workflows.services.audit import Actor
from workflows.steps.base import StepView


@dataclass(frozen=True)
class ClaimedStep:
    """What a won claim returns: the step as claimed, its run, and the earlier steps' results."""

    step_run_id: int
    run_id: int
    step_id: str
    kind: str
    position: int
    attempt: int
    max_attempts: int
    meta: dict[str, Any]
    # What earlier attempts spent; a retried AI call was still paid for.
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    run_status: str
    run_outcome: str
    run_input: Any
    version_id: int
    workflow_id: int
    workflow_slug: str
    earlier: dict[str, StepView]

    def step_run(self) -> StepRun:
        """The claimed step as an unsaved model, with its run, for the record's ORM path."""
        run = Run(
            id=self.run_id,
            status=self.run_status,
            outcome=self.run_outcome,
            input=self.run_input,
            version_id=self.version_id,
            workflow_id=self.workflow_id,
        )
        return StepRun(
            id=self.step_run_id,
            run=run,
            step_id=self.step_id,
            kind=self.kind,
            position=self.position,
            status=StepRun.Status.RUNNING,
            attempts=self.attempt,
            max_attempts=self.max_attempts,
            meta=self.meta,
            calls=self.calls,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
        )


@dataclass(frozen=True)
class StepRef:
    """A step as read before its claim: enough to build the claim's audit event in Python."""

    run_id: int
    step_id: str
    attempts: int


_STEP_REF_SQL = "SELECT run_id, step_id, attempts FROM workflows_steprun WHERE id = %(id)s"

# The claim, in one round trip. One conditional UPDATE decides the race (zero rows: someone
# else has the step, or it changed since it was read); the same statement marks a pending run
# as running, audits the start, and returns what execution needs, including the outputs of
# the run's completed steps. `attempts = %(attempts)s` makes the claim a compare-and-set on
# the attempt number the audit payload names.
CLAIM_SQL = """
WITH run_locked AS (
    -- The run row first, as every transition of a run takes it (record, resume, cancel): a
    -- claim that locked the step and then a pending run could deadlock with a cancel. The
    -- step's UPDATE depends on it, so PostgreSQL takes this lock before the step's.
    SELECT id FROM workflows_run WHERE id = %(run)s FOR UPDATE
),
claimed AS (
    UPDATE workflows_steprun
    SET status = 'running', attempts = attempts + 1, lease_expires_at = %(lease)s,
        started_at = COALESCE(started_at, %(now)s)
    WHERE id = %(id)s AND attempts = %(attempts)s AND attempts < max_attempts
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
    INSERT INTO workflows_auditevent (actor_type, actor_id, actor_label, verb,
        object_type, object_id, payload, payload_sha256, prev_hash, hash)
    SELECT %(actor_type)s, %(actor_id)s, %(actor_label)s, 'step.started', 'step_run',
           c.id::text, %(payload)s::jsonb, %(payload_sha256)s, '', ''
    FROM claimed c
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


def claim(*, step_run_id: int, now: datetime, lease: datetime, actor: Actor) -> ClaimedStep | None:
    """Claim a due step (READY and due, or RUNNING with an expired lease) for one attempt.

    None: the step does not exist, is not due, is held by a live lease, has no attempts
    left, or changed between the read and the claim. Whoever won it executes it.
    """
    with server_binding_cursor() as cursor:
        cursor.execute(_STEP_REF_SQL, {"id": step_run_id})
        found = cursor.fetchone()
        if found is None:
            return None
        ref = StepRef(*found)
        payload = canonical_json(
            {"attempt": ref.attempts + 1, "run": ref.run_id, "step": ref.step_id}
        )
        cursor.execute(
            CLAIM_SQL,
            {
                "id": step_run_id,
                "run": ref.run_id,
                "attempts": ref.attempts,
                "now": now,
                "lease": lease,
                "actor_type": actor.type,
                "actor_id": actor.id,
                "actor_label": actor.label,
                "payload": payload,
                "payload_sha256": sha256_hex(payload),
            },
        )
        row = cursor.fetchone()
    if row is None:
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
        run_outcome,
        run_input,
        version_id,
        workflow_id,
        slug,
        earlier,
        _audited,
    ) = row
    return ClaimedStep(
        step_run_id=pk,
        run_id=run_id,
        step_id=step_id,
        kind=kind,
        position=position,
        attempt=attempts,
        max_attempts=max_attempts,
        meta=_json(meta),
        calls=calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
        run_status=run_status,
        run_outcome=run_outcome,
        run_input=_json(run_input),
        version_id=version_id,
        workflow_id=workflow_id,
        workflow_slug=slug,
        earlier={
            sid: StepView(output, confidence, outcome)
            for sid, output, confidence, outcome in _json(earlier)
        },
    )


# The record of a completed step, in one round trip: what the ORM path does for a completed
# step (complete it if this attempt still owns it, advance or finish the run, write the next
# step, audit), as one statement, which is atomic on its own. Lock order is the ORM path's:
# the run row first (`run_locked`), then the step. The step's UPDATE depends on `run_locked`,
# so PostgreSQL takes the run's lock before it touches the step row; a cancel that got the
# run first has cancelled the step by the time we get the lock, and the UPDATE, re-checking
# the row's newest version, matches nothing: the result is dropped, as on the ORM path.
# Zero rows in `completed` (lost lease, cancelled run) means nothing else happens either,
# since every later part reads from it.
#
# Callbacks: a run that finishes here reports `run.completed` to the workflow's endpoints, and
# their outbox rows must commit with it. The statement does not write them; instead, when it
# would finish the run and an active endpoint of the workflow subscribes to `run.completed`
# (`subscribed`, an index probe made only for a run's last step), it changes nothing and says
# so, and the caller records the step through the ORM path, which writes the outbox rows.
RECORD_COMPLETED_SQL = """
WITH run_locked AS (
    SELECT id FROM workflows_run WHERE id = %(run)s FOR UPDATE
),
subscribed AS (
    SELECT EXISTS (
        SELECT 1 FROM workflows_endpoint e
        WHERE NOT %(advances)s AND e.workflow_id = %(workflow)s AND e.active
          AND e.event_types @> '["run.completed"]'::jsonb
    ) AS found
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
      AND run_id = (SELECT id FROM run_locked) AND NOT (SELECT found FROM subscribed)
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
    -- Every column, valued from the unsaved model the caller built, defaults included.
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
    -- step.completed, and run.completed when the run finishes; each payload and digest as
    -- `audit_event` builds them, the run's picked by its new outcome (`run_completed`).
    -- ORDER BY gives the ids in the order the ORM path writes them.
    INSERT INTO workflows_auditevent (actor_type, actor_id, actor_label, verb,
        object_type, object_id, payload, payload_sha256, prev_hash, hash)
    SELECT %(actor_type)s, %(actor_id)s, %(actor_label)s, e.verb, e.object_type,
           e.object_id, e.payload::jsonb, e.payload_sha256, '', ''
    FROM (
        SELECT 1, 'step.completed', 'step_run', c.id::text, %(payload)s, %(payload_sha256)s
        FROM completed c
        UNION ALL
        SELECT 2, 'run.completed', 'run', a.id::text,
               %(run_completed)s::jsonb -> a.outcome ->> 0,
               %(run_completed)s::jsonb -> a.outcome ->> 1
        FROM advanced a
        WHERE NOT %(advances)s
    ) e (ord, verb, object_type, object_id, payload, payload_sha256)
    ORDER BY e.ord
    RETURNING id
)
SELECT (SELECT count(*) FROM completed), (SELECT id FROM next_step), (SELECT count(*) FROM audited),
       (SELECT found FROM subscribed)
"""

# The StepRun columns the record sets, in the statement's parameter names.
RECORDED_FIELDS = (
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


@dataclass(frozen=True)
class CompletedRecord:
    """Everything the one-statement record needs, decided in Python beforehand."""

    step_run_id: int
    attempt: int
    run_id: int
    workflow_id: int
    # StepRun fields as the ORM path would save them (RECORDED_FIELDS; usage may be None).
    fields: dict[str, Any]
    # The run's new outcome for each outcome its locked row may hold.
    outcomes: dict[str, str]
    # The next step's unsaved row, or None when the run finishes.
    next_step: StepRun | None
    actor: Actor
    payload: dict[str, Any]
    now: datetime


@dataclass(frozen=True)
class Recorded:
    # Whether the statement recorded the step (False: a lost lease, or `subscribed`).
    recorded: bool
    next_step_id: int | None
    # The run would have finished and the workflow reports `run.completed`: nothing was
    # written, and the caller records through the ORM path.
    subscribed: bool


def record_completed(record: CompletedRecord) -> Recorded:
    """Run the statement."""
    next_step = record.next_step
    params: dict[str, Any] = {
        "id": record.step_run_id,
        "attempt": record.attempt,
        "run": record.run_id,
        "workflow": record.workflow_id,
        "now": record.now,
        **{name: _db_value(name, record.fields.get(name)) for name in RECORDED_FIELDS},
        "run_status": Run.Status.RUNNING if next_step else Run.Status.COMPLETED,
        "run_finished_at": None if next_step else record.now,
        "outcomes": json.dumps(record.outcomes),
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
        "actor_type": record.actor.type,
        "actor_id": record.actor.id,
        "actor_label": record.actor.label,
        "payload": canonical_json(record.payload),
        "payload_sha256": sha256_hex(canonical_json(record.payload)),
        "run_completed": json.dumps(
            {
                outcome: [text, sha256_hex(text)]
                for outcome in set(record.outcomes.values())
                for text in [canonical_json({"outcome": outcome})]
            }
        ),
    }
    with server_binding_cursor() as cursor:
        cursor.execute(RECORD_COMPLETED_SQL, params)
        recorded, next_id, _audited, subscribed = cursor.fetchone()
    return Recorded(bool(recorded), next_id, bool(subscribed))


@contextmanager
def server_binding_cursor() -> Iterator[CursorWrapper]:
    """A cursor for the statements every step runs: the claim and the fast record.

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


def _db_value(name: str, value: Any) -> Any:
    """`value` as the ORM would send it for StepRun's field `name` (JSON encoder, decimals)."""
    field = StepRun._meta.get_field(name)
    assert isinstance(field, Field)
    return field.get_db_prep_save(value, connection)
