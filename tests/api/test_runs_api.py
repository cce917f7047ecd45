"""Workflows and runs through the API: start, read, list, cancel, resume, and the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.api.conftest import Api, error_of, token_of
from tests.helpers import drive
from workflows import services
from workflows.models import AuditEvent, ReviewTask, Run, Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(api_for: Callable[..., Api], owner: User, wait_workflow: Workflow) -> Api:
    return api_for(owner)


def start_run(api: Api, amount: float = 5, slug: str = "expenses", **body: Any) -> dict[str, Any]:
    response = api.post(f"/workflows/{slug}/runs", {"input": {"amount": amount}, **body})
    assert response.status_code == 201, response.content
    return response.json()


def test_workflows_list_get_and_versions(admin_api: Api, wait_workflow: Workflow) -> None:
    listed = admin_api.get("/workflows").json()
    assert [wf["slug"] for wf in listed["items"]] == ["expenses"]
    assert listed["next_cursor"] is None
    got = admin_api.get("/workflows/expenses").json()
    assert got["active_version"] == 1
    assert got["input_schema"]["required"] == ["amount"]
    versions = admin_api.get("/workflows/expenses/versions").json()
    assert [(v["number"], v["active"], v["status"]) for v in versions["items"]] == [
        (1, True, "published")
    ]
    one = admin_api.get("/workflows/expenses/versions/1").json()
    assert one["definition"]["slug"] == "expenses" and "wait" in one["source"]
    assert error_of(admin_api.get("/workflows/expenses/versions/2"))["code"] == "not_found"
    assert error_of(admin_api.get("/workflows/nope"))["code"] == "not_found"


def test_start_a_run_and_read_it_with_its_steps(admin_api: Api, owner: User) -> None:
    body = start_run(admin_api, 12.5)
    assert body["status"] == "pending" and body["workflow"] == "expenses"
    assert body["version"] == 1 and body["source"] == "api"
    assert body["started_by"] == "owner" and body["input"] == {"amount": 12.5}
    run = Run.objects.get(pk=body["id"])
    assert run.started_by == owner and run.source == "api"
    drive(run)
    got = admin_api.get(f"/runs/{run.pk}").json()
    assert got["status"] == "waiting" and got["output"] is None
    (hold,) = got["steps"]
    assert hold["step_id"] == "hold" and hold["status"] == "waiting"
    assert hold["waiting_for"] == "a manager confirms"
    assert hold["cost"] == {
        "calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": "0.000000",
        "latency_ms": hold["cost"]["latency_ms"],
    }


def test_the_start_is_audited_as_the_tokens_user_naming_the_token(
    admin_api: Api, owner: User
) -> None:
    body = start_run(admin_api)
    event = AuditEvent.objects.get(verb="run.started", object_id=str(body["id"]))
    prefix = token_of(admin_api).prefix
    assert event.actor_type == "user" and event.actor_id == str(owner.pk)
    assert event.actor_label == f"owner (token {prefix}…)"
    assert event.payload["source"] == "api"


def test_resume_a_wait_step_and_the_run_completes_with_its_output(admin_api: Api) -> None:
    run = drive(Run.objects.get(pk=start_run(admin_api, 40)["id"]))
    response = admin_api.post(
        f"/runs/{run.pk}/resume", {"output": {"ok": True}, "outcome": "approved"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["steps"][0]["status"] == "completed"
    drive(run)
    got = admin_api.get(f"/runs/{run.pk}").json()
    assert got["status"] == "completed" and got["outcome"] == "approved"
    assert got["output"] == {"booked": 40}
    assert [s["step_id"] for s in got["steps"]] == ["hold", "book"]
    resumed = AuditEvent.objects.get(verb="run.resumed", object_id=str(run.pk))
    assert "(token hitl_" in resumed.actor_label
    # Finished: nothing left to resume, and nothing to cancel.
    again = admin_api.post(f"/runs/{run.pk}/resume", {"outcome": "approved"})
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"
    cancel = admin_api.post(f"/runs/{run.pk}/cancel", {"reason": "late"})
    assert cancel.status_code == 409


def test_resume_names_the_step_or_finds_the_waiting_one(admin_api: Api) -> None:
    run = drive(Run.objects.get(pk=start_run(admin_api)["id"]))
    wrong = admin_api.post(f"/runs/{run.pk}/resume", {"step": "book"})
    assert wrong.status_code == 409
    assert "not waiting at step 'book'" in error_of(wrong)["message"]
    assert admin_api.post(f"/runs/{run.pk}/resume", {"step": "hold"}).status_code == 200


def test_a_gate_is_not_resumed_through_the_api_but_decided(
    api_for: Callable[..., Api], owner: User, task: ReviewTask
) -> None:
    api = api_for(owner)
    response = api.post(f"/runs/{task.run_id}/resume", {"outcome": "approved"})
    assert response.status_code == 409
    assert "decid" in error_of(response)["message"]
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING


def test_cancel_a_run(admin_api: Api) -> None:
    run = drive(Run.objects.get(pk=start_run(admin_api)["id"]))
    response = admin_api.post(f"/runs/{run.pk}/cancel", {"reason": "duplicate claim"})
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["error"] == (
        "duplicate claim"
    )
    # The body is optional.
    other = Run.objects.get(pk=start_run(admin_api)["id"])
    assert admin_api.post(f"/runs/{other.pk}/cancel").status_code == 200


def test_start_on_a_named_version_or_refuse_an_unknown_one(admin_api: Api) -> None:
    assert start_run(admin_api, version=1)["version"] == 1
    response = admin_api.post("/workflows/expenses/runs", {"input": {"amount": 1}, "version": 7})
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "invalid_input",
        "message": "workflow 'expenses' has no version 7",
    }


def test_input_that_does_not_match_the_schema_is_refused_and_starts_nothing(
    admin_api: Api,
) -> None:
    response = admin_api.post("/workflows/expenses/runs", {"input": {"amount": "lots"}})
    assert response.status_code == 400
    assert "input amount" in error_of(response)["message"]
    missing = admin_api.post("/workflows/expenses/runs", {"inputs": {}})
    assert missing.status_code == 422 and error_of(missing)["code"] == "validation_error"
    assert Run.objects.count() == 0


def test_runs_list_filters_and_keyset_pages(
    admin_api: Api, wait_workflow: Workflow, system: services.Actor
) -> None:
    ids = [start_run(admin_api, amount=i)["id"] for i in range(1, 6)]
    Run.objects.filter(pk=ids[0]).update(status=Run.Status.COMPLETED, outcome="approved")
    first = admin_api.get("/runs", {"limit": 2}).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    second = admin_api.get("/runs", {"limit": 2, "cursor": first["next_cursor"]}).json()
    third = admin_api.get("/runs", {"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [r["id"] for r in second["items"] + third["items"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    done = admin_api.get("/runs", {"status": "completed"}).json()["items"]
    assert [r["id"] for r in done] == [ids[0]]
    assert [r["id"] for r in admin_api.get("/runs", {"outcome": "approved"}).json()["items"]] == [
        ids[0]
    ]
    assert len(admin_api.get("/runs", {"outcome": "none"}).json()["items"]) == 4
    assert admin_api.get("/runs", {"workflow": "nope"}).json()["items"] == []
    assert len(admin_api.get("/runs", {"workflow": "expenses"}).json()["items"]) == 5


def test_runs_list_by_creation_time(admin_api: Api) -> None:
    ids = [start_run(admin_api, amount=i)["id"] for i in range(1, 4)]
    runs = {run.pk: run for run in Run.objects.all()}
    base = runs[ids[0]].created_at
    for offset, pk in enumerate(ids):
        Run.objects.filter(pk=pk).update(created_at=base + timedelta(hours=offset))
    window = {
        "created_after": (base + timedelta(hours=1)).isoformat(),
        "created_before": (base + timedelta(hours=2)).isoformat(),
    }
    assert [r["id"] for r in admin_api.get("/runs", window).json()["items"]] == [ids[1]]


def test_a_cursor_the_server_did_not_write_is_a_400(admin_api: Api) -> None:
    for cursor in ("garbage", "W10:1a2b:abc", "x" * 900):
        response = admin_api.get("/runs", {"cursor": cursor})
        assert response.status_code == 400
        assert error_of(response)["code"] == "bad_cursor"
    # A cursor of another list is refused too.
    for _ in range(3):
        start_run(admin_api)
    page = admin_api.get("/runs", {"limit": 1}).json()
    response = admin_api.get("/tasks", {"cursor": page["next_cursor"]})
    assert response.status_code == 400 and error_of(response)["code"] == "bad_cursor"
