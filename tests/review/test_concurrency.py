"""Races on real PostgreSQL, with real threads: one task per claim, one decision per task."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from tests.review.conftest import T0, minutes
from workflows import services
from workflows.errors import Conflict
from workflows.models import Decision, ReviewTask, Run, StepRun, Workflow

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
T1 = T0 + minutes(1)


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `count` threads released together; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_claims_by_one_reviewer_never_pass_the_claims_cap(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    reviewer: User,
    settings: Any,
) -> None:
    settings.HITL_REVIEW_MAX_CLAIMS = 3
    workflow = make_gate_workflow({"threshold": 0.8})
    for _ in range(12):
        start(workflow)

    def claim_next(i: int) -> int | None:
        task = services.review_claim_next(user=reviewer, now=T1)
        return task.pk if task else None

    results = in_threads(THREADS, claim_next)
    won = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 3 and len(refused) == THREADS - 3, results
    assert all("you already hold 3 claims" in str(r) for r in refused)
    assert ReviewTask.objects.filter(claimed_by=reviewer).count() == 3


def group_members(group: Group, count: int) -> list[User]:
    users = [User.objects.create_user(f"r{i}", f"r{i}@example.com", "pw") for i in range(count)]
    for user in users:
        user.groups.add(group)
    return users


def test_concurrent_claim_next_never_hands_out_a_task_twice(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    reviewers: Group,
    settings: Any,
) -> None:
    # Each reviewer takes many tasks here; the claims cap has its own test below.
    settings.HITL_REVIEW_MAX_CLAIMS = 1000
    workflow = make_gate_workflow({"threshold": 0.8, "priority": "input.p", "sla_minutes": 30})
    tasks = 48
    for i in range(tasks):
        start(workflow, p=i % 3)
    users = group_members(reviewers, THREADS)

    def claim_until_empty(i: int) -> list[int]:
        mine = []
        while (task := services.review_claim_next(user=users[i], now=T1)) is not None:
            mine.append(task.pk)
        return mine

    results = in_threads(THREADS, claim_until_empty)
    assert not [r for r in results if isinstance(r, Exception)], results
    claimed = [pk for mine in results for pk in mine]
    assert len(claimed) == len(set(claimed)) == tasks
    assert not ReviewTask.objects.exclude(status=ReviewTask.Status.CLAIMED).exists()
    # Every task is held by the thread that got it, and only by it.
    holders = dict(ReviewTask.objects.values_list("pk", "claimed_by_id"))
    for user, mine in zip(users, results, strict=True):
        assert all(holders[pk] == user.pk for pk in mine)


def test_two_decisions_on_one_task_have_one_winner(
    workflow: Workflow, start: Callable[..., Run], reviewer: User
) -> None:
    run = start(workflow)
    task = ReviewTask.objects.get(run=run)
    services.review_claim(task=task, user=reviewer, now=T1)
    # A double-submitted form: approve and reject, several times over, all at once.
    actions = ["approve", "reject"] * (THREADS // 2)

    def decide(i: int) -> Decision:
        return services.review_decide(
            task=task, user=reviewer, action=actions[i], reason="race", now=T1
        )

    results = in_threads(THREADS, decide)
    winners = [r for r in results if isinstance(r, Decision)]
    losers = [r for r in results if not isinstance(r, Decision)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in losers), losers
    assert all("has already been decided by reviewer" in str(r) for r in losers)
    assert Decision.objects.filter(task=task).count() == 1
    gate = StepRun.objects.get(run=run, step_id="check")
    expected = "approved" if winners[0].action == "approve" else "rejected"
    assert (gate.status, gate.outcome) == (StepRun.Status.COMPLETED, expected)
    # The run was resumed once: exactly one branch step exists.
    assert StepRun.objects.filter(run=run, step_id__in=["book", "refuse"]).count() == 1


def test_reviewers_racing_for_one_task_one_claims_and_decides(
    workflow: Workflow, start: Callable[..., Run], reviewers: Group
) -> None:
    task = ReviewTask.objects.get(run=start(workflow))
    users = group_members(reviewers, THREADS)

    def claim_and_approve(i: int) -> Decision:
        services.review_claim(task=task, user=users[i], now=T1)
        return services.review_decide(task=task, user=users[i], action="approve", now=T1)

    results = in_threads(THREADS, claim_and_approve)
    outcomes = Counter(type(r).__name__ for r in results)
    assert outcomes == {"Decision": 1, "Conflict": THREADS - 1}
    assert Decision.objects.get(task=task).reviewer in users


def test_a_sweep_racing_a_decision_never_escalates_a_decided_task(
    workflow: Workflow, start: Callable[..., Run], reviewer: User, settings: Any
) -> None:
    task = ReviewTask.objects.get(run=start(workflow))
    services.review_claim(task=task, user=reviewer, now=T0 + minutes(50))
    # The claim is still live at due time; only once it lapses may the sweeper escalate.
    lapse = T0 + minutes(50) + settings.HITL_REVIEW_CLAIM

    def work(i: int) -> Any:
        if i == 0:
            # The reviewer's clock: a second before the lease ends.
            just_in_time = lapse - timedelta(seconds=1)
            return services.review_decide(
                task=task, user=reviewer, action="approve", now=just_in_time
            )
        return services.review_sweep(now=lapse)

    results = in_threads(4, work)
    task.refresh_from_db()
    if isinstance(results[0], Decision):
        assert task.status == ReviewTask.Status.DECIDED
        assert not ReviewTask.objects.filter(escalated_from=task).exists()
    else:
        # The sweeper freed the lapsed claim first: the decision lost cleanly and the task moved on.
        assert isinstance(results[0], Conflict)
        assert task.status == ReviewTask.Status.ESCALATED
        assert ReviewTask.objects.filter(escalated_from=task).count() == 1
    assert ReviewTask.objects.filter(run=task.run, status__in=ReviewTask.LIVE).count() <= 1
