"""The outbox: a delivery row exists exactly when the event it reports committed, on both
record paths, and the fast path stays one statement for workflows nobody listens to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from workflows import services
from workflows.models import AuditEvent, Delivery, Endpoint, Run, StepRun, Workflow
from workflows.services import fastpath, steps
from workflows.versions import version_definition

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/hitl"
# Ahead of the wall clock, so a worker left running by the integration tests (same database
# and broker) finds nothing due and leaves every step to the test.
LATER = timezone.now() + timedelta(hours=1)


def start(workflow: Workflow, system: Any, amount: int = 70, **input: Any) -> Run:
    return services.run_start(
        workflow=workflow, input={"amount": amount, **input}, actor=system, now=LATER
    )


def deliveries(**filters: Any) -> list[Delivery]:
    return list(Delivery.objects.filter(**filters).order_by("pk"))


def test_a_completed_run_writes_one_delivery_per_subscribed_active_endpoint(
    hooked: Workflow,
    make_workflow: Any,
    make_endpoint: Callable[..., Endpoint],
    system: Any,
    owner: Any,
) -> None:
    first = make_endpoint(hooked, URL, event_types=["run.completed"])
    second = make_endpoint(hooked, URL + "/2", event_types=["run.completed", "run.failed"])
    make_endpoint(hooked, URL + "/failures", event_types=["run.failed"])
    gone = make_endpoint(hooked, URL + "/gone", event_types=["run.completed"])
    services.endpoint_disable(endpoint=gone, user=owner)
    other = make_workflow({"slug": "other", "name": "O", "steps": [{"id": "w", "kind": "wait"}]})
    make_endpoint(other, URL + "/other", event_types=["run.completed"])

    run = services.run_drive(run=start(hooked, system, id="order-17"), now=LATER)

    assert run.status == Run.Status.COMPLETED
    rows = deliveries()
    assert [d.endpoint_id for d in rows] == [first.pk, second.pk]
    assert {d.event for d in rows} == {"run.completed"}
    assert rows[0].webhook_id != rows[1].webhook_id
    assert rows[0].webhook_id.startswith("msg_")
    assert (rows[0].status, rows[0].attempts, rows[0].due_at) == ("pending", 0, LATER)
    assert rows[0].payload == {
        "type": "run.completed",
        "timestamp": LATER.isoformat(),
        "data": {
            "run": {
                "id": run.pk,
                "status": "completed",
                "outcome": "approved",
                "error": "",
                "source": "api",
                "created_at": LATER.isoformat(),
                "finished_at": LATER.isoformat(),
            },
            "workflow": {"slug": "totals", "version": 1},
            "input_id": "order-17",
            "output": {"ok": True},
            "decision": None,
        },
    }
    created = AuditEvent.objects.filter(verb="delivery.created")
    assert sorted(int(e.object_id) for e in created) == [d.pk for d in rows]


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_stays_one_statement_when_nobody_listens_for_run_completed(
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    system: Any,
    django_assert_num_queries: Any,
) -> None:
    # Endpoints for other events, or disabled ones, do not send the last step off the fast
    # path: it is the read, the claim and the record, as in test_query_budget_per_executed_step.
    make_endpoint(hooked, URL, event_types=["run.failed", "task.created"])
    run = start(hooked, system)
    for step_id in ("double", "label"):
        services.step_execute(
            step_run_id=StepRun.objects.get(run=run, step_id=step_id).pk, now=LATER
        )
    last = StepRun.objects.get(run=run, step_id="done")
    version_definition(run.version_id)
    # Outside a transaction (as on a worker): no savepoint around the one statement.
    with django_assert_num_queries(3):
        services.step_execute(step_run_id=last.pk, now=LATER)
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert not Delivery.objects.exists()


def test_a_run_completed_endpoint_takes_the_last_step_through_the_orm_path(
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    system: Any,
    django_assert_num_queries: Any,
) -> None:
    endpoint = make_endpoint(hooked, URL, event_types=["run.completed"])
    run = start(hooked, system)
    for step_id in ("double", "label"):
        services.step_execute(
            step_run_id=StepRun.objects.get(run=run, step_id=step_id).pk, now=LATER
        )
    # Steps that do not finish the run stay on the fast path with an endpoint, too.
    assert not Delivery.objects.exists()
    last = StepRun.objects.get(run=run, step_id="done")
    services.step_execute(step_run_id=last.pk, now=LATER)
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    [delivery] = deliveries()
    assert delivery.endpoint_id == endpoint.pk
    assert delivery.payload["data"]["output"] == {"ok": True}
    # Recorded once: one step.completed per step and one run.completed.
    verbs = list(
        AuditEvent.objects.filter(verb__in=["step.completed", "run.completed"]).values_list(
            "verb", flat=True
        )
    )
    assert verbs.count("step.completed") == 3 and verbs.count("run.completed") == 1


def test_an_endpoint_created_between_the_claim_and_the_record_still_gets_the_callback(
    hooked: Workflow, make_endpoint: Callable[..., Endpoint], system: Any
) -> None:
    run = start(hooked, system)
    for step_id in ("double", "label"):
        services.step_execute(
            step_run_id=StepRun.objects.get(run=run, step_id=step_id).pk, now=LATER
        )
    last = StepRun.objects.get(run=run, step_id="done")
    claimed = fastpath.claim(
        step_run_id=last.pk, now=LATER, lease=LATER + timedelta(minutes=5), actor=steps.SYSTEM
    )
    assert claimed is not None
    # The step executes (no transaction) while an admin adds an endpoint.
    endpoint = make_endpoint(hooked, URL, event_types=["run.completed"])
    recorded = steps.step_record(
        step_run=claimed.step_run(),
        result=steps.Completed(output={"ok": True}),
        elapsed_ms=1,
        now=LATER,
    )
    assert recorded is not None and recorded.status == StepRun.Status.COMPLETED
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert [d.endpoint_id for d in deliveries()] == [endpoint.pk]
    assert AuditEvent.objects.filter(verb="run.completed", object_id=str(run.pk)).count() == 1


def test_a_late_attempt_on_a_subscribed_workflow_is_dropped_and_writes_nothing(
    hooked: Workflow, make_endpoint: Callable[..., Endpoint], system: Any, settings: Any
) -> None:
    make_endpoint(hooked, URL, event_types=["run.completed"])
    run = start(hooked, system)
    for step_id in ("double", "label"):
        services.step_execute(
            step_run_id=StepRun.objects.get(run=run, step_id=step_id).pk, now=LATER
        )
    last = StepRun.objects.get(run=run, step_id="done")
    lease = LATER + timedelta(minutes=5)
    stale = fastpath.claim(step_run_id=last.pk, now=LATER, lease=lease, actor=steps.SYSTEM)
    later = lease + timedelta(seconds=1)
    owner = fastpath.claim(step_run_id=last.pk, now=later, lease=later, actor=steps.SYSTEM)
    assert stale is not None and owner is not None
    done = steps.Completed(output={"ok": True})
    assert steps.step_record(step_run=owner.step_run(), result=done, elapsed_ms=0, now=later)
    assert not steps.step_record(step_run=stale.step_run(), result=done, elapsed_ms=0, now=later)
    assert len(deliveries()) == 1


def test_a_rolled_back_event_leaves_no_delivery_and_sends_nothing(
    make_workflow: Any,
    make_endpoint: Callable[..., Endpoint],
    system: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow({"slug": "held", "name": "H", "steps": [{"id": "w", "kind": "wait"}]})
    make_endpoint(workflow, URL, event_types=["run.cancelled"])
    run = services.run_drive(
        run=services.run_start(workflow=workflow, input={}, actor=system, now=LATER), now=LATER
    )
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.run_cancel(run=run, actor=system, reason="wrong order", now=LATER)
        assert Delivery.objects.count() == 1  # written with the event ...
        raise RuntimeError("the caller failed after the cancel")
    assert callbacks == []  # ... and gone with it, never sent
    assert not Delivery.objects.exists()
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.run_cancel(run=run, actor=system, reason="wrong order", now=LATER)
    [delivery] = deliveries()
    assert len(callbacks) == 1
    assert delivery.payload["data"]["run"]["status"] == "cancelled"
    assert delivery.payload["data"]["run"]["error"] == "wrong order"


def test_a_failed_run_reports_its_error(
    make_workflow: Any, make_endpoint: Callable[..., Endpoint], system: Any
) -> None:
    workflow = make_workflow(
        {
            "slug": "broken",
            "name": "B",
            "steps": [{"id": "t", "kind": "transform", "config": {"output": {"x": "input.no"}}}],
        }
    )
    make_endpoint(workflow, URL, event_types=["run.failed", "run.completed"])
    run = services.run_drive(
        run=services.run_start(workflow=workflow, input={"id": 7}, actor=system, now=LATER),
        now=LATER,
    )
    assert run.status == Run.Status.FAILED
    [delivery] = deliveries()
    data = delivery.payload["data"]
    assert delivery.event == "run.failed"
    assert (data["run"]["status"], data["input_id"], data["output"]) == ("failed", 7, None)
    assert "no such member" in data["run"]["error"]
