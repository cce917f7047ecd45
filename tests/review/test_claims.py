"""Claims are leases with limits: a cap per reviewer and a maximum time per claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.review.conftest import T0, minutes
from workflows import services
from workflows.errors import Conflict
from workflows.models import AuditEvent, ReviewTask


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.HITL_REVIEW_CLAIM = timedelta(minutes=15)
    settings.HITL_REVIEW_MAX_CLAIM_TIME = timedelta(minutes=40)
    settings.HITL_REVIEW_MAX_CLAIMS = 2


def test_renewals_never_keep_a_claim_past_the_maximum(task: ReviewTask, reviewer: User) -> None:
    services.review_claim(task=task, user=reviewer, now=T0)
    renewed = services.review_renew(task=task, user=reviewer, now=T0 + minutes(10))
    assert renewed.claim_expires_at == T0 + minutes(25)
    services.review_renew(task=task, user=reviewer, now=T0 + minutes(20))
    renewed = services.review_renew(task=task, user=reviewer, now=T0 + minutes(30))
    assert renewed.claim_expires_at == T0 + minutes(40)  # not 45: the maximum
    with pytest.raises(Conflict, match=r"cannot be renewed past .* \(at most 40 min per claim\)"):
        services.review_renew(task=task, user=reviewer, now=T0 + minutes(35))
    # Claiming again while holding it is a renewal, with the same limit.
    services.review_claim(task=task, user=reviewer, now=T0 + minutes(36))
    task.refresh_from_db()
    assert task.claim_expires_at == T0 + minutes(40)


def test_the_sweeper_gives_a_task_back_at_the_maximum_claim_time(
    task: ReviewTask, reviewer: User
) -> None:
    services.review_claim(task=task, user=reviewer, now=T0)
    for at in (10, 20, 30):
        services.review_renew(task=task, user=reviewer, now=T0 + minutes(at))
    assert services.review_claims_expire(now=T0 + minutes(39)) == 0
    assert services.review_claims_expire(now=T0 + minutes(40)) == 1
    task.refresh_from_db()
    assert (task.status, task.claimed_by) == (ReviewTask.Status.OPEN, None)
    event = AuditEvent.objects.get(verb="review.claim_expired")
    assert event.payload == {"claimed_by": reviewer.pk, "why": "max_claim_time"}


def test_a_lapsed_claim_is_audited_as_lapsed(task: ReviewTask, reviewer: User) -> None:
    services.review_claim(task=task, user=reviewer, now=T0)
    assert services.review_claims_expire(now=T0 + minutes(15)) == 1
    event = AuditEvent.objects.get(verb="review.claim_expired")
    assert event.payload["why"] == "lapsed"


def test_a_reviewer_holds_at_most_the_cap(
    workflow: Any, start: Any, reviewer: User, second_reviewer: User
) -> None:
    tasks = [ReviewTask.objects.get(run=start(workflow)) for _ in range(3)]
    services.review_claim(task=tasks[0], user=reviewer, now=T0)
    assert services.review_claim_next(user=reviewer, now=T0) == tasks[1]
    with pytest.raises(Conflict, match=f"you already hold 2 claims \\(#{tasks[0].pk}, #"):
        services.review_claim(task=tasks[2], user=reviewer, now=T0)
    with pytest.raises(Conflict, match="you already hold 2 claims"):
        services.review_claim_next(user=reviewer, now=T0)
    assert ReviewTask.objects.get(pk=tasks[2].pk).status == ReviewTask.Status.OPEN
    # Renewing what one holds is not a new claim; lapsed claims do not count.
    services.review_claim(task=tasks[0], user=reviewer, now=T0 + minutes(1))
    assert services.review_claim(task=tasks[2], user=reviewer, now=T0 + minutes(16)) == tasks[2]
    # Another reviewer has their own cap.
    assert services.review_claim_next(user=second_reviewer, now=T0 + minutes(16)) is not None


def test_admins_release_claims_others_hold_and_reviewers_cannot(
    task: ReviewTask, reviewer: User, second_reviewer: User, owner: User
) -> None:
    services.review_claim(task=task, user=reviewer, now=T0)
    with pytest.raises(Conflict, match="is claimed by reviewer"):
        services.review_release(task=task, user=second_reviewer, now=T0)
    services.review_release(task=task, user=owner, now=T0)
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN
    with pytest.raises(Conflict, match="nobody holds a claim"):
        services.review_release(task=task, user=owner, now=T0)
