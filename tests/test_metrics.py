"""The metrics selector (workflows/metrics.py) against the real database and Redis.

Rows are written directly (a small world of runs, steps, tasks, decisions and deliveries at
known times) and every figure is checked against what was written, per workflow and overall,
with the clock passed as `now`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.factories import UserFactory
from workflows import metrics
from workflows.models import (
    AuditEvent,
    Decision,
    Delivery,
    Endpoint,
    ReviewTask,
    Run,
    StepRun,
    Workflow,
)

NOW = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def a_workflow(make_workflow: Any, slug: str) -> Workflow:
    return make_workflow({"slug": slug, "name": slug, "steps": [{"id": "w", "kind": "wait"}]})


def a_run(workflow: Workflow, status: str, finished: datetime | None = None) -> Run:
    return Run.objects.create(
        workflow=workflow,
        version=workflow.active_version,
        status=status,
        input={},
        finished_at=finished,
    )


def a_step(run: Run, step_id: str, kind: str = "transform", **fields: Any) -> StepRun:
    fields.setdefault("status", "completed")
    return StepRun.objects.create(run=run, step_id=step_id, kind=kind, position=0, **fields)


def a_task(run: Run, gate: StepRun, status: str = "open", **fields: Any) -> ReviewTask:
    return ReviewTask.objects.create(
        workflow=run.workflow, run=run, step_run=gate, status=status, reason="below", **fields
    )


def decided(run: Run, gate: StepRun, reviewer: Any, action: str, created: datetime, at: datetime):
    task = a_task(run, gate, "decided", created_at=created, claimed_by=reviewer)
    return Decision.objects.create(
        task=task,
        reviewer=reviewer,
        action=action,
        claimed_at=created,
        decided_at=at,
        time_spent=at - created,
    )


@pytest.fixture
def world(make_workflow: Any) -> dict[str, Workflow]:
    """Two workflows; `triage` has everything, `quiet` a little, some of it out of window."""
    triage = a_workflow(make_workflow, "triage")
    quiet = a_workflow(make_workflow, "quiet")
    reviewer = UserFactory(username="r")
    recent, old = NOW - timedelta(minutes=10), NOW - 3 * HOUR
    # Runs: live ones count whatever their age; finished ones only within the window.
    for status in ("running", "waiting", "waiting"):
        a_run(triage, status)
    a_run(quiet, "pending")
    done = [a_run(triage, "completed", recent) for _ in range(3)]
    a_run(triage, "failed", recent)
    stale = a_run(triage, "completed", old)
    # Gate items and model use of the finished runs: 2 auto-approved of 3 in the window.
    for index, run in enumerate(done):
        decision = "auto_approved" if index < 2 else "review"
        a_step(run, "check", "gate", meta={"decision": decision})
        a_step(run, "ai", "ai", calls=2, input_tokens=100, output_tokens=10, cost_usd="0.01")
    a_step(stale, "check", "gate", meta={"decision": "review"})
    a_step(stale, "ai", "ai", calls=50, input_tokens=9999, cost_usd="5")
    # Review backlog: 2 open (1 overdue) and 1 claimed in triage.
    live = a_run(triage, "waiting")
    gate = a_step(live, "check", "gate", status="waiting", meta={"decision": "review"})
    gate2 = a_step(a_run(triage, "waiting"), "check", "gate", status="waiting")
    gate3 = a_step(a_run(triage, "waiting"), "check", "gate", status="waiting")
    a_task(live, gate, due_at=NOW - timedelta(minutes=1))
    a_task(gate2.run, gate2, due_at=NOW + HOUR)
    a_task(
        gate3.run,
        gate3,
        "claimed",
        claimed_by=reviewer,
        claimed_at=NOW,
        claim_expires_at=NOW + HOUR,
    )
    # Decisions: task opened at NOW-h, decided 10, 20, 30, 40 minutes later (in the window).
    for index, action in enumerate(("approve", "approve", "reject", "edit")):
        run = a_run(triage, "completed", old)
        step = a_step(run, "check", "gate")
        created = NOW - 2 * HOUR + timedelta(minutes=10 * index)
        decided(run, step, reviewer, action, created, NOW - HOUR + timedelta(minutes=10 * index))
    old_run = a_run(quiet, "completed", old)
    decided(old_run, a_step(old_run, "check", "gate"), reviewer, "reject", old, old)
    # Deliveries: live ones whatever their age, finished ones only when written in the window.
    endpoint = Endpoint.objects.create(workflow=triage, kind="chat", url="https://chat.example/")
    for status, created in (
        ("pending", old),
        ("sending", recent),
        ("delivered", recent),
        ("delivered", recent),
        ("failed", recent),
        ("failed", old),
    ):
        Delivery.objects.create(
            endpoint=endpoint,
            event="run.completed",
            webhook_id=f"msg_{Delivery.objects.count()}",
            payload={},
            status=status,
            created_at=created,
        )
    return {"triage": triage, "quiet": quiet}


def test_every_figure_matches_the_rows_per_workflow_and_overall(
    world: dict[str, Workflow],
) -> None:
    snapshot = metrics.metrics_snapshot(now=NOW, window=2 * HOUR)
    by_slug = {m.slug: m for m in snapshot.workflows}
    assert list(by_slug) == ["quiet", "triage"]
    triage, quiet = by_slug["triage"], by_slug["quiet"]

    assert triage.runs_by_status == {"running": 1, "waiting": 5, "completed": 3, "failed": 1}
    assert quiet.runs_by_status == {"pending": 1}
    assert (triage.review_open, triage.review_claimed, triage.review_overdue) == (2, 1, 1)
    assert (triage.gate_items, triage.gate_auto_approved) == (3, 2)
    assert triage.automation_rate == pytest.approx(2 / 3)
    assert quiet.automation_rate is None
    assert triage.decisions_by_action == {"approve": 2, "reject": 1, "edit": 1}
    assert triage.override_rate() == pytest.approx(0.5)
    assert triage.override_rate("reject") == pytest.approx(0.25)
    assert quiet.decisions == 0 and quiet.override_rate() is None
    # Every task waited 60 minutes from creation to decision.
    assert triage.decision_seconds_p50 == pytest.approx(3600)
    assert triage.decision_seconds_p90 == pytest.approx(3600)
    assert triage.runs_finished == 4
    assert (triage.model_calls, triage.input_tokens, triage.output_tokens) == (6, 300, 30)
    assert triage.cost_usd == Decimal("0.03")
    assert triage.per_run(triage.model_calls) == pytest.approx(1.5)
    assert triage.deliveries_by_status == {"pending": 1, "sending": 1, "delivered": 2, "failed": 1}

    overall = snapshot.overall
    assert (overall.workflow_id, overall.slug) == (None, "*")
    assert overall.runs_by_status == {
        "pending": 1,
        "running": 1,
        "waiting": 5,
        "completed": 3,
        "failed": 1,
    }
    assert overall.review_open == 2 and overall.gate_items == 3
    assert overall.decision_seconds_p50 == pytest.approx(3600)


def test_the_window_moves_with_now(world: dict[str, Workflow]) -> None:
    """Three hours back takes in the old run, its gate item, its spend and quiet's decision."""
    snapshot = metrics.metrics_snapshot(now=NOW, window=4 * HOUR)
    by_slug = {m.slug: m for m in snapshot.workflows}
    triage, quiet = by_slug["triage"], by_slug["quiet"]
    assert triage.runs_by_status["completed"] == 3 + 1 + 4
    assert (triage.gate_items, triage.gate_auto_approved) == (3 + 1, 2)
    assert triage.model_calls == 6 + 50
    assert quiet.decisions_by_action == {"reject": 1}
    assert quiet.decision_seconds_p50 == pytest.approx(0)
    # The overall percentile is over all five decisions: 60, 60, 60, 60 and 0 minutes.
    assert snapshot.overall.decision_seconds_p90 == pytest.approx(3600)
    assert snapshot.overall.decision_seconds_p50 == pytest.approx(3600)


