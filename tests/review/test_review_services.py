"""Claims and decisions: each action, its validation, the reason rule and where the run goes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, transaction

from tests.helpers import drive
from tests.review.conftest import T0, gated_definition, minutes
from workflows import services
from workflows.errors import Conflict, InvalidInput, NotAllowed
from workflows.models import AuditEvent, Decision, ReviewTask, Run, StepRun, Workflow
from workflows.selectors import review_task_list

pytestmark = pytest.mark.django_db

Start = Callable[..., Run]
T1 = T0 + minutes(1)


def claimed(task: ReviewTask, user: User, now: Any = T1) -> ReviewTask:
    return services.review_claim(task=task, user=user, now=now)


def steps(run: Run) -> dict[str, StepRun]:
    return {s.step_id: s for s in StepRun.objects.filter(run=run)}


def verbs(task: ReviewTask) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="review_task", object_id=str(task.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


# --- decisions ------------------------------------------------------------------------------


def test_approve_completes_the_gate_with_the_ai_output(task: ReviewTask, reviewer: User) -> None:
    claimed(task, reviewer)
    decided_at = T1 + timedelta(seconds=95)
    decision = services.review_decide(task=task, user=reviewer, action="approve", now=decided_at)
    assert (decision.action, decision.reviewer, decision.reason) == ("approve", reviewer, "")
    assert decision.time_spent == timedelta(seconds=95)
    assert decision.claimed_at == T1
    assert decision.shown["output"] == {"label": "billing"}
    assert decision.shown["confidence"] == 0.5
    assert decision.shown["votes"] == {"billing": 3, "refund": 2}
    assert decision.shown["gate"]["reason"] == "below_threshold"
    task.refresh_from_db()
    assert (task.status, task.closed_at) == (ReviewTask.Status.DECIDED, decided_at)
    run = drive(task.run, now=decided_at)
    by_id = steps(run)
    gate = by_id["check"]
    assert (gate.status, gate.outcome, gate.output) == (
        "completed",
        "approved",
        {"label": "billing"},
    )
    assert gate.meta["review"]["action"] == "approve"
    assert gate.meta["reason"] == "below_threshold"  # the routing record stays
    assert by_id["book"].output == {"booked": "billing"}
    assert "refuse" not in by_id
    assert (run.status, run.outcome) == (Run.Status.COMPLETED, "approved")
    assert verbs(task) == ["review.created", "review.claimed", "review.decided"]


def test_edit_puts_the_reviewers_output_on_the_gate_and_leaves_the_ai_step_alone(
    task: ReviewTask, reviewer: User
) -> None:
    before = steps(task.run)["classify"]
    claimed(task, reviewer)
    decision = services.review_decide(
        task=task,
        user=reviewer,
        action="edit",
        output={"label": "refund"},
        reason="customer asks for money back",
        now=T1,
    )
    assert decision.edited_output == {"label": "refund"}
    run = drive(task.run, now=T1)
    after = steps(run)
    assert after["check"].output == {"label": "refund"}
    assert after["check"].outcome == "approved"
    assert after["book"].output == {"booked": "refund"}
    guarded = after["classify"]
    assert (guarded.output, guarded.confidence, guarded.meta, guarded.finished_at) == (
        before.output,
        before.confidence,
        before.meta,
        before.finished_at,
    )
    assert run.outcome == "approved"


def test_reject_goes_down_the_rejected_branch(task: ReviewTask, reviewer: User) -> None:
    claimed(task, reviewer)
    services.review_decide(task=task, user=reviewer, action="reject", reason="spam", now=T1)
    run = drive(task.run, now=T1)
    by_id = steps(run)
    assert (by_id["check"].outcome, by_id["check"].output) == ("rejected", None)
    assert by_id["refuse"].output == {"refused": True}
    assert "book" not in by_id
    assert (run.status, run.outcome) == (Run.Status.COMPLETED, "rejected")


def test_an_unrouted_rejection_ends_the_run_rejected(
    make_gate_workflow: Callable[..., Workflow], start: Start, reviewer: User
) -> None:
    definition = gated_definition("plain")
    del definition["steps"][1]["next"]
    run = start(make_gate_workflow(definition=definition))
    task = ReviewTask.objects.get(run=run)
    claimed(task, reviewer)
    services.review_decide(task=task, user=reviewer, action="reject", reason="wrong", now=T1)
    run = drive(run, now=T1)
    assert (run.status, run.outcome) == (Run.Status.COMPLETED, "rejected")
    assert set(steps(run)) == {"classify", "check"}


def test_escalate_hands_the_task_to_the_escalation_group_and_the_run_waits(
    task: ReviewTask, reviewer: User, escalator: User
) -> None:
    claimed(task, reviewer)
    decision = services.review_decide(
        task=task, user=reviewer, action="escalate", reason="legal question", now=T1
    )
    assert decision.action == "escalate"
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED
    successor = ReviewTask.objects.get(escalated_from=task)
    assert (successor.audience, successor.status, successor.reason) == (
        "escalation",
        "open",
        "escalated",
    )
    assert (successor.step_run, successor.guarded, successor.priority) == (
        task.step_run,
        task.guarded,
        task.priority,
    )
    # A fresh SLA for the escalation level.
    assert successor.due_at == T1 + minutes(60)
    run = Run.objects.get(pk=task.run_id)
    assert run.status == Run.Status.WAITING
    assert steps(run)["check"].status == StepRun.Status.WAITING
    # The reviewer may not take the escalated task; the escalation group decides it.
    with pytest.raises(NotAllowed):
        services.review_claim(task=successor, user=reviewer, now=T1)
    claimed(successor, escalator)
    services.review_decide(task=successor, user=escalator, action="approve", now=T1)
    run = drive(run, now=T1)
    assert (run.status, run.outcome) == (Run.Status.COMPLETED, "approved")
    assert verbs(task)[-2:] == ["review.decided", "review.escalated"]


def test_escalation_is_one_level_deep(task: ReviewTask, reviewer: User, escalator: User) -> None:
    claimed(task, reviewer)
    services.review_decide(task=task, user=reviewer, action="escalate", reason="unsure", now=T1)
    successor = ReviewTask.objects.get(escalated_from=task)
    claimed(successor, escalator)
    with pytest.raises(InvalidInput, match="escalation is one level deep"):
        services.review_decide(
            task=successor, user=escalator, action="escalate", reason="also unsure", now=T1
        )
    successor.refresh_from_db()
    assert successor.status == ReviewTask.Status.CLAIMED


@pytest.mark.parametrize(
    ("action", "kwargs", "error", "message"),
    [
        ("approve-ish", {}, InvalidInput, "unknown action 'approve-ish'"),
        ("reject", {}, InvalidInput, "a reason is required to reject"),
        ("reject", {"reason": "   "}, InvalidInput, "a reason is required to reject"),
        ("edit", {"output": {"label": "refund"}}, InvalidInput, "a reason is required to edit"),
        ("escalate", {}, InvalidInput, "a reason is required to escalate"),
        ("edit", {"reason": "r"}, InvalidInput, "edit needs the edited output"),
        (
            "edit",
            {"reason": "r", "output": {"label": "groceries"}},
            InvalidInput,
            "label: 'groceries' is not one of",
        ),
        (
            "edit",
            {"reason": "r", "output": {"label": "refund", "extra": 1}},
            InvalidInput,
            "Additional properties are not allowed",
        ),
        (
            "edit",
            {"reason": "r", "output": {"label": "billing"}},
            InvalidInput,
            "the AI's answer unchanged: approve it instead",
        ),
        ("approve", {"output": {"label": "refund"}}, InvalidInput, "only edit takes an output"),
        ("reject", {"reason": "x" * 2001}, InvalidInput, "the reason is too long"),
    ],
)
def test_it_refuses_a_bad_decision_and_changes_nothing(
    task: ReviewTask,
    reviewer: User,
    action: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    claimed(task, reviewer)
    with pytest.raises(error, match=message):
        services.review_decide(task=task, user=reviewer, action=action, now=T1, **kwargs)
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED
    assert not Decision.objects.exists()
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING


def test_approve_needs_no_reason(task: ReviewTask, reviewer: User) -> None:
    claimed(task, reviewer)
    decision = services.review_decide(task=task, user=reviewer, action="approve", now=T1)
    assert decision.reason == ""


def test_an_edit_without_an_output_schema_must_be_a_json_object(
    make_gate_workflow: Callable[..., Workflow], start: Start, reviewer: User
) -> None:
    definition = gated_definition("free")
    definition["steps"][0]["config"] = {}
    run = start(make_gate_workflow(definition=definition), {"summary": "late parcel"})
    task = ReviewTask.objects.get(run=run)
    claimed(task, reviewer)
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        services.review_decide(task=task, user=reviewer, action="edit", reason="r", output="x")
    services.review_decide(
        task=task, user=reviewer, action="edit", reason="r", output={"summary": "lost"}, now=T1
    )
    assert steps(run)["check"].output == {"summary": "lost"}


def test_it_refuses_to_decide_without_a_claim(task: ReviewTask, reviewer: User) -> None:
    with pytest.raises(Conflict, match=f"you have not claimed task {task.pk}: claim it first"):
        services.review_decide(task=task, user=reviewer, action="approve", now=T1)


def test_it_refuses_to_decide_a_task_claimed_by_someone_else(
    task: ReviewTask, reviewer: User, second_reviewer: User
) -> None:
    claimed(task, second_reviewer)
    with pytest.raises(Conflict, match=f"task {task.pk} is claimed by second until"):
        services.review_decide(task=task, user=reviewer, action="approve", now=T1)


def test_it_rejects_expired_claim(task: ReviewTask, reviewer: User, settings: Any) -> None:
    claimed(task, reviewer)
    lapsed = T1 + settings.HITL_REVIEW_CLAIM
    with pytest.raises(Conflict, match=r"your claim on task \d+ expired at .*; claim it again"):
        services.review_decide(task=task, user=reviewer, action="approve", now=lapsed)
    assert not Decision.objects.exists()


def test_it_refuses_to_decide_a_decided_task(task: ReviewTask, reviewer: User) -> None:
    claimed(task, reviewer)
    services.review_decide(task=task, user=reviewer, action="approve", now=T1)
    with pytest.raises(Conflict, match=f"task {task.pk} has already been decided by reviewer"):
        services.review_decide(task=task, user=reviewer, action="reject", reason="x", now=T1)
    with pytest.raises(Conflict, match="already been decided"):
        services.review_claim(task=task, user=reviewer, now=T1)
    assert Decision.objects.count() == 1


def test_a_decision_is_immutable(task: ReviewTask, reviewer: User) -> None:
    claimed(task, reviewer)
    decision = services.review_decide(task=task, user=reviewer, action="approve", now=T1)
    with pytest.raises(DatabaseError, match="decisions are immutable"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).update(action="reject")
    decision.refresh_from_db()
    assert decision.action == "approve"


def test_deciding_a_cancelled_run_conflicts(
    task: ReviewTask, reviewer: User, system: services.Actor
) -> None:
    claimed(task, reviewer)
    services.run_cancel(run=task.run, actor=system, now=T1)
    with pytest.raises(Conflict, match="cancelled with its run"):
        services.review_decide(task=task, user=reviewer, action="approve", now=T1)


# --- claims ---------------------------------------------------------------------------------


def test_a_claim_is_a_lease(task: ReviewTask, reviewer: User, settings: Any) -> None:
    task = claimed(task, reviewer)
    assert (task.status, task.claimed_by, task.claimed_at) == ("claimed", reviewer, T1)
    assert task.claim_expires_at == T1 + settings.HITL_REVIEW_CLAIM
    renewed = services.review_renew(task=task, user=reviewer, now=T1 + minutes(10))
    assert renewed.claim_expires_at == T1 + minutes(10) + settings.HITL_REVIEW_CLAIM
    # Renewal keeps the claim's start: time spent runs from the first claim.
    assert renewed.claimed_at == T1
    # Claiming one's own task again renews it too, without a new audit event.
    again = claimed(task, reviewer, now=T1 + minutes(12))
    assert again.claimed_at == T1
    assert verbs(task).count("review.claimed") == 1


def test_it_refuses_to_claim_a_task_someone_holds(
    task: ReviewTask, reviewer: User, second_reviewer: User, settings: Any
) -> None:
    claimed(task, reviewer)
    with pytest.raises(Conflict, match="is claimed by reviewer until 2030-01-07 09:16 UTC"):
        claimed(task, second_reviewer, now=T1 + minutes(5))
    # Once the lease lapses, anyone in the group may take it, even before the sweeper runs.
    lapsed = T1 + settings.HITL_REVIEW_CLAIM
    taken = claimed(task, second_reviewer, now=lapsed)
    assert (taken.claimed_by, taken.claimed_at) == (second_reviewer, lapsed)


def test_renewing_needs_a_live_claim(
    task: ReviewTask, reviewer: User, second_reviewer: User, settings: Any
) -> None:
    with pytest.raises(Conflict, match="claim it first"):
        services.review_renew(task=task, user=reviewer, now=T1)
    claimed(task, reviewer)
    with pytest.raises(Conflict, match="is claimed by reviewer"):
        services.review_renew(task=task, user=second_reviewer, now=T1)
    with pytest.raises(Conflict, match="expired at"):
        services.review_renew(task=task, user=reviewer, now=T1 + settings.HITL_REVIEW_CLAIM)


def test_release_gives_the_task_back(
    task: ReviewTask, reviewer: User, second_reviewer: User
) -> None:
    claimed(task, reviewer)
    with pytest.raises(Conflict, match="is claimed by reviewer"):
        services.review_release(task=task, user=second_reviewer, now=T1)
    released = services.review_release(task=task, user=reviewer, now=T1)
    assert (released.status, released.claimed_by, released.claim_expires_at) == ("open", None, None)
    assert services.review_claim_next(user=second_reviewer, now=T1) == task
    assert "review.released" in verbs(task)


def test_skip_stops_next_task_from_offering_it_again(
    task: ReviewTask, reviewer: User, second_reviewer: User
) -> None:
    assert services.review_claim_next(user=reviewer, now=T1) == task
    skipped = services.review_skip(task=task, user=reviewer, now=T1)
    assert skipped.status == ReviewTask.Status.OPEN
    assert services.review_claim_next(user=reviewer, now=T1) is None
    assert services.review_claim_next(user=second_reviewer, now=T1) == task
    # A skipped task can still be claimed on purpose.
    services.review_release(task=task, user=second_reviewer, now=T1)
    assert claimed(task, reviewer).claimed_by == reviewer


def test_claim_next_follows_the_queue_order(
    make_gate_workflow: Callable[..., Workflow], start: Start, reviewer: User
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "priority": "input.p", "sla_minutes": 60})
    nosla = make_gate_workflow({"threshold": 0.8, "priority": "input.p"}, slug="nosla")

    def make(flow: Workflow, p: int, at: int) -> ReviewTask:
        return ReviewTask.objects.get(run=start(flow, p=p, now=T0 + minutes(at)))

    low = make(workflow, 1, 0)
    no_sla = make(nosla, 5, 0)
    late = make(workflow, 5, 2)
    early = make(workflow, 5, 1)
    early_twin = make(workflow, 5, 1)
    expected = [early, early_twin, late, no_sla, low]
    # The listing and "next task" share the one order.
    assert list(review_task_list(user=reviewer, status="open")) == expected
    got = [services.review_claim_next(user=reviewer, now=T0 + minutes(5)) for _ in expected]
    assert got == expected
    assert services.review_claim_next(user=reviewer, now=T0 + minutes(5)) is None


def test_claim_next_can_stay_in_one_workflow(
    make_gate_workflow: Callable[..., Workflow], start: Start, reviewer: User
) -> None:
    first = make_gate_workflow()
    second = make_gate_workflow(slug="second")
    start(first)
    other = ReviewTask.objects.get(run=start(second))
    assert services.review_claim_next(user=reviewer, workflow=second, now=T1) == other
    assert services.review_claim_next(user=reviewer, workflow=second, now=T1) is None


def test_reassign_is_for_workflow_admins(
    task: ReviewTask,
    owner: User,
    reviewer: User,
    second_reviewer: User,
    outsider: User,
) -> None:
    claimed(task, reviewer)
    with pytest.raises(NotAllowed, match="only the workflow's admins may reassign"):
        services.review_reassign(task=task, user=reviewer, to=second_reviewer, now=T1)
    with pytest.raises(NotAllowed, match="no such task"):
        services.review_reassign(task=task, user=outsider, to=outsider, now=T1)
    with pytest.raises(InvalidInput, match="outsider may not decide task"):
        services.review_reassign(task=task, user=owner, to=outsider, now=T1)
    moved = services.review_reassign(task=task, user=owner, to=second_reviewer, now=T1)
    # The claim of the previous holder is dropped; the task is now the assignee's to take.
    assert (moved.status, moved.claimed_by, moved.assignee) == ("open", None, second_reviewer)
    assert services.review_claim_next(user=reviewer, now=T1) is None
    with pytest.raises(Conflict, match="is assigned to second"):
        claimed(task, reviewer)
    assert services.review_claim_next(user=second_reviewer, now=T1) == task
    # Back to the pool.
    services.review_reassign(task=task, user=owner, to=None, now=T1)
    task.refresh_from_db()
    assert (task.status, task.assignee) == ("open", None)
    assert "review.reassigned" in verbs(task)


def test_an_assignee_who_skips_returns_the_task_to_the_pool(
    task: ReviewTask, owner: User, reviewer: User, second_reviewer: User
) -> None:
    services.review_reassign(task=task, user=owner, to=reviewer, now=T1)
    claimed(task, reviewer)
    services.review_skip(task=task, user=reviewer, now=T1)
    task.refresh_from_db()
    assert task.assignee is None
    assert services.review_claim_next(user=second_reviewer, now=T1) == task
