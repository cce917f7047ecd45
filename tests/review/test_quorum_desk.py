"""A quorum on the desk: "Review 2 of 3", the other answers hidden until one's own is in
(no anchoring), the escalation showing every answer, and a second seat refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from tests.factories import UserFactory
from tests.review.conftest import T0, minutes
from workflows import selectors, services
from workflows.models import ReviewTask, Run, Workflow

pytestmark = pytest.mark.django_db

T1 = T0 + minutes(1)
SECRET_A = "first reviewer thinks it is a refund"
SECRET_C = "third reviewer says it is a bug"


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_of(user: User, task: ReviewTask) -> str:
    response = client_for(user).get(reverse("review:task", args=[task.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def third_reviewer(reviewers: Group) -> User:
    return UserFactory(username="third", groups=[reviewers])


@pytest.fixture
def run(make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run]) -> Run:
    return start(make_gate_workflow({"threshold": 0.8, "quorum": {"required": 2, "of": 3}}))


def seats(run: Run) -> list[ReviewTask]:
    return list(ReviewTask.objects.filter(run=run, seat__gt=0).order_by("seat"))


def test_a_seat_says_which_review_it_is_and_keeps_its_shortcuts(
    run: Run, second_reviewer: User
) -> None:
    page = page_of(second_reviewer, seats(run)[1])
    assert "Review 2 of 3" in page
    assert "2 of 3 must agree" in page
    assert "0 of 3 decided" in page
    for key in ("a", "r", "e", "x"):
        assert f'aria-keyshortcuts="{key}"' in page


def test_other_answers_stay_hidden_until_the_viewer_has_decided(
    run: Run, reviewer: User, second_reviewer: User
) -> None:
    one, two, _ = seats(run)
    services.review_decide(
        task=one,
        user=reviewer,
        action="edit",
        output={"label": "refund"},
        reason=SECRET_A,
        claim=True,
        now=T1,
    )
    before = page_of(second_reviewer, two)
    assert "1 of 3 decided" in before
    assert SECRET_A not in before and 'id="quorum-answers"' not in before
    # Nor on the decided seat itself: its outcome is the first reviewer's answer.
    decided_seat = page_of(second_reviewer, one)
    assert SECRET_A not in decided_seat and "edited and approved" not in decided_seat
    assert "This task has already been decided." in decided_seat
    # The one who decided sees their own answer.
    assert SECRET_A in page_of(reviewer, one)
    response = client_for(second_reviewer).post(
        reverse("review:decide", args=[two.pk]), {"action": "approve"}
    )
    assert response.status_code == 302
    after = page_of(second_reviewer, two)
    assert 'id="quorum-answers"' in after and SECRET_A in after
    assert "2 of 3 decided" in after


def test_the_escalation_shows_every_answer_side_by_side(
    run: Run, reviewer: User, second_reviewer: User, third_reviewer: User, escalator: User
) -> None:
    one, two, three = seats(run)
    services.review_decide(
        task=one, user=reviewer, action="edit", output={"label": "refund"}, reason=SECRET_A,
        claim=True, now=T1,
    )  # fmt: skip
    services.review_decide(task=two, user=second_reviewer, action="approve", claim=True, now=T1)
    services.review_decide(
        task=three, user=third_reviewer, action="edit", output={"label": "bug"}, reason=SECRET_C,
        claim=True, now=T1,
    )  # fmt: skip
    escalation = ReviewTask.objects.get(run=run, audience="escalation")
    page = page_of(escalator, escalation)
    assert 'id="quorum-answers"' in page
    answers = page.split('id="quorum-answers"')[1].split("</section>")[0]
    for text in ("reviewer", "second", "third", SECRET_A, SECRET_C, "refund", "bug", "billing"):
        assert text in answers
    assert "the quorum did not agree" in page
    assert 'aria-keyshortcuts="a"' in page


def test_a_second_seat_is_a_clear_conflict_on_the_desk(run: Run, reviewer: User) -> None:
    one, two, _ = seats(run)
    client = client_for(reviewer)
    assert client.post(reverse("review:claim", args=[one.pk])).status_code == 302
    response = client.post(reverse("review:claim", args=[two.pk]))
    assert response.status_code == 409
    assert f"you hold seat 1 of this review (task {one.pk})" in response.content.decode()
    refused = client.post(reverse("review:decide", args=[two.pk]), {"action": "approve"})
    assert refused.status_code == 409
    two.refresh_from_db()
    assert two.status == ReviewTask.Status.OPEN


def test_the_detail_hides_siblings_answers_from_a_reviewer_yet_to_decide(
    run: Run, reviewer: User, second_reviewer: User
) -> None:
    one, two, _ = seats(run)
    services.review_decide(task=one, user=reviewer, action="approve", claim=True, now=T1)
    hidden = selectors.review_task_get(user=second_reviewer, task_id=one.pk)
    assert hidden.decision is None and hidden.decisions == [] and hidden.final_output is None
    assert hidden.quorum is not None and hidden.quorum.answers is None
    assert (hidden.quorum.seat, hidden.quorum.of, hidden.quorum.required) == (1, 3, 2)
    assert hidden.quorum.decided == 1
    own = selectors.review_task_get(user=reviewer, task_id=two.pk)
    assert own.quorum is not None and own.quorum.answers is not None
    assert [a.reviewer for a in own.quorum.answers] == ["reviewer"]
