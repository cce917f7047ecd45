"""Review events in the outbox: task created, decided, escalated, overdue, and the run's end
with its decision; chat messages for new high-priority tasks, breaches and escalations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from tests.helpers import drive
from tests.review.conftest import T0, minutes
from workflows import services
from workflows.models import Delivery, Endpoint, ReviewTask, Run, Workflow

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/hitl"
CHAT = "https://chat.example.com/services/T0/B0/secret-token"
EVENTS = ["task.created", "task.decided", "task.escalated", "task.sla_breached", "run.completed"]


@pytest.fixture
def hook(workflow: Workflow, owner: User) -> Endpoint:
    return services.endpoint_create(workflow=workflow, user=owner, url=URL, event_types=EVENTS)


def sent(**filters: Any) -> list[tuple[str, dict[str, Any]]]:
    rows = Delivery.objects.filter(**filters).order_by("pk")
    return [(d.event, d.payload.get("data", d.payload)) for d in rows]


def url(task: ReviewTask | int) -> str:
    pk = task if isinstance(task, int) else task.pk
    return f"https://hitl.example.com/review/tasks/{pk}/"


def test_a_gate_that_waits_reports_the_new_task(
    hook: Endpoint, workflow: Workflow, start: Callable[..., Run]
) -> None:
    run = start(workflow, id="ticket-9")
    task = ReviewTask.objects.get(run=run)
    [(event, data)] = sent()
    assert event == "task.created"
    assert data == {
        "task": {
            "id": task.pk,
            "status": "open",
            "audience": "reviewers",
            "reason": "below_threshold",
            "priority": 0,
            "created_at": T0.isoformat(),
            "due_at": (T0 + minutes(60)).isoformat(),
            "url": url(task),
            "escalated_from": None,
            "escalated_to": None,
        },
        "run": {"id": run.pk},
        "workflow": {"slug": "triage", "version": 1},
        "input_id": "ticket-9",
        "output": None,
        "decision": None,
    }


def test_a_decision_reports_the_final_output_and_the_run_s_end_carries_it(
    hook: Endpoint, workflow: Workflow, start: Callable[..., Run], reviewer: User
) -> None:
    run = start(workflow)
    task = ReviewTask.objects.get(run=run)
    later = T0 + minutes(5)
    services.review_decide(
        task=task,
        user=reviewer,
        action="edit",
        output={"label": "refund"},
        reason="asks for money back",
        claim=True,
        now=later,
    )
    drive(run, now=later)
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    events = sent()
    assert [event for event, _ in events] == ["task.created", "task.decided", "run.completed"]
    decision = {
        "task": task.pk,
        "action": "edit",
        "reviewer": "reviewer",
        "reason": "asks for money back",
        "decided_at": later.isoformat(),
    }
    decided, completed = events[1][1], events[2][1]
    assert decided["task"]["status"] == "decided"
    assert (decided["output"], decided["decision"]) == ({"label": "refund"}, decision)
    assert completed["run"]["outcome"] == "approved"
    assert (completed["output"], completed["decision"]) == ({"booked": "refund"}, decision)


def test_a_rejection_reports_no_output(
    hook: Endpoint, workflow: Workflow, start: Callable[..., Run], reviewer: User
) -> None:
    task = ReviewTask.objects.get(run=start(workflow))
    services.review_decide(
        task=task, user=reviewer, action="reject", reason="spam", claim=True, now=T0
    )
    [(_, decided)] = sent(event="task.decided")
    assert (decided["output"], decided["decision"]["action"]) == (None, "reject")


def test_an_escalation_reports_both_tasks(
    hook: Endpoint, workflow: Workflow, start: Callable[..., Run], reviewer: User
) -> None:
    task = ReviewTask.objects.get(run=start(workflow))
    services.review_decide(
        task=task, user=reviewer, action="escalate", reason="legal", claim=True, now=T0
    )
    successor = ReviewTask.objects.get(escalated_from=task)
    events = sent()
    assert [event for event, _ in events] == ["task.created", "task.created", "task.escalated"]
    assert events[1][1]["task"]["escalated_from"] == task.pk
    escalated = events[2][1]
    assert escalated["task"]["status"] == "escalated"
    assert escalated["task"]["escalated_to"] == {
        "id": successor.pk,
        "reason": "escalated",
        "audience": "escalation",
        "url": url(successor),
    }
    assert escalated["decision"]["action"] == "escalate"
    assert not sent(event="task.decided")


def test_an_overdue_task_reports_the_breach_and_its_escalation(
    hook: Endpoint,
    workflow: Workflow,
    start: Callable[..., Run],
    django_capture_on_commit_callbacks: Any,
) -> None:
    task = ReviewTask.objects.get(run=start(workflow))
    with django_capture_on_commit_callbacks(execute=False):
        services.review_sweep(now=T0 + minutes(61))
    events = sent()
    assert [event for event, _ in events] == [
        "task.created",
        "task.sla_breached",
        "task.created",
        "task.escalated",
    ]
    assert events[1][1]["task"]["id"] == task.pk
    assert events[3][1]["task"]["escalated_to"]["reason"] == "sla_breach"
    assert events[3][1]["decision"] is None


def test_a_decision_rolled_back_leaves_no_callback(
    hook: Endpoint, workflow: Workflow, start: Callable[..., Run], reviewer: User
) -> None:
    task = ReviewTask.objects.get(run=start(workflow))
    with pytest.raises(RuntimeError), transaction.atomic():
        services.review_decide(task=task, user=reviewer, action="approve", claim=True, now=T0)
        assert sent(event="task.decided")
        raise RuntimeError("the caller failed")
    assert [event for event, _ in sent()] == ["task.created"]


def test_chat_gets_new_high_priority_tasks_breaches_and_escalations_with_links(
    make_gate_workflow: Callable[..., Workflow],
    owner: User,
    start: Callable[..., Run],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_gate_workflow(
        {
            "threshold": 0.8,
            "sla_minutes": 60,
            "priority": "input.vip ? 5 : 0",
        }
    )
    chat = services.endpoint_create(workflow=workflow, user=owner, url=CHAT, kind="slack")
    assert chat.event_types == ["task.created", "task.escalated", "task.sla_breached"]
    assert chat.min_priority == 1
    assert "secret-token" not in str(chat)

    plain = ReviewTask.objects.get(run=start(workflow, vip=False))
    assert not Delivery.objects.exists()  # priority 0: below the endpoint's threshold
    # A minute later, so the sweep meets the two in a known order (by due time).
    vip = ReviewTask.objects.get(run=start(workflow, vip=True, now=T0 + minutes(1)))
    with django_capture_on_commit_callbacks(execute=False):
        services.review_sweep(now=T0 + minutes(62))
    after_plain = ReviewTask.objects.get(escalated_from=plain)
    after_vip = ReviewTask.objects.get(escalated_from=vip)

    texts = [d.payload["text"] for d in Delivery.objects.order_by("pk")]
    assert texts == [
        f"New review task #{vip.pk} in *triage* (priority 5, below_threshold,"
        f" due 2030-01-07T10:01:00+00:00): <{url(vip)}|open the task>",
        # Breaches are reported whatever the priority.
        f"Overdue: review task #{plain.pk} in *triage* passed its due time"
        f" (2030-01-07T10:00:00+00:00) without a decision: <{url(plain)}|open the task>",
        f"Overdue: review task #{vip.pk} in *triage* passed its due time"
        f" (2030-01-07T10:01:00+00:00) without a decision: <{url(vip)}|open the task>",
        # An escalation links to the task that now needs a decision, which is not announced
        # a second time as a new task.
        f"Escalated: review task #{plain.pk} in *triage* (sla_breach);"
        f" task #{after_plain.pk} needs a decision: <{url(after_plain)}|open it>",
        f"Escalated: review task #{vip.pk} in *triage* (sla_breach);"
        f" task #{after_vip.pk} needs a decision: <{url(after_vip)}|open it>",
    ]
