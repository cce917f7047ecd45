"""The permission matrix, on services and selectors: admin, reviewer, escalation member,
another workflow's reviewer, a superuser and a user with no role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.review.conftest import T0, minutes
from workflows import services
from workflows.access import access_task_decide, access_task_view, access_workflow_admin
from workflows.errors import NotAllowed
from workflows.models import ReviewTask, Run, Workflow
from workflows.selectors import (
    review_task_counts,
    review_task_get,
    review_task_list,
    review_tasks_decidable,
    workflows_with_tasks_visible,
)

pytestmark = pytest.mark.django_db

T1 = T0 + minutes(1)


@pytest.fixture
def tasks(
    workflow: Workflow, start: Callable[..., Run], reviewer: User, escalator: User
) -> dict[str, ReviewTask]:
    """An open reviewer task, and an escalated one with its escalation-level successor."""
    open_task = ReviewTask.objects.get(run=start(workflow))
    source = ReviewTask.objects.get(run=start(workflow))
    services.review_claim(task=source, user=reviewer, now=T0)
    services.review_decide(task=source, user=reviewer, action="escalate", reason="legal", now=T0)
    return {
        "open": open_task,
        "escalated": source,
        "escalation": ReviewTask.objects.get(escalated_from=source),
    }


def visible(user: User) -> set[str]:
    return {task.reason for task in review_task_list(user=user)}


def test_the_queue_shows_each_role_its_tasks(
    tasks: dict[str, ReviewTask],
    owner: User,
    reviewer: User,
    escalator: User,
    other_reviewer: User,
    outsider: User,
    superuser: User,
) -> None:
    every = {tasks["open"].pk, tasks["escalated"].pk, tasks["escalation"].pk}

    def ids(user: User, **filters: Any) -> set[int]:
        return {task.pk for task in review_task_list(user=user, **filters)}

    assert ids(owner) == every
    assert ids(superuser) == every
    # Reviewers see their workflow's tasks, escalated ones included, but decide only their own.
    assert ids(reviewer) == every
    assert ids(reviewer, actionable=True) == {tasks["open"].pk, tasks["escalated"].pk}
    assert ids(escalator) == {tasks["escalation"].pk}
    assert ids(other_reviewer) == set()
    assert ids(outsider) == set()
    assert ids(reviewer, status="open") == {tasks["open"].pk, tasks["escalation"].pk}
    assert ids(reviewer, status=["escalated"]) == {tasks["escalated"].pk}


def test_counts_follow_visibility(
    tasks: dict[str, ReviewTask], reviewer: User, escalator: User, outsider: User
) -> None:
    counts = review_task_counts(user=reviewer)
    assert counts == {"open": 2, "claimed": 0, "decided": 0, "escalated": 1, "cancelled": 0}
    assert review_task_counts(user=escalator)["open"] == 1
    assert sum(review_task_counts(user=outsider).values()) == 0


@pytest.mark.parametrize(
    ("who", "task", "can_see", "can_decide"),
    [
        ("owner", "open", True, True),
        ("owner", "escalation", True, True),
        ("superuser", "escalation", True, True),
        ("reviewer", "open", True, True),
        ("reviewer", "escalation", True, False),
        ("escalator", "open", False, False),
        ("escalator", "escalation", True, True),
        ("other_reviewer", "open", False, False),
        ("outsider", "open", False, False),
        ("outsider", "escalation", False, False),
    ],
)
def test_the_permission_matrix(
    request: pytest.FixtureRequest,
    tasks: dict[str, ReviewTask],
    who: str,
    task: str,
    can_see: bool,
    can_decide: bool,
) -> None:
    user = request.getfixturevalue(who)
    target = tasks[task]
    # The queue's per-workflow reading of the same rules agrees.
    workflows = workflows_with_tasks_visible(user=user)
    assert (target.pk in review_tasks_decidable(tasks=[target], workflows=workflows)) is can_decide
    if can_see:
        assert access_task_view(user=user, task=target) == target
        assert review_task_get(user=user, task_id=target.pk).task == target
    else:
        with pytest.raises(NotAllowed, match="no such task, or you may not see it"):
            access_task_view(user=user, task=target)
        with pytest.raises(NotAllowed):
            review_task_get(user=user, task_id=target.pk)
    if can_decide:
        assert access_task_decide(user=user, task=target) == target
        services.review_claim(task=target, user=user, now=T1)
        services.review_decide(task=target, user=user, action="approve", now=T1)
        target.refresh_from_db()
        assert target.status == ReviewTask.Status.DECIDED
    else:
        with pytest.raises(NotAllowed):
            services.review_claim(task=target, user=user, now=T1)
        with pytest.raises(NotAllowed):
            services.review_decide(task=target, user=user, action="approve", now=T1)
        assert services.review_claim_next(user=user, now=T1) != target
        target.refresh_from_db()
        assert target.status == ReviewTask.Status.OPEN


def test_no_role_means_nothing_to_claim(
    tasks: dict[str, ReviewTask], other_reviewer: User, outsider: User
) -> None:
    assert services.review_claim_next(user=outsider, now=T1) is None
    assert services.review_claim_next(user=other_reviewer, now=T1) is None


def test_an_inactive_admin_sees_nothing(tasks: dict[str, ReviewTask], owner: User) -> None:
    owner.is_active = False
    owner.save()
    assert visible(owner) == set()
    with pytest.raises(NotAllowed):
        services.review_claim(task=tasks["open"], user=owner, now=T1)


def test_workflow_admin_access(workflow: Workflow, owner: User, reviewer: User) -> None:
    assert access_workflow_admin(user=owner, workflow=workflow) == workflow
    with pytest.raises(NotAllowed, match="only the admins of workflow 'triage'"):
        access_workflow_admin(user=reviewer, workflow=workflow)


def test_the_task_page_has_what_the_reviewer_needs(
    tasks: dict[str, ReviewTask], reviewer: User, owner: User
) -> None:
    task = tasks["open"]
    services.review_claim(task=task, user=reviewer, now=T1)
    detail = review_task_get(user=reviewer, task_id=task.pk)
    assert detail.input["answer"] == {"label": "billing"}
    assert detail.shown["output"] == {"label": "billing"}
    assert detail.shown["confidence"] == 0.5
    assert detail.shown["votes"] == {"billing": 3, "refund": 2}
    assert len(detail.shown["samples"]) == 5
    assert detail.shown["model"] == "test:scored"
    assert detail.shown["gate"] == {
        "reason": "below_threshold",
        "label": "billing",
        "threshold": 0.8,
        "audit_rate": 0.0,
    }
    assert detail.cost["calls"] == 1
    assert str(detail.cost["cost_usd"]) == "0.002100"
    assert detail.output_schema is not None
    assert detail.output_schema["properties"]["label"]["enum"] == ["billing", "refund", "bug"]
    assert [s.step_id for s in detail.steps] == ["classify", "check"]
    assert (detail.can_decide, detail.can_reassign, detail.claimed_by_me) == (True, False, True)
    assert review_task_get(user=owner, task_id=task.pk).can_reassign is True
    # The escalation-level task shows the decision that sent it there.
    escalation = review_task_get(user=owner, task_id=tasks["escalation"].pk)
    assert [(d.action, d.reason) for d in escalation.decisions] == [("escalate", "legal")]
    assert (
        review_task_get(user=owner, task_id=tasks["escalated"].pk).escalated_to
        == (tasks["escalation"])
    )


def test_an_unknown_task_looks_like_a_forbidden_one(reviewer: User) -> None:
    with pytest.raises(NotAllowed, match="no such task, or you may not see it"):
        review_task_get(user=reviewer, task_id=987654321)


def test_moving_a_workflow_to_another_group_moves_its_open_tasks(
    tasks: dict[str, ReviewTask], workflow: Workflow, reviewer: User, other_reviewer: User
) -> None:
    workflow.reviewer_group = other_reviewer.groups.get()
    workflow.save()
    assert services.review_claim_next(user=reviewer, now=T1) is None
    assert services.review_claim_next(user=other_reviewer, now=T1) == tasks["open"]
