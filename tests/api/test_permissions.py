"""The permission and scope matrix: every endpoint for every kind of caller, and refused
writes leave every table as it was."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from hitl.accounts.services import api_token_revoke
from tests.api.conftest import ALL_SCOPES, Api, error_of, token_of
from tests.helpers import database_state, drive
from workflows import services
from workflows.models import ReviewTask, Run, Workflow

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    scope: str
    body: Any = None
    # "list": answers 200 to anyone authorised, showing only what they may see;
    # "read": 404 for what is out of reach; "admin": a write for workflow admins only;
    # "review": a write for those who may decide the task.
    kind: str = "read"


ENDPOINTS = [
    Endpoint("workflows_list", "GET", "/workflows", "workflows:read", kind="list"),
    Endpoint("workflows_get", "GET", "/workflows/expenses", "workflows:read"),
    Endpoint("versions_list", "GET", "/workflows/expenses/versions", "workflows:read"),
    Endpoint("versions_get", "GET", "/workflows/expenses/versions/1", "workflows:read"),
    Endpoint(
        "runs_start",
        "POST",
        "/workflows/expenses/runs",
        "runs:start",
        {"input": {"amount": 2}},
        "admin",
    ),
    Endpoint("runs_list", "GET", "/runs", "runs:read", kind="list"),
    Endpoint("runs_get", "GET", "/runs/{run}", "runs:read"),
    Endpoint("runs_cancel", "POST", "/runs/{run}/cancel", "runs:start", {"reason": "x"}, "admin"),
    Endpoint("runs_resume", "POST", "/runs/{run}/resume", "runs:start", {"outcome": "ok"}, "admin"),
    Endpoint("tasks_list", "GET", "/tasks", "tasks:read", kind="list"),
    Endpoint("tasks_get", "GET", "/tasks/{task}", "tasks:read"),
    Endpoint("tasks_claim", "POST", "/tasks/{task}/claim", "tasks:decide", kind="review"),
    Endpoint("tasks_release", "POST", "/tasks/{task}/release", "tasks:decide", kind="review"),
    Endpoint(
        "tasks_decide",
        "POST",
        "/tasks/{task}/decide",
        "tasks:decide",
        {"action": "approve"},
        "review",
    ),
]

ROLES = [
    "admin",
    "superuser",
    "reviewer",
    "other_reviewer",
    "outsider",
    "anonymous",
    "revoked",
    "expired",
    "lacks_scope",
    "other_workflow",
]
# Who has a role in our workflows (and so sees them), when the token lets them.
INSIDERS = {"admin", "superuser", "reviewer"}
ADMINS = {"admin", "superuser"}


def expected(endpoint: Endpoint, role: str) -> int:
    if role in {"anonymous", "revoked", "expired"}:
        return 401
    if role == "lacks_scope":
        return 403
    if endpoint.kind == "list":
        return 200
    if role not in INSIDERS:
        return 404  # out of reach looks like nothing there
    if endpoint.kind == "admin":
        if role not in ADMINS:
            return 403  # sees the workflow, may not manage its runs
        return 201 if endpoint.name == "runs_start" else 200
    if endpoint.name == "tasks_release":
        return 409  # allowed, but nobody holds a claim on the open task
    return 200


@dataclass
class World:
    task: ReviewTask
    run: Run
    ours: set[str]


@pytest.fixture
def world(
    task: ReviewTask,
    wait_workflow: Workflow,
    other_reviewer: User,
    owner: User,
    system: services.Actor,
) -> World:
    run = drive(services.run_start(workflow=wait_workflow, input={"amount": 1}, actor=system))
    # The owner also administers the other reviewer's workflow: a token limited to it must
    # not reach ours.
    Workflow.objects.get(slug="other").admins.add(owner)
    return World(task=task, run=run, ours={"expenses", "triage"})


@pytest.fixture
def caller(
    request: pytest.FixtureRequest,
    api_for: Callable[..., Api],
    owner: User,
    reviewer: User,
    other_reviewer: User,
    outsider: User,
    superuser: User,
    world: World,
) -> Callable[[str, str], Api]:
    def make(role: str, scope: str) -> Api:
        if role == "admin":
            return api_for(owner)
        if role == "superuser":
            return api_for(superuser)
        if role == "reviewer":
            return api_for(reviewer)
        if role == "other_reviewer":
            return api_for(other_reviewer)
        if role == "outsider":
            return api_for(outsider)
        if role == "anonymous":
            return api_for(None)
        if role == "revoked":
            api = api_for(owner)
            api_token_revoke(token=token_of(api), user=owner)
            return api
        if role == "expired":
            api = api_for(owner, expires_at=timezone.now() + timedelta(seconds=30))
            token = token_of(api)
            token.expires_at = timezone.now() - timedelta(seconds=1)
            token.save()
            return api
        if role == "lacks_scope":
            return api_for(owner, scopes=[s for s in ALL_SCOPES if s != scope])
        if role == "other_workflow":
            return api_for(owner, workflows=[Workflow.objects.get(slug="other")])
        raise AssertionError(role)

    return make


def listed(body: dict[str, Any]) -> set[str]:
    """What a list answer shows of our workflows: slugs, and the workflows of runs/tasks."""
    found = set()
    for item in body["items"]:
        found.add(item.get("slug") or item.get("workflow"))
    return found


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_matrix(
    endpoint: Endpoint, role: str, world: World, caller: Callable[[str, str], Api]
) -> None:
    api = caller(role, endpoint.scope)
    path = endpoint.path.format(run=world.run.pk, task=world.task.pk)
    before = database_state()
    response = api.get(path) if endpoint.method == "GET" else api.post(path, endpoint.body)
    want = expected(endpoint, role)
    assert response.status_code == want, (role, endpoint.name, response.content[:300])
    if want >= 400:
        error = error_of(response)
        if want == 403 and role == "lacks_scope":
            assert error["code"] == "missing_scope"
            assert error["details"]["required"] == endpoint.scope
        if endpoint.method == "POST":
            # A refused write writes nothing at all.
            assert database_state() == before
    elif endpoint.kind == "list":
        seen = listed(response.json()) & world.ours
        assert bool(seen) == (role in INSIDERS), (role, seen)


def test_a_user_who_loses_a_role_loses_it_for_their_tokens(
    api_for: Callable[..., Api], reviewer: User, reviewers: Group, world: World
) -> None:
    api = api_for(reviewer)
    assert api.get(f"/tasks/{world.task.pk}").status_code == 200
    assert api.get(f"/runs/{world.run.pk}").status_code == 200
    reviewer.groups.remove(reviewers)
    assert api.get(f"/tasks/{world.task.pk}").status_code == 404
    assert api.get(f"/runs/{world.run.pk}").status_code == 404
    before = database_state()
    assert api.post(f"/tasks/{world.task.pk}/decide", {"action": "approve"}).status_code == 404
    assert database_state() == before


def test_a_token_never_grants_more_than_its_users_roles(
    api_for: Callable[..., Api], reviewer: User, world: World
) -> None:
    """Every scope, no workflow limit: still a reviewer, who may not start or cancel."""
    api = api_for(reviewer)
    before = database_state()
    start = api.post("/workflows/expenses/runs", {"input": {"amount": 1}})
    cancel = api.post(f"/runs/{world.run.pk}/cancel")
    assert (start.status_code, cancel.status_code) == (403, 403)
    assert "only the admins of workflow 'expenses'" in error_of(start)["message"]
    assert database_state() == before
