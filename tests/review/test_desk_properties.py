"""Generated requests against every desk endpoint, as every role: never a 5xx, and a 4xx
(or any GET) changes no row of any `workflows_*` or `auth_*` table.

Hypothesis runs a fixed number of derandomised examples per endpoint and role, so the test
is the same on every run and takes about a minute. Each example runs inside a savepoint
that is rolled back, so every example starts from the same tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import database_state
from workflows import services
from workflows.models import ReviewTask, Run, Workflow

EXAMPLES = 12
ROLES = ["anonymous", "outsider", "reviewer", "second_reviewer", "escalator", "owner"]
GET_ENDPOINTS = ["queue", "task"]
POST_ENDPOINTS = ["next", "claim", "decide", "release", "skip", "renew"]
FIELDS = [
    "action",
    "reason",
    "workflow",
    "after",
    "status",
    "priority",
    "mine",
    "out:label",
    "out:__json__",
]
# What people and scripts actually send, and what broke the desk before.
AWKWARD = [
    "",
    "\x00",
    "%00",
    "approve",
    "reject",
    "edit",
    "escalate",
    "billing",
    "refund",
    "triage",
    "NaN",
    "Infinity",
    "-inf",
    "1_000",
    "١٢",
    "\u202eevil",
    "9" * 30,
    "-1",
    '{"label": "refund"}',
    '{"label": NaN}',
    "[" * 5000,
    "x" * 5000,
    "0||2030-01-07T09:00:00+99:00|1",
    "0|9999-12-31T23:59:59-23:59|2030-01-07T09:00:00|1",
]
values = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(max_size=40),
    st.integers().map(str),
    st.floats().map(str),
)
forms = st.dictionaries(
    keys=st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), values=values, max_size=5
)


@pytest.fixture
def desk(
    workflow: Workflow,
    start: Callable[..., Run],
    reviewer: User,
    second_reviewer: User,
    escalator: User,
    owner: User,
    outsider: User,
) -> dict[str, Any]:
    """Tasks in every state, and a logged-in client per role (logging in writes a row)."""
    tasks = [ReviewTask.objects.get(run=start(workflow)) for _ in range(3)]
    services.review_claim(task=tasks[1], user=second_reviewer)
    services.review_claim(task=tasks[2], user=reviewer)
    services.review_decide(task=tasks[2], user=reviewer, action="escalate", reason="unsure")
    users = {
        "reviewer": reviewer,
        "second_reviewer": second_reviewer,
        "escalator": escalator,
        "owner": owner,
        "outsider": outsider,
    }
    clients = {"anonymous": Client()}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    task_ids = [t.pk for t in ReviewTask.objects.order_by("pk")]
    return {"clients": clients, "task_ids": task_ids}


def task_ids(known: list[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(known), st.integers(min_value=0, max_value=10**20))


def check(response: Any, before: dict[str, Any], *, get: bool) -> None:
    assert response.status_code < 500, response.content[:500]
    if get or 400 <= response.status_code < 500:
        assert database_state() == before, response.status_code


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", GET_ENDPOINTS + POST_ENDPOINTS)
def test_no_request_to_the_desk_is_a_5xx_and_a_refused_one_changes_nothing(
    desk: dict[str, Any], endpoint: str, role: str
) -> None:
    client: Client = desk["clients"][role]
    before = database_state()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=forms, pk=task_ids(desk["task_ids"]), htmx=st.booleans())
    def attempt(data: dict[str, str], pk: int, htmx: bool) -> None:
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        url = reverse(f"review:{endpoint}", args=[] if endpoint in ("queue", "next") else [pk])
        savepoint = transaction.savepoint()
        try:
            if endpoint in GET_ENDPOINTS:
                response = client.get(url, data, **headers)
            else:
                response = client.post(url, data, **headers)
            check(response, before, get=endpoint in GET_ENDPOINTS)
        finally:
            transaction.savepoint_rollback(savepoint)

    attempt()
