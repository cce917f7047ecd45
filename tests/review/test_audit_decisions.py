"""Decisions inside the audit chain: review.decided carries the decision, and the verifier
proves every Decision row (and the gate's final output) against it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from tests.review.conftest import minutes
from workflows import services
from workflows.canonical import canonical_json, sha256_hex
from workflows.models import AuditEvent, Decision, ReviewTask, StepRun

pytestmark = pytest.mark.django_db


@contextmanager
def owner(table: str) -> Iterator[Any]:
    """The owner turns the table's own triggers off (the deferred foreign-key checks are run
    first: PostgreSQL will not alter a table with pending trigger events)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        try:
            yield cursor
        finally:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def edit(task: ReviewTask, reviewer: User) -> Decision:
    return services.review_decide(
        task=task,
        user=reviewer,
        action="edit",
        output={"label": "refund"},
        reason="customer asks for money back",
        claim=True,
        now=task.created_at + minutes(1),
    )


def test_review_decided_carries_the_decision(task: ReviewTask, reviewer: User) -> None:
    decision = edit(task, reviewer)
    event = AuditEvent.objects.get(verb="review.decided", object_id=str(task.pk))
    assert event.payload == {
        "run": task.run_id,
        "decision": decision.pk,
        "reviewer": reviewer.pk,
        "action": "edit",
        "reason": "customer asks for money back",
        "edited_output": {"label": "refund"},
        "output": {"label": "refund"},
        "shown_sha256": sha256_hex(canonical_json(Decision.objects.get().shown)),
    }
    services.audit_seal()
    assert services.audit_verify().ok


def test_an_escalation_has_no_final_output_and_verifies(
    task: ReviewTask, reviewer: User, escalators: Any
) -> None:
    services.review_decide(task=task, user=reviewer, action="escalate", reason="unsure", claim=True)
    event = AuditEvent.objects.get(verb="review.decided", object_id=str(task.pk))
    assert event.payload["action"] == "escalate" and "output" not in event.payload
    services.audit_seal()
    assert services.audit_verify().ok


def reinserted(decision: Decision, **changes: Any) -> None:
    """Delete the decision and insert it again, changed, as the owner could."""
    row = {
        "id": decision.pk,
        "task_id": decision.task_id,
        "reviewer_id": decision.reviewer_id,
        "action": decision.action,
        "edited_output": canonical_json(decision.edited_output),
        "reason": decision.reason,
        "shown": canonical_json(decision.shown),
        "claimed_at": decision.claimed_at,
        "decided_at": decision.decided_at,
        "time_spent": decision.time_spent,
        **changes,
    }
    with owner("workflows_decision") as cursor:
        cursor.execute("DELETE FROM workflows_decision WHERE id = %s", [decision.pk])
        columns = ", ".join(row)
        cursor.execute(
            f"INSERT INTO workflows_decision ({columns}) VALUES ({', '.join(['%s'] * len(row))})",  # noqa: S608 (test's own column names)
            list(row.values()),
        )


def test_a_decision_reinserted_with_another_edit_is_named(task: ReviewTask, reviewer: User) -> None:
    decision = edit(task, reviewer)
    services.audit_seal()
    reinserted(decision, edited_output='{"label": "billing"}')
    report = services.audit_verify()
    assert (report.ok, report.kind, report.decision) == (False, "decision mismatch", decision.pk)
    assert report.problem == "edited_output no longer match the review.decided event"
    assert f"decision {decision.pk}" in report.describe()


def test_a_decision_reinserted_under_a_new_id_has_no_event(
    task: ReviewTask, reviewer: User
) -> None:
    decision = edit(task, reviewer)
    reinserted(decision, id=decision.pk + 1000)
    report = services.audit_verify()
    assert (report.kind, report.decision) == ("decision mismatch", decision.pk + 1000)
    assert report.problem == "the decision has no review.decided event"


def test_a_deleted_decision_leaves_an_event_naming_it(task: ReviewTask, reviewer: User) -> None:
    decision = edit(task, reviewer)
    services.audit_seal()
    with owner("workflows_decision") as cursor:
        cursor.execute("DELETE FROM workflows_decision WHERE id = %s", [decision.pk])
    report = services.audit_verify()
    assert (report.kind, report.decision) == ("decision mismatch", decision.pk)
    assert f"records decision {decision.pk}, which no longer exists" in report.problem


def test_a_changed_reviewer_reason_shown_or_final_output_is_caught(
    task: ReviewTask, reviewer: User, second_reviewer: User
) -> None:
    decision = edit(task, reviewer)
    reinserted(
        decision, reviewer_id=second_reviewer.pk, reason="other", shown='{"answer": "forged"}'
    )
    gate = StepRun.objects.get(pk=task.step_run_id)
    with owner("workflows_steprun") as cursor:
        cursor.execute(
            'UPDATE workflows_steprun SET output = \'{"label": "x"}\' WHERE id = %s', [gate.pk]
        )
    report = services.audit_verify()
    assert report.decision == decision.pk
    assert report.problem == (
        "reason, reviewer, shown, the gate's final output no longer match the review.decided event"
    )


def test_decisions_recorded_before_events_carried_them_are_checked_for_what_they_carry(
    task: ReviewTask, reviewer: User
) -> None:
    decision = edit(task, reviewer)
    legacy = {"run": task.run_id, "action": "edit", "reason": decision.reason}
    with owner("workflows_auditevent") as cursor:
        cursor.execute(
            "UPDATE workflows_auditevent SET payload = %s, payload_sha256 = %s"
            " WHERE verb = 'review.decided'",
            [canonical_json({**legacy, "decision": decision.pk}), ""],
        )
    assert services.audit_verify().ok  # unsealed: only the decision check applies
    reinserted(decision, action="approve")
    assert services.audit_verify().problem == "action no longer match the review.decided event"
