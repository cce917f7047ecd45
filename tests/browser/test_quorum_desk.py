"""A quorum seat in a real browser: "Review 2 of 3", the other answer hidden until the
reviewer's own is in, and the keyboard deciding as on any task."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from tests.helpers import drive
from workflows import services
from workflows.models import ReviewTask, Workflow

pytestmark = [pytest.mark.browser]

FIRST_REASON = "alice reads it as a refund"


@pytest.fixture
def seats(
    transactional_db: None, system: services.Actor, wait_until: Callable[..., None]
) -> list[ReviewTask]:
    """A 2-of-3 quorum gate over a transform that gives no confidence: every item is reviewed.
    The run is driven in-process; no worker is needed to open the seats. (The browser tests'
    worker may still be running, from an earlier test, and take the step first: so the seats
    are waited for, whoever opens them.)"""
    reviewers = Group.objects.create(name="quorum-reviewers")
    for name in ("alice", "bob", "carol"):
        User.objects.create_user(name, f"{name}@example.com", "pw").groups.add(reviewers)
    result = services.workflow_import(
        source=json.dumps(
            {
                "slug": "panel",
                "name": "Panel",
                "steps": [
                    {
                        "id": "classify",
                        "kind": "transform",
                        "config": {"output": {"label": '"billing"'}},
                    },
                    {
                        "id": "check",
                        "kind": "gate",
                        "config": {"threshold": 0.9, "quorum": {"required": 2, "of": 3}},
                    },
                ],
            }
        ),
        actor=system,
    )
    workflow: Workflow = result.workflow
    workflow.reviewer_group = reviewers
    workflow.save()
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    opened = ReviewTask.objects.filter(run=run, seat__gt=0).order_by("seat")
    wait_until(lambda: opened.count() == 3)
    return list(opened)


def test_a_seat_hides_the_other_answer_until_the_keyboard_decides_it(
    seats: list[ReviewTask], open_page: Callable[..., Any]
) -> None:
    alice = User.objects.get(username="alice")
    services.review_decide(
        task=seats[0],
        user=alice,
        action="edit",
        output={"label": "refund"},
        reason=FIRST_REASON,
        claim=True,
    )
    desk_page = open_page("bob")
    page = desk_page.page
    url = f"{desk_page.base_url}/review/tasks/{seats[1].pk}/"
    page.goto(url)
    quorum = page.locator("[data-quorum]")
    assert "Review 2 of 3" in quorum.inner_text()
    assert "1 of 3 decided" in quorum.inner_text()
    assert page.locator("#quorum-answers").count() == 0
    assert FIRST_REASON not in page.content()
    page.keyboard.press("a")  # approve: claims and decides, as on any task
    page.wait_for_selector("text=approved.")
    page.goto(url)
    answers = page.locator("#quorum-answers")
    assert answers.is_visible()
    assert FIRST_REASON in answers.inner_text()
    assert "2 of 3 decided" in page.locator("[data-quorum]").inner_text()
    assert desk_page.errors == []
