"""A quorum through the API: the task detail's `quorum`, siblings' answers hidden until the
caller has decided their own, and a second seat refused with 409."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from tests.api.conftest import Api, error_of
from workflows.models import ReviewTask, Run, Workflow

pytestmark = pytest.mark.django_db

SECRET = "the first reviewer's reasoning"


@pytest.fixture
def seats(make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run]) -> list[int]:
    run = start(make_gate_workflow({"threshold": 0.8, "quorum": {"required": 2, "of": 3}}))
    return list(
        ReviewTask.objects.filter(run=run, seat__gt=0).order_by("seat").values_list("pk", flat=True)
    )


def test_the_detail_shows_the_quorum_and_hides_other_answers_until_one_decides(
    api_for: Callable[..., Api], reviewer: User, second_reviewer: User, seats: list[int]
) -> None:
    first, second = api_for(reviewer), api_for(second_reviewer)
    body = second.get(f"/tasks/{seats[1]}").json()
    assert body["quorum"] == {"seat": 2, "of": 3, "required": 2, "decided": 0, "answers": None}
    decided = first.post(
        f"/tasks/{seats[0]}/decide",
        {"action": "edit", "output": {"label": "refund"}, "reason": SECRET},
    )
    assert decided.status_code == 200
    mine = decided.json()
    assert mine["quorum"]["decided"] == 1
    assert [a["reviewer"] for a in mine["quorum"]["answers"]] == ["reviewer"]
    hidden = second.get(f"/tasks/{seats[0]}").json()
    assert hidden["quorum"]["answers"] is None and hidden["quorum"]["decided"] == 1
    assert hidden["decisions"] == [] and hidden["final_output"] is None
    assert SECRET not in str(hidden)
    second.post(f"/tasks/{seats[1]}/decide", {"action": "approve"})
    shown = second.get(f"/tasks/{seats[0]}").json()
    answers = shown["quorum"]["answers"]
    assert [(a["seat"], a["reviewer"], a["action"]) for a in answers] == [
        (1, "reviewer", "edit"),
        (2, "second", "approve"),
    ]
    assert answers[0]["output"] == {"label": "refund"} and answers[0]["reason"] == SECRET
    assert answers[1]["output"] == {"label": "billing"}


def test_a_task_without_a_quorum_says_so(
    api_for: Callable[..., Api], reviewer: User, task: ReviewTask
) -> None:
    assert api_for(reviewer).get(f"/tasks/{task.pk}").json()["quorum"] is None


def test_a_second_seat_is_a_409(
    api_for: Callable[..., Api], reviewer: User, seats: list[int]
) -> None:
    api = api_for(reviewer)
    assert api.post(f"/tasks/{seats[0]}/claim").status_code == 200
    for action in ("claim", "decide"):
        body = {"action": "approve"} if action == "decide" else None
        refused = api.post(f"/tasks/{seats[2]}/{action}", body)
        assert refused.status_code == 409
        error = error_of(refused)
        assert error["code"] == "conflict"
        assert f"you hold seat 1 of this review (task {seats[0]})" in error["message"]


def test_the_run_hides_the_seats_decisions_the_same_way(
    api_for: Callable[..., Api], reviewer: User, second_reviewer: User, seats: list[int]
) -> None:
    first, second = api_for(reviewer), api_for(second_reviewer)
    first.post(f"/tasks/{seats[0]}/decide", {"action": "reject", "reason": SECRET})
    run = ReviewTask.objects.get(pk=seats[0]).run_id
    # The reject escalated the group: nothing is live, so the answers are no secret any more.
    reviews = second.get(f"/runs/{run}").json()["reviews"]
    assert [r["decision"]["reason"] for r in reviews if r["decision"]] == [SECRET]


def test_the_run_hides_a_live_groups_decisions(
    api_for: Callable[..., Api], reviewer: User, second_reviewer: User, seats: list[int]
) -> None:
    first, second = api_for(reviewer), api_for(second_reviewer)
    first.post(f"/tasks/{seats[0]}/decide", {"action": "approve"})
    run = ReviewTask.objects.get(pk=seats[0]).run_id
    assert [r["decision"] for r in second.get(f"/runs/{run}").json()["reviews"]] == [None] * 3
    mine = first.get(f"/runs/{run}").json()["reviews"]
    assert mine[0]["decision"]["reviewer"] == "reviewer"
