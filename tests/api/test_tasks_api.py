"""Review tasks through the API: the desk's queue, task, claim, release and decide, with the
desk's rules (the same selectors and services)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from tests.api.conftest import Api, error_of, token_of
from tests.helpers import database_state
from workflows.models import AuditEvent, Decision, ReviewTask, Run, StepRun, Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def rev(api_for: Callable[..., Api], reviewer: User) -> Api:
    return api_for(reviewer)


def test_the_queue_lists_what_the_reviewer_sees_in_the_desks_order(
    rev: Api, workflow: Workflow, start: Callable[..., Run]
) -> None:
    low = ReviewTask.objects.get(run=start(workflow))
    high = ReviewTask.objects.get(run=start(workflow))
    ReviewTask.objects.filter(pk=high.pk).update(priority=5)
    page = rev.get("/tasks").json()
    assert [t["id"] for t in page["items"]] == [high.pk, low.pk]
    item = page["items"][0]
    assert item["workflow"] == "triage" and item["step"] == "check"
    assert item["status"] == "open" and item["reason"] == "below_threshold"
    assert item["can_decide"] is True and item["run"] == high.run_id
    assert [t["id"] for t in rev.get("/tasks", {"min_priority": 1}).json()["items"]] == [high.pk]
    assert rev.get("/tasks", {"status": "decided"}).json()["items"] == []
    assert rev.get("/tasks", {"workflow": "nope"}).json()["items"] == []
    assert rev.get("/tasks", {"reason": "rule"}).json()["items"] == []
    first = rev.get("/tasks", {"limit": 1}).json()
    second = rev.get("/tasks", {"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [t["id"] for t in first["items"] + second["items"]] == [high.pk, low.pk]
    assert second["next_cursor"] is None


def test_a_task_as_the_desk_shows_it(rev: Api, task: ReviewTask) -> None:
    body = rev.get(f"/tasks/{task.pk}").json()
    assert body["shown"]["output"] == {"label": "billing"}
    assert body["shown"]["confidence"] == 0.5
    assert body["shown"]["gate"]["reason"] == "below_threshold"
    assert body["input"]["answer"] == {"label": "billing"}
    assert body["actions"] == ["approve", "reject", "edit", "escalate"]
    assert body["can_decide"] is True and body["claimed_by_me"] is False
    assert body["can_reassign"] is False
    assert body["waits_for"] == "the reviewers (triage-reviewers)"
    assert [s["step_id"] for s in body["steps"]] == ["classify", "check"]
    assert body["decisions"] == [] and body["final_output"] is None
    assert set(body["cost"]) == {"calls", "input_tokens", "output_tokens", "cost_usd", "latency_ms"}


def test_claim_then_another_reviewer_gets_a_conflict(
    rev: Api, api_for: Callable[..., Api], second_reviewer: User, task: ReviewTask
) -> None:
    claimed = rev.post(f"/tasks/{task.pk}/claim")
    assert claimed.status_code == 200
    assert claimed.json()["claimed_by"] == "reviewer" and claimed.json()["claimed_by_me"]
    other = api_for(second_reviewer)
    before = database_state()
    refused = other.post(f"/tasks/{task.pk}/claim")
    assert refused.status_code == 409 and error_of(refused)["code"] == "conflict"
    assert "is claimed by reviewer" in error_of(refused)["message"]
    decide = other.post(f"/tasks/{task.pk}/decide", {"action": "approve"})
    assert decide.status_code == 409
    assert database_state() == before
    released = rev.post(f"/tasks/{task.pk}/release")
    assert released.status_code == 200 and released.json()["status"] == "open"


def test_approve_claims_decides_and_resumes_the_run(
    rev: Api, reviewer: User, task: ReviewTask
) -> None:
    response = rev.post(f"/tasks/{task.pk}/decide", {"action": "approve"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "decided" and body["final_output"] == {"label": "billing"}
    assert body["actions"] == []
    (decision,) = body["decisions"]
    assert decision["action"] == "approve" and decision["reviewer"] == "reviewer"
    gate = StepRun.objects.get(run=task.run_id, step_id="check")
    assert gate.status == StepRun.Status.COMPLETED and gate.outcome == "approved"
    event = AuditEvent.objects.get(verb="review.decided", object_id=str(task.pk))
    assert event.actor_id == str(reviewer.pk)
    again = rev.post(f"/tasks/{task.pk}/decide", {"action": "approve"})
    assert again.status_code == 409 and "already been decided" in error_of(again)["message"]
    # The run reads the decision back.
    run = rev.get(f"/runs/{task.run_id}")
    assert run.status_code == 200
    (review,) = run.json()["reviews"]
    assert review["decision"]["action"] == "approve" and review["step"] == "check"


def test_a_refused_decision_leaves_no_claim_behind(rev: Api, task: ReviewTask) -> None:
    before = database_state()
    for body, message in (
        ({"action": "reject"}, "a reason is required to reject"),
        ({"action": "edit", "reason": "wrong"}, "edit needs the edited output"),
        (
            {"action": "edit", "reason": "wrong", "output": {"label": "nonsense"}},
            "does not match the output schema",
        ),
        ({"action": "approve", "output": {"label": "refund"}}, "only edit takes an output"),
    ):
        response = rev.post(f"/tasks/{task.pk}/decide", body)
        assert response.status_code == 400, body
        assert message in error_of(response)["message"]
    unknown = rev.post(f"/tasks/{task.pk}/decide", {"action": "shrug"})
    assert unknown.status_code == 422 and error_of(unknown)["code"] == "validation_error"
    assert database_state() == before


def test_edit_and_approve_sends_the_edit_on(rev: Api, task: ReviewTask) -> None:
    response = rev.post(
        f"/tasks/{task.pk}/decide",
        {"action": "edit", "reason": "it is\na refund", "output": {"label": "refund"}},
    )
    assert response.status_code == 200, response.content
    assert response.json()["final_output"] == {"label": "refund"}
    assert Decision.objects.get(task=task).edited_output == {"label": "refund"}


def test_escalation_is_one_level_deep_as_on_the_desk(
    rev: Api, api_for: Callable[..., Api], escalator: User, task: ReviewTask
) -> None:
    escalated = rev.post(f"/tasks/{task.pk}/decide", {"action": "escalate", "reason": "legal"})
    assert escalated.status_code == 200
    successor = escalated.json()["escalated_to"]
    assert successor is not None
    # The reviewer still sees the escalated task, without deciding it.
    seen = rev.get(f"/tasks/{successor}").json()
    assert seen["can_decide"] is False and seen["actions"] == []
    assert rev.post(f"/tasks/{successor}/claim").status_code == 403
    esc = api_for(escalator)
    assert esc.get(f"/tasks/{successor}").json()["actions"] == ["approve", "reject", "edit"]
    again = esc.post(f"/tasks/{successor}/decide", {"action": "escalate", "reason": "x"})
    assert again.status_code == 400 and "one level deep" in error_of(again)["message"]


def test_the_workflow_admin_releases_anyones_claim(
    rev: Api, api_for: Callable[..., Api], owner: User, task: ReviewTask
) -> None:
    rev.post(f"/tasks/{task.pk}/claim")
    response = api_for(owner).post(f"/tasks/{task.pk}/release")
    assert response.status_code == 200 and response.json()["claimed_by"] is None


def test_the_claims_cap_applies(
    rev: Api, workflow: Workflow, start: Callable[..., Run], settings: object
) -> None:
    settings.HITL_REVIEW_MAX_CLAIMS = 1  # type: ignore[attr-defined]
    first, second = (ReviewTask.objects.get(run=start(workflow)) for _ in range(2))
    assert rev.post(f"/tasks/{first.pk}/claim").status_code == 200
    capped = rev.post(f"/tasks/{second.pk}/claim")
    assert capped.status_code == 409 and "already hold 1 claims" in error_of(capped)["message"]


def test_unknown_tasks_are_404(rev: Api) -> None:
    for path in ("/tasks/999999", "/tasks/9223372036854775807"):
        assert error_of(rev.get(path))["code"] == "not_found"
    assert rev.post("/tasks/999999/claim").status_code == 404


def test_review_actions_through_the_api_are_audited_naming_the_token(
    rev: Api, reviewer: User, task: ReviewTask
) -> None:
    label = f"reviewer (token {token_of(rev).prefix}…)"
    assert rev.post(f"/tasks/{task.pk}/claim").status_code == 200
    assert rev.post(f"/tasks/{task.pk}/release").status_code == 200
    decided = rev.post(f"/tasks/{task.pk}/decide", {"action": "reject", "reason": "wrong"})
    assert decided.status_code == 200, decided.content
    events = AuditEvent.objects.filter(
        object_id=str(task.pk), verb__startswith="review.", actor_type="user"
    )
    by_verb = {e.verb: e for e in events.order_by("id")}
    # The decide claimed the task again in its own transaction: a second review.claimed.
    assert [e.verb for e in events.order_by("id")] == [
        "review.claimed",
        "review.released",
        "review.claimed",
        "review.decided",
    ]
    assert {(e.actor_id, e.actor_label) for e in by_verb.values()} == {(str(reviewer.pk), label)}
