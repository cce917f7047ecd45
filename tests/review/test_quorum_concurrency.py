"""Quorum races on real PostgreSQL, with real threads and their own connections: the seats of
one gate settle it exactly once, and one reviewer never takes two seats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from tests.review.conftest import T0, minutes
from tests.review.test_concurrency import group_members, in_threads
from workflows import services
from workflows.errors import Conflict
from workflows.models import AuditEvent, Decision, ReviewTask, Run, StepRun, Workflow

pytestmark = pytest.mark.django_db(transaction=True)

T1 = T0 + minutes(1)


def seats(run: Run) -> list[ReviewTask]:
    return list(ReviewTask.objects.filter(run=run, seat__gt=0).order_by("seat"))


def test_m_reviewers_approving_at_once_settle_the_gate_exactly_once(
    make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run], reviewers: Group
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "quorum": {"required": 3, "of": 6}})
    run = start(workflow)
    tasks = seats(run)
    users = group_members(reviewers, len(tasks))

    def approve(i: int) -> Decision:
        return services.review_decide(
            task=tasks[i], user=users[i], action="approve", claim=True, now=T1
        )

    results = in_threads(len(tasks), approve)
    outcomes = Counter(type(r).__name__ for r in results)
    assert outcomes == {"Decision": 3, "Conflict": 3}, results
    assert all("its quorum settled" in str(r) for r in results if isinstance(r, Conflict))
    gate = StepRun.objects.get(run=run, step_id="check")
    assert (gate.status, gate.outcome) == (StepRun.Status.COMPLETED, "approved")
    assert Counter(t.status for t in seats(run)) == {"decided": 3, "cancelled": 3}
    assert AuditEvent.objects.filter(verb="run.resumed", object_id=str(run.pk)).count() == 1
    assert StepRun.objects.filter(run=run, step_id="book").count() == 1
    assert not ReviewTask.objects.filter(run=run, audience="escalation").exists()


def test_mixed_answers_at_once_escalate_exactly_once(
    make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run], reviewers: Group
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "quorum": {"required": 4, "of": 6}})
    run = start(workflow)
    tasks = seats(run)
    users = group_members(reviewers, len(tasks))
    actions = ["approve", "reject"] * 3

    def answer(i: int) -> Decision:
        reason = "" if actions[i] == "approve" else "no"
        return services.review_decide(
            task=tasks[i], user=users[i], action=actions[i], reason=reason, claim=True, now=T1
        )

    results = in_threads(len(tasks), answer)
    assert not [r for r in results if not isinstance(r, Decision | Conflict)], results
    escalated = ReviewTask.objects.filter(run=run, audience="escalation")
    assert escalated.count() == 1
    assert AuditEvent.objects.filter(verb="review.escalated").count() == 1
    assert not ReviewTask.objects.filter(run=run, status__in=ReviewTask.LIVE, seat__gt=0).exists()
    gate = StepRun.objects.get(run=run, step_id="check")
    assert gate.status == StepRun.Status.WAITING


def test_one_reviewer_racing_for_every_seat_gets_one(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    reviewer: User,
    settings: Any,
) -> None:
    settings.HITL_REVIEW_MAX_CLAIMS = 20
    workflow = make_gate_workflow({"threshold": 0.8, "quorum": {"required": 2, "of": 5}})
    run = start(workflow)
    tasks = seats(run)

    def claim(i: int) -> ReviewTask:
        return services.review_claim(task=tasks[i], user=reviewer, now=T1)

    results = in_threads(len(tasks), claim)
    outcomes = Counter(type(r).__name__ for r in results)
    assert outcomes == {"ReviewTask": 1, "Conflict": 4}, results
    assert ReviewTask.objects.filter(run=run, claimed_by=reviewer).count() == 1

    def claim_next(i: int) -> ReviewTask | None:
        return services.review_claim_next(user=reviewer, now=T1)

    more = in_threads(4, claim_next)
    assert not [r for r in more if r is not None and not isinstance(r, Conflict)], more
    assert ReviewTask.objects.filter(run=run, claimed_by=reviewer).count() == 1
