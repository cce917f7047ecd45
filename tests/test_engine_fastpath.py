"""The record's fast path (one SQL statement) against the general path, and its races.

A completed step of a kind without an `on_record` hook is recorded by one statement; every
other result goes through the ORM. These tests pin that both write the same rows and audit
events, that the statement locks the run before the step (the order every other transition
of a run uses), and that a lost lease or a cancel drops the result, with real threads on
PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from workflows import services
from workflows.canonical import canonical_json, sha256_hex
from workflows.models import AuditEvent, Run, StepRun
from workflows.services import fastpath, steps
from workflows.steps.base import Completed, Usage
from workflows.steps.transform import TransformKind

pytestmark = pytest.mark.django_db

# Runs start an hour ahead, so a worker left running by the integration tests, which shares
# the test database and the broker, finds every step not yet due and leaves it to the test.
LATER = timezone.now() + timedelta(hours=1)


@pytest.fixture
def general_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Send transform steps down the general path, as a kind with an on_record hook goes."""

    def use() -> None:
        monkeypatch.setattr(TransformKind, "on_record", lambda self, **kwargs: None)
        monkeypatch.setattr(TransformKind, "record_hook", True)

    return use


def claim(step_run: StepRun, now: datetime) -> StepRun:
    claimed = fastpath.claim(
        step_run_id=step_run.pk, now=now, lease=now + timedelta(minutes=5), actor=steps.SYSTEM
    )
    assert claimed is not None
    return claimed.step_run()


def first_step(run: Run) -> StepRun:
    return StepRun.objects.get(run=run, position=0)


def snapshot(run: Run) -> dict[str, Any]:
    """What a run's record wrote, with ids replaced so two runs can be compared."""
    run.refresh_from_db()
    step_ids = dict(StepRun.objects.filter(run=run).values_list("pk", "step_id"))
    rows = StepRun.objects.filter(run=run).order_by("position").values()
    events = []
    for event in AuditEvent.objects.order_by("id"):
        if event.object_type == "run" and event.object_id == str(run.pk):
            subject = "run"
        elif event.object_type == "step_run" and int(event.object_id) in step_ids:
            subject = step_ids[int(event.object_id)]
        else:
            continue
        # The digest is the one audit_event computes, whichever path wrote the event.
        assert event.payload_sha256 == sha256_hex(canonical_json(event.payload))
        payload = {k: ("<run>" if k == "run" else v) for k, v in event.payload.items()}
        # Not created_at: the database dates every event (its clock, not `now`), so two runs
        # differ there; both paths leave it to the database alike.
        events.append((event.actor_type, event.actor_label, event.verb, subject, payload))
    return {
        "run": {k: v for k, v in Run.objects.filter(pk=run.pk).values()[0].items() if k != "id"},
        "steps": [{k: v for k, v in row.items() if k not in ("id", "run_id")} for row in rows],
        "events": events,
    }


def both_ways(
    general_path: Callable[[], None], once: Callable[[], Run]
) -> tuple[dict[str, Any], dict[str, Any]]:
    fast = snapshot(once())
    general_path()
    return fast, snapshot(once())


@pytest.mark.parametrize("amount", [70, 10], ids=["completes", "rejected-early"])
def test_both_paths_write_the_same_rows_and_events_for_a_whole_run(
    transform_workflow: Any, system: Any, general_path: Callable[[], None], amount: int
) -> None:
    def once() -> Run:
        run = services.run_start(
            workflow=transform_workflow, input={"amount": amount}, actor=system, now=LATER
        )
        return services.run_drive(run=run, now=LATER)

    fast, general = both_ways(general_path, once)
    # latency_ms is measured wall time here: two runs may differ by a millisecond.
    for snap in (fast, general):
        for step in snap["steps"]:
            step.pop("latency_ms")
    assert fast == general
    assert fast["run"]["status"] == Run.Status.COMPLETED
    assert fast["run"]["outcome"] == ("approved" if amount == 70 else "rejected")
    services.audit_seal()
    assert services.audit_verify().ok


