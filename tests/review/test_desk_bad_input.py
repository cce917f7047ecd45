"""Every bad input a reviewer (or a hand-made request) can send the desk gets a clear 4xx,
and a refused request changes nothing: not even the claim a decision would have taken."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.helpers import database_state
from tests.review.conftest import gated_definition
from workflows.models import AuditEvent, Decision, ReviewTask, Run, Workflow

AMOUNTS = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "amount": {"type": "number"},
        "note": {"type": "string"},
        "extra": {"type": "object"},
    },
    "required": ["count", "amount"],
}


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def amounts_task(
    make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run]
) -> ReviewTask:
    definition = gated_definition("amounts")
    definition["steps"][0]["config"] = {"output_schema": AMOUNTS}
    workflow = make_gate_workflow(definition=definition)
    run = start(workflow, answer={"count": 2, "amount": 10.5, "note": "ok", "extra": {}})
    return ReviewTask.objects.get(run=run)


def decide(client: Client, task: ReviewTask, **data: str) -> Any:
    return client.post(reverse("review:decide", args=[task.pk]), data)


def edit(**fields: str) -> dict[str, str]:
    base = {
        "action": "edit",
        "reason": "corrected",
        "out:count": "2",
        "out:amount": "10.5",
        "out:note": "ok",
        "out:extra": "{}",
    }
    base.update({f"out:{k}": v for k, v in fields.items()})
    return base


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "NaN"}, "is not a number"),
        ({"amount": "Infinity"}, "is not a number"),
        ({"amount": "-inf"}, "is not a number"),
        ({"amount": "1e999"}, "is too large"),
        ({"count": "1_000"}, "is not a whole number"),
        ({"count": "١٢"}, "is not a whole number"),
        ({"count": "1.5"}, "is not a whole number"),
        ({"amount": "1_0.5"}, "is not a number"),
        ({"note": "zero\x00byte"}, "NUL character"),
        ({"extra": '{"a": NaN}'}, "NaN is not a JSON number"),
        ({"extra": '{"a": "\\u0000"}'}, "NUL character"),
        ({"extra": "[" * 100_000 + "]" * 100_000}, "nested more than"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-inf",
        "overflow",
        "underscores",
        "arabic-digits",
        "fraction-in-integer",
        "underscore-number",
        "nul-in-text",
        "nan-in-json",
        "escaped-nul-in-json",
        "deep-json",
    ],
)
def test_a_bad_edit_is_a_clear_400_and_changes_nothing(
    amounts_task: ReviewTask, reviewer: User, fields: dict[str, str], message: str
) -> None:
    client = client_for(reviewer)  # logging in writes last_login: before the snapshot
    before = database_state()
    response = decide(client, amounts_task, **edit(**fields))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert database_state() == before


def test_a_nul_in_the_reason_is_a_400_and_changes_nothing(task: ReviewTask, reviewer: User) -> None:
    client = client_for(reviewer)
    before = database_state()
    response = decide(client, task, action="reject", reason="no\x00pe")
    assert response.status_code == 400
    assert database_state() == before


def test_a_refused_decision_leaves_no_claim_behind(
    amounts_task: ReviewTask, reviewer: User
) -> None:
    # Well-formed fields, but edits the service refuses: caught after the claim it takes in
    # the same transaction, which is rolled back with everything else.
    client = client_for(reviewer)
    response = decide(client, amounts_task, **edit(extra='"not an object"'))
    assert response.status_code == 400
    assert "does not match the output schema" in response.content.decode()
    response = decide(client, amounts_task, **edit())
    assert response.status_code == 400
    assert "unchanged: approve it instead" in response.content.decode()
    amounts_task.refresh_from_db()
    assert (amounts_task.status, amounts_task.claimed_by) == (ReviewTask.Status.OPEN, None)
    assert not AuditEvent.objects.filter(verb="review.claimed").exists()
    assert not Decision.objects.exists()


def test_a_good_edit_of_numbers_is_stored_as_numbers(
    amounts_task: ReviewTask, reviewer: User
) -> None:
    response = decide(
        client_for(reviewer), amounts_task, **edit(count="-3", amount="2.5e1", note="fine")
    )
    assert response.status_code == 302
    assert Decision.objects.get().edited_output == {
        "count": -3,
        "amount": 25.0,
        "note": "fine",
        "extra": {},
    }


@pytest.mark.parametrize(
    "cursor",
    [
        "0||2030-01-07T09:00:00+99:00|1",
        "0|9999-12-31T23:59:59-23:59|2030-01-07T09:00:00|1",
        "0||0001-01-01T00:00:00+01:00|1",
        "99999999999999999999|||1",
        "0||2030-01-07T09:00:00|99999999999999999999",
        "a|b|c",
    ],
)
def test_a_hand_made_queue_cursor_starts_from_the_top(
    task: ReviewTask, reviewer: User, cursor: str
) -> None:
    response = client_for(reviewer).get(reverse("review:queue") + "?after=" + quote(cursor))
    assert response.status_code == 200
    assert [t.pk for t in response.context["rows"]] == [task.pk]


@pytest.mark.parametrize("slug", ["%00", "none-such", "bad slug", "x" * 500])
def test_next_with_an_unknown_workflow_claims_nothing(
    task: ReviewTask, reviewer: User, slug: str
) -> None:
    response = client_for(reviewer).post(
        reverse("review:next"), "workflow=" + slug, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("review:queue")
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN


def test_next_takes_a_reviewer_back_to_the_task_they_hold(task: ReviewTask, reviewer: User) -> None:
    client = client_for(reviewer)
    assert client.post(reverse("review:claim", args=[task.pk])).status_code == 302
    response = client.post(reverse("review:next"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("review:task", args=[task.pk])
    assert f"You still hold task {task.pk}" in response.content.decode()


def test_a_reviewer_at_the_claims_cap_is_told_why(
    workflow: Workflow, start: Callable[..., Run], reviewer: User, settings: Any
) -> None:
    settings.HITL_REVIEW_MAX_CLAIMS = 2
    for _ in range(3):
        start(workflow)
    client = client_for(reviewer)
    for _ in range(2):
        client.post(reverse("review:next"))
    assert ReviewTask.objects.filter(claimed_by=reviewer).count() == 2
    response = client.post(reverse("review:next"), follow=True)
    page = response.content.decode()
    assert "You already hold 2 claims" in page
    held = ReviewTask.objects.filter(claimed_by=reviewer).order_by("pk")
    assert response.redirect_chain[-1][0] in {reverse("review:task", args=[t.pk]) for t in held}
    assert ReviewTask.objects.filter(claimed_by=reviewer).count() == 2
    last = ReviewTask.objects.filter(claimed_by=None).get()
    conflict = client.post(reverse("review:claim", args=[last.pk]))
    assert conflict.status_code == 409
    assert "you already hold 2 claims" in conflict.content.decode()


def test_an_admin_releases_a_claim_someone_else_holds(
    task: ReviewTask, reviewer: User, owner: User
) -> None:
    client_for(reviewer).post(reverse("review:claim", args=[task.pk]))
    page = client_for(owner).get(reverse("review:task", args=[task.pk])).content.decode()
    assert "Release the claim" in page
    response = client_for(owner).post(reverse("review:release", args=[task.pk]))
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.status, task.claimed_by) == (ReviewTask.Status.OPEN, None)
    event = AuditEvent.objects.get(verb="review.released")
    assert (event.actor_label, event.payload) == ("owner", {"held_by": reviewer.pk})


def test_a_reviewer_cannot_release_a_claim_someone_else_holds(
    task: ReviewTask, reviewer: User, second_reviewer: User
) -> None:
    client_for(reviewer).post(reverse("review:claim", args=[task.pk]))
    other = client_for(second_reviewer)
    before = database_state()
    response = other.post(reverse("review:release", args=[task.pk]))
    assert response.status_code == 409
    assert database_state() == before
