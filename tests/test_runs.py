from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.helpers import drive
from workflows import services
from workflows.errors import Conflict, InvalidInput
from workflows.models import AuditEvent, Run, StepRun
from workflows.versions import version_definition

pytestmark = pytest.mark.django_db


def test_it_runs_a_transform_workflow_to_completion(transform_workflow: Any, system: Any) -> None:
    run = services.run_start(workflow=transform_workflow, input={"amount": 70}, actor=system)
    assert run.status == Run.Status.PENDING
    drive(run)
    assert run.status == Run.Status.COMPLETED
    outputs = dict(StepRun.objects.filter(run=run).values_list("step_id", "output"))
    assert outputs == {"double": {"v": 140}, "label": {"big": True}, "done": {"ok": True}}
    assert run.outcome == "approved"
    assert run.finished_at is not None


def test_it_ends_a_rejected_run_early(transform_workflow: Any, system: Any) -> None:
    run = drive(services.run_start(workflow=transform_workflow, input={"amount": 10}, actor=system))
    assert run.status == Run.Status.COMPLETED
    assert run.outcome == "rejected"
    assert not StepRun.objects.filter(run=run, step_id="done").exists()


def test_it_rejects_input_that_does_not_match_the_schema(
    transform_workflow: Any, system: Any
) -> None:
    with pytest.raises(InvalidInput, match="input amount: 'lots' is not of type 'number'"):
        services.run_start(workflow=transform_workflow, input={"amount": "lots"}, actor=system)
    with pytest.raises(InvalidInput, match="'amount' is a required property"):
        services.run_start(workflow=transform_workflow, input={}, actor=system)
    assert not Run.objects.exists()