def test_workflow_ids_limit_every_figure(world: dict[str, Workflow]) -> None:
    snapshot = metrics.metrics_snapshot(now=NOW, window=2 * HOUR, workflow_ids=[world["quiet"].pk])
    assert [m.slug for m in snapshot.workflows] == ["quiet"]
    assert snapshot.overall.runs_by_status == {"pending": 1}
    assert snapshot.overall.decisions == 0 and snapshot.overall.decision_seconds_p50 is None
    assert snapshot.overall.deliveries_by_status == {}


def test_the_audit_backlog_counts_unsealed_events(world: dict[str, Workflow]) -> None:
    unsealed = AuditEvent.objects.filter(seq__isnull=True).count()
    assert unsealed > 0  # importing the workflows wrote some
    assert metrics.metrics_snapshot(now=NOW).audit_backlog == unsealed


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    keys = ["metrics-test-q", "metrics-test-q\x06\x163", "metrics-test-q\x06\x169", "other-q"]
    client.delete(*keys)
    yield client
    client.delete(*keys)
    client.close()


def test_queue_depth_counts_every_priority_key_of_a_queue(broker: redis.Redis) -> None:
    broker.rpush("metrics-test-q", "a", "b")
    broker.rpush("metrics-test-q\x06\x163", "c")
    broker.rpush("metrics-test-q\x06\x169", "d")
    broker.rpush("other-q", "x")
    assert metrics.queue_depths(client=broker, queues=["metrics-test-q", "empty-q"]) == {
        "metrics-test-q": 4,
        "empty-q": 0,
    }


def test_queue_depth_reads_the_keys_kombu_really_writes(broker: redis.Redis) -> None:
    """A message published through Celery, with a priority, lands where the selector looks."""
    from hitl.celery import app

    with app.connection_for_write() as conn:
        producer = app.amqp.Producer(conn)
        for priority in (0, 5):
            app.send_task(
                "hitl.no_such_task", queue="metrics-test-q", priority=priority, producer=producer
            )
    assert metrics.queue_depths(client=broker, queues=["metrics-test-q"]) == {"metrics-test-q": 2}