def test_both_paths_store_usage_meta_and_encoded_output_alike(
    transform_workflow: Any, system: Any, general_path: Callable[[], None]
) -> None:
    result = Completed(
        output={"amount": Decimal("1.10"), "at": LATER, "nested": [1, None, "é"]},
        outcome="approved",
        confidence=0.25,
        meta={"votes": {"a": 2}},
        usage=Usage(calls=2, input_tokens=30, output_tokens=7, cost_usd=Decimal("0.0012")),
    )

    def once() -> Run:
        run = services.run_start(
            workflow=transform_workflow, input={"amount": 1}, actor=system, now=LATER
        )
        step_run = claim(first_step(run), LATER)
        step_run.meta = {"kept": True}
        assert steps.step_record(step_run=step_run, result=result, elapsed_ms=9, now=LATER)
        return run

    fast, general = both_ways(general_path, once)
    assert fast == general
    first = fast["steps"][0]
    at = DjangoJSONEncoder().default(LATER)
    assert first["output"] == {"amount": "1.10", "at": at, "nested": [1, None, "é"]}
    assert first["meta"] == {"kept": True, "votes": {"a": 2}}
    assert (first["calls"], first["cost_usd"], first["latency_ms"]) == (2, Decimal("0.0012"), 9)
    assert fast["run"]["outcome"] == "approved"
    assert [s["status"] for s in fast["steps"]] == [StepRun.Status.COMPLETED, StepRun.Status.READY]


def test_the_fast_path_returns_the_recorded_step(transform_workflow: Any, system: Any) -> None:
    run = services.run_start(workflow=transform_workflow, input={"amount": 1}, actor=system)
    step_run = claim(first_step(run), LATER)
    recorded = steps.step_record(
        step_run=step_run, result=Completed(output={"v": 2}), elapsed_ms=3, now=LATER
    )
    assert recorded is step_run
    stored = StepRun.objects.get(pk=step_run.pk)
    for name in ("status", "output", "outcome", "confidence", "meta", "finished_at", "error"):
        assert getattr(recorded, name) == getattr(stored, name), name
    assert recorded.lease_expires_at is None and recorded.latency_ms == 3


def test_the_fast_insert_names_every_steprun_column() -> None:
    insert = fastpath.RECORD_COMPLETED_SQL.split("INSERT INTO workflows_steprun (")[1]
    columns = {c.strip() for c in insert.split(")")[0].split(",")}
    assert columns == {f.column for f in StepRun._meta.concrete_fields if not f.primary_key}


def test_a_failed_fast_record_leaves_the_callers_transaction_usable(
    transform_workflow: Any, system: Any
) -> None:
    run = services.run_start(workflow=transform_workflow, input={"amount": 1}, actor=system)
    step_run = claim(first_step(run), LATER)
    # The next step's row already exists: the statement fails as a whole.
    StepRun.objects.create(run=run, step_id="label", kind="transform", position=1)
    with pytest.raises(IntegrityError):
        steps.step_record(step_run=step_run, result=Completed(output={}), elapsed_ms=0, now=LATER)
    stored = StepRun.objects.get(pk=step_run.pk)
    assert (stored.status, stored.attempts) == (StepRun.Status.RUNNING, 1)
    assert not AuditEvent.objects.filter(verb="step.completed").exists()


def test_a_late_attempt_is_dropped_after_the_owner_recorded(
    transform_workflow: Any, system: Any, settings: Any
) -> None:
    run = services.run_start(workflow=transform_workflow, input={"amount": 1}, actor=system)
    first = claim(first_step(run), LATER)
    second = claim(first_step(run), LATER + settings.HITL_STEP_LEASE + timedelta(seconds=1))
    assert steps.step_record(step_run=second, result=Completed({"a": 2}), elapsed_ms=0, now=LATER)
    assert not steps.step_record(
        step_run=first, result=Completed({"a": 1}), elapsed_ms=0, now=LATER
    )
    assert first_step(run).output == {"a": 2}
    assert StepRun.objects.filter(run=run).count() == 2
    assert AuditEvent.objects.filter(verb="step.completed").count() == 1