def test_it_enqueues_the_first_step_only_on_commit(
    transform_workflow: Any, system: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = services.run_start(workflow=transform_workflow, input={"amount": 1}, actor=system)
    assert len(callbacks) == 1
    step = StepRun.objects.get(run=run)
    assert (step.step_id, step.status, step.attempts) == ("double", StepRun.Status.READY, 0)


def test_it_pins_the_version_a_run_started_on(make_workflow: Any, system: Any) -> None:
    base = {"slug": "pin", "name": "Pin", "steps": [{"id": "w", "kind": "wait"}]}
    workflow = make_workflow(base)
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    assert run.status == Run.Status.WAITING
    changed = {**base, "steps": [{"id": "w", "kind": "wait"}, {"id": "x", "kind": "wait"}]}
    make_workflow(changed)
    workflow.refresh_from_db()
    assert workflow.active_version.number == 2
    services.run_resume(run=run, step_id="w", actor=system, output={"done": True})
    run.refresh_from_db()
    # v1 has a single step, so the run completes instead of going on to v2's "x".
    assert run.status == Run.Status.COMPLETED
    assert run.version.number == 1


def test_wait_pauses_until_resume(make_workflow: Any, system: Any) -> None:
    workflow = make_workflow(
        {
            "slug": "w",
            "name": "W",
            "steps": [
                {"id": "hold", "kind": "wait", "next": {"approved": "after", "rejected": "end"}},
                {
                    "id": "after",
                    "kind": "transform",
                    "config": {"output": {"x": "steps.hold.output.n + 1"}},
                },
            ],
        }
    )
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    assert run.status == Run.Status.WAITING
    assert StepRun.objects.get(run=run, step_id="hold").meta["waiting_for"]
    services.run_resume(run=run, step_id="hold", outcome="approved", output={"n": 41}, actor=system)
    run = drive(run)
    assert run.status == Run.Status.COMPLETED
    assert run.outcome == "approved"
    assert StepRun.objects.get(run=run, step_id="after").output == {"x": 42}
    with pytest.raises(Conflict):
        services.run_resume(run=run, step_id="hold", actor=system)


def test_it_cancels_a_waiting_run(make_workflow: Any, system: Any) -> None:
    workflow = make_workflow({"slug": "c", "name": "C", "steps": [{"id": "w", "kind": "wait"}]})
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    services.run_cancel(run=run, actor=system, reason="no longer needed")
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert StepRun.objects.get(run=run).status == StepRun.Status.CANCELLED
    with pytest.raises(Conflict):
        services.run_cancel(run=run, actor=system)
    with pytest.raises(Conflict):
        services.run_resume(run=run, step_id="w", actor=system)


def probe_workflow(make_workflow: Any, slug: str, **probe: Any) -> Any:
    return make_workflow(
        {
            "slug": slug,
            "name": slug,
            "steps": [
                {"id": "p", "kind": "probe", "config": probe, "max_attempts": 3},
                {"id": "q", "kind": "transform", "config": {"output": {"ok": "true"}}},
            ],
        }
    )


def test_a_transient_failure_is_rescheduled_through_due_at(make_workflow: Any, system: Any) -> None:
    workflow = probe_workflow(make_workflow, "flaky", fail="rate limited", retryable=True)
    now = timezone.now()
    run = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    step = StepRun.objects.get(run=run)
    services.step_execute(step_run_id=step.pk, now=now)
    step.refresh_from_db()
    assert step.status == StepRun.Status.READY
    assert step.error == "rate limited"
    assert step.due_at > now
    assert step.enqueued_at is None
    # Not due yet: a stray message is a no-op.
    assert services.step_execute(step_run_id=step.pk, now=now) is None
    later = step.due_at
    services.step_execute(step_run_id=step.pk, now=later)
    step.refresh_from_db()
    assert step.attempts == 2
    services.step_execute(step_run_id=step.pk, now=step.due_at)
    step.refresh_from_db()
    run.refresh_from_db()
    assert step.status == StepRun.Status.FAILED
    assert step.error == "gave up after 3 attempts: rate limited"
    assert run.status == Run.Status.FAILED
    assert "gave up after 3 attempts" in run.error


def test_a_permanent_failure_fails_the_run_at_once(make_workflow: Any, system: Any) -> None:
    workflow = probe_workflow(make_workflow, "broken", fail="bad api key", retryable=False)
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    assert run.status == Run.Status.FAILED
    assert run.error == "step 'p' failed: bad api key"
    assert StepRun.objects.get(run=run).attempts == 1


def test_an_expression_error_fails_the_step_clearly(make_workflow: Any, system: Any) -> None:
    workflow = make_workflow(
        {
            "slug": "bad-expr",
            "name": "X",
            "steps": [{"id": "t", "kind": "transform", "config": {"output": {"x": "input.nope"}}}],
        }
    )
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    assert run.status == Run.Status.FAILED
    assert "no such member" in run.error


def test_retry_services_reopen_failed_runs(make_workflow: Any, system: Any) -> None:
    workflow = probe_workflow(make_workflow, "retry", fail="down", retryable=False)
    runs = [drive(services.run_start(workflow=workflow, input={}, actor=system)) for _ in range(3)]
    assert all(r.status == Run.Status.FAILED for r in runs)
    services.run_retry(run=runs[0], actor=system)
    runs[0].refresh_from_db()
    assert runs[0].status == Run.Status.RUNNING
    step = StepRun.objects.get(run=runs[0], step_id="p")
    assert (step.status, step.attempts, step.error) == (StepRun.Status.READY, 0, "")
    with pytest.raises(Conflict):
        services.run_retry(run=runs[0], actor=system)
    retried = services.runs_retry_failed(since=timezone.now() - timedelta(hours=1), actor=system)
    assert retried == 2
    assert not Run.objects.filter(status=Run.Status.FAILED).exists()
    none_left = services.runs_retry_failed(since=timezone.now() - timedelta(hours=1), actor=system)
    assert none_left == 0


def test_a_claim_sets_the_lease_and_a_second_claim_is_a_noop(
    make_workflow: Any, system: Any, settings: Any
) -> None:
    workflow = probe_workflow(make_workflow, "lease")
    now = timezone.now()
    run = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    step = StepRun.objects.get(run=run)
    StepRun.objects.filter(pk=step.pk).update(
        status=StepRun.Status.RUNNING, attempts=1, lease_expires_at=now + settings.HITL_STEP_LEASE
    )
    assert services.step_execute(step_run_id=step.pk, now=now) is None
    # Once the lease has expired, the step is claimable again, as attempt 2.
    expired = now + settings.HITL_STEP_LEASE + timedelta(seconds=1)
    recorded = services.step_execute(step_run_id=step.pk, now=expired)
    assert recorded is not None
    assert recorded.attempts == 2
    assert recorded.status == StepRun.Status.COMPLETED


def test_a_missing_step_is_a_noop(db: None) -> None:
    assert services.step_execute(step_run_id=987654321) is None


def test_sweeper_reenqueues_lost_messages_and_parks_exhausted_steps(
    make_workflow: Any, system: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    workflow = probe_workflow(make_workflow, "sweep")
    now = timezone.now()
    fresh = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    lost = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    exhausted = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    StepRun.objects.filter(run=exhausted).update(
        status=StepRun.Status.RUNNING, attempts=3, lease_expires_at=now
    )
    StepRun.objects.filter(run=lost).update(enqueued_at=now - settings.HITL_REENQUEUE_AFTER)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = services.steps_sweep(now=now)
    # `fresh` was enqueued a moment ago: its message may simply be waiting in the queue.
    assert result == {"enqueued": 1, "parked": 1}
    assert len(callbacks) == 1
    exhausted.refresh_from_db()
    assert exhausted.status == Run.Status.FAILED
    assert "worker lost 3 times" in exhausted.error
    later = now + settings.HITL_REENQUEUE_AFTER
    assert services.steps_sweep(now=later) == {"enqueued": 2, "parked": 0}
    assert fresh.pk


def test_two_concurrent_executions_have_one_effect(
    make_workflow: Any, system: Any, tmp_path: Path, transactional_db: None
) -> None:
    workflow = probe_workflow(make_workflow, "race", sleep=0.2)
    log = tmp_path / "effects.log"
    run = services.run_start(workflow=workflow, input={"log": str(log)}, actor=system)
    step = StepRun.objects.get(run=run)
    barrier = threading.Barrier(4)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(services.step_execute(step_run_id=step.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.read_text().splitlines()) == 1
    assert sum(r is not None for r in results) == 1
    step.refresh_from_db()
    assert (step.status, step.attempts) == (StepRun.Status.COMPLETED, 1)
    assert StepRun.objects.filter(run=run, step_id="q").count() == 1


def test_nothing_is_enqueued_when_the_caller_rolls_back(
    transform_workflow: Any, system: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.run_start(workflow=transform_workflow, input={"amount": 1}, actor=system)
        raise RuntimeError("caller failed after run_start")
    assert callbacks == []
    assert not Run.objects.exists()


def test_every_transition_is_audited(transform_workflow: Any, system: Any) -> None:
    run = drive(services.run_start(workflow=transform_workflow, input={"amount": 70}, actor=system))
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", flat=True))
    assert verbs[-8:] == [
        "run.started",
        "step.started",
        "step.completed",
        "step.started",
        "step.completed",
        "step.started",
        "step.completed",
        "run.completed",
    ]
    assert AuditEvent.objects.filter(object_type="run", object_id=str(run.pk)).count() == 2


@pytest.mark.django_db(transaction=True)
def test_query_budget_per_executed_step(
    transform_workflow: Any, system: Any, django_assert_num_queries: Any
) -> None:
    run = services.run_start(workflow=transform_workflow, input={"amount": 70}, actor=system)
    step = StepRun.objects.get(run=run)
    version_definition.cache_clear()
    # 1. the step's run, id and attempt number, read by primary key for the claim's audit
    #    payload, which Python builds;
    # 2. the claim: one statement (claim the step, start the run, audit, read the context);
    # 3. the version's definition (cached after the first load);
    # 4. the record: one statement, committing on its own (lock the run, complete the step,
    #    advance the run, create the next step, audit).
    with django_assert_num_queries(4):
        services.step_execute(step_run_id=step.pk)
    second = StepRun.objects.get(run=run, step_id="label").pk
    # The same read, claim and record; the definition is cached.
    with django_assert_num_queries(3):
        services.step_execute(step_run_id=second)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\x00b", "NUL character"),
        ("\ud800", "unpaired surrogate"),
        (float("nan"), "not a JSON number"),
        ([[[[1]]]] * 1, None),
    ],
)
def test_run_input_that_cannot_be_stored_is_refused_before_anything_is_written(
    transform_workflow: Any, system: Any, value: Any, message: str | None
) -> None:
    from workflows.errors import InvalidInput

    if message is None:  # an ordinary nested value passes this check (and then the schema)
        with pytest.raises(InvalidInput, match="amount"):
            services.run_start(workflow=transform_workflow, input={"x": value}, actor=system)
        return
    with pytest.raises(InvalidInput, match=message):
        services.run_start(
            workflow=transform_workflow, input={"amount": 1, "x": value}, actor=system
        )
    assert not Run.objects.exists()


def test_run_input_nested_too_deep_is_refused(transform_workflow: Any, system: Any) -> None:
    from workflows.errors import InvalidInput

    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested more than 64 levels"):
        services.run_start(
            workflow=transform_workflow, input={"amount": 1, "x": deep}, actor=system
        )