# --- Real threads on real PostgreSQL ---------------------------------------------------------


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_for_lock_wait(query_start: str, timeout: float = 10) -> None:
    """Until a backend runs a statement beginning with `query_start` and waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND ltrim(query, E' \\n') LIKE %s",
                [query_start + "%"],
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError(f"no statement {query_start!r} waited for a lock")


def record_in_thread(step_run: StepRun, output: Any) -> tuple[threading.Thread, dict[str, Any]]:
    return in_thread(
        lambda: steps.step_record(
            step_run=step_run, result=Completed(output=output), elapsed_ms=0, now=LATER
        )
    )


def joined(thread: threading.Thread, outcome: dict[str, Any]) -> Any:
    thread.join(30)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"]


@pytest.mark.django_db(transaction=True)
def test_the_fast_record_waits_for_the_run_lock_before_it_touches_the_step(
    transform_workflow: Any, system: Any
) -> None:
    run = services.run_start(
        workflow=transform_workflow, input={"amount": 1}, actor=system, now=LATER
    )
    step_run = claim(first_step(run), LATER)
    locked, release = threading.Event(), threading.Event()

    def hold_run() -> None:
        with transaction.atomic():
            Run.objects.select_for_update().get(pk=run.pk)
            locked.set()
            release.wait(30)

    holder = in_thread(hold_run)
    assert locked.wait(10)
    recorder = record_in_thread(step_run, {"v": 2})
    wait_for_lock_wait("WITH run_locked")
    # The recorder waits for the run and holds nothing on the step: NOWAIT gets it at once.
    with transaction.atomic():
        StepRun.objects.select_for_update(nowait=True).get(pk=step_run.pk)
    release.set()
    joined(*holder)
    assert joined(*recorder) is not None
    assert first_step(run).status == StepRun.Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_a_cancel_that_holds_the_run_drops_the_fast_record_waiting_behind_it(
    transform_workflow: Any, system: Any
) -> None:
    run = services.run_start(
        workflow=transform_workflow, input={"amount": 1}, actor=system, now=LATER
    )
    step_run = claim(first_step(run), LATER)
    cancelled, release = threading.Event(), threading.Event()

    def cancel() -> None:
        with transaction.atomic():
            services.run_cancel(run=run, actor=system, reason="stop", now=LATER)
            cancelled.set()
            release.wait(30)

    canceller = in_thread(cancel)
    assert cancelled.wait(10)
    recorder = record_in_thread(step_run, {"v": 2})
    wait_for_lock_wait("WITH run_locked")
    release.set()
    joined(*canceller)
    assert joined(*recorder) is None
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert list(StepRun.objects.filter(run=run).values_list("status", flat=True)) == [
        StepRun.Status.CANCELLED
    ]
    assert first_step(run).output is None
    assert not AuditEvent.objects.filter(verb="step.completed").exists()


@pytest.mark.django_db(transaction=True)
def test_a_cancel_waiting_behind_a_fast_record_also_cancels_the_step_it_made_due(
    transform_workflow: Any, system: Any
) -> None:
    run = services.run_start(
        workflow=transform_workflow, input={"amount": 1}, actor=system, now=LATER
    )
    step_run = claim(first_step(run), LATER)
    recorded, release = threading.Event(), threading.Event()

    def record_and_hold() -> StepRun | None:
        # The caller's transaction keeps the record's locks until it commits.
        with transaction.atomic():
            result = steps.step_record(
                step_run=step_run, result=Completed(output={"v": 2}), elapsed_ms=0, now=LATER
            )
            recorded.set()
            release.wait(30)
        return result

    recorder = in_thread(record_and_hold)
    assert recorded.wait(10)
    canceller = in_thread(lambda: services.run_cancel(run=run, actor=system, now=LATER))
    wait_for_lock_wait("SELECT")
    release.set()
    assert joined(*recorder) is not None
    joined(*canceller)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    statuses = dict(StepRun.objects.filter(run=run).values_list("step_id", "status"))
    assert statuses == {"double": StepRun.Status.COMPLETED, "label": StepRun.Status.CANCELLED}


@pytest.mark.django_db(transaction=True)
def test_of_two_attempts_recording_at_once_only_the_owner_lands(
    transform_workflow: Any, system: Any, settings: Any
) -> None:
    def record(step_run: StepRun, output: Any, barrier: threading.Barrier) -> Any:
        barrier.wait()
        return steps.step_record(
            step_run=step_run, result=Completed(output=output), elapsed_ms=0, now=LATER
        )

    for _ in range(3):
        run = services.run_start(
            workflow=transform_workflow, input={"amount": 1}, actor=system, now=LATER
        )
        stale = claim(first_step(run), LATER)
        owner = claim(first_step(run), LATER + settings.HITL_STEP_LEASE + timedelta(seconds=1))
        barrier = threading.Barrier(2)
        late = in_thread(lambda s=stale, b=barrier: record(s, {"by": 1}, b))
        current = in_thread(lambda s=owner, b=barrier: record(s, {"by": 2}, b))
        assert joined(*late) is None
        assert joined(*current) is not None
        assert first_step(run).output == {"by": 2}
        assert StepRun.objects.filter(run=run).count() == 2
        completed = AuditEvent.objects.filter(verb="step.completed", object_id=str(owner.pk))
        assert [e.payload["attempt"] for e in completed] == [2]
