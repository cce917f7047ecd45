"""A run may name its own `callback_url`: one of its workflow's active webhook endpoints.

An endpoint marked `named_runs_only` hears only from runs that name it (a caller's own
receiver); the others hear from every run of the workflow, as before. Naming is never a way
to reach an address nobody configured: the URL must match an endpoint exactly, and the
endpoint's secret signs and its SSRF check guards the send, as for any delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.api.conftest import Api, api_for, error_of, make_token, wait_workflow  # noqa: F401
from tests.helpers import drive
from tests.review.conftest import (  # noqa: F401 (fixtures, found by name)
    _review_kinds,
    escalators,
    make_gate_workflow,
)
from workflows import services
from workflows.errors import InvalidInput
from workflows.models import AuditEvent, Delivery, Endpoint, Run, Workflow

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/hitl"
MINE = "https://erp.example.com/hitl/callback"
LATER = timezone.now() + timedelta(hours=1)


def start(workflow: Workflow, system: Any, callback_url: str | None = None) -> Run:
    return services.run_start(
        workflow=workflow,
        input={"amount": 70},
        actor=system,
        callback_url=callback_url,
        now=LATER,
    )


def endpoints_told(run: Run, event: str = "run.completed") -> list[int]:
    return sorted(
        Delivery.objects.filter(event=event, payload__data__run__id=run.pk).values_list(
            "endpoint_id", flat=True
        )
    )


def test_a_named_endpoint_hears_only_from_the_runs_that_name_it(
    hooked: Workflow, make_endpoint: Callable[..., Endpoint], system: Any
) -> None:
    everyone = make_endpoint(hooked, URL, event_types=["run.completed"])
    mine = make_endpoint(hooked, MINE, event_types=["run.completed"], named_runs_only=True)

    named = services.run_drive(run=start(hooked, system, callback_url=MINE), now=LATER)
    plain = services.run_drive(run=start(hooked, system), now=LATER)

    assert named.status == plain.status == Run.Status.COMPLETED
    assert named.callback_endpoint_id == mine.pk and plain.callback_endpoint_id is None
    assert endpoints_told(named) == [everyone.pk, mine.pk]
    assert endpoints_told(plain) == [everyone.pk]
    started = AuditEvent.objects.get(verb="run.started", object_id=str(named.pk))
    assert started.payload["callback_endpoint"] == mine.pk


def test_naming_an_endpoint_every_run_reaches_sends_one_delivery_not_two(
    hooked: Workflow, make_endpoint: Callable[..., Endpoint], system: Any
) -> None:
    everyone = make_endpoint(hooked, URL, event_types=["run.completed"])
    run = services.run_drive(run=start(hooked, system, callback_url=URL), now=LATER)
    assert endpoints_told(run) == [everyone.pk]


def test_the_named_endpoint_gets_the_runs_task_events_it_subscribes_to(
    make_gate_workflow: Callable[..., Workflow],  # noqa: F811 (the imported fixture)
    make_endpoint: Callable[..., Endpoint],
    system: Any,
) -> None:
    gated = make_gate_workflow()
    mine = make_endpoint(
        gated, MINE, event_types=["task.created", "task.decided"], named_runs_only=True
    )
    runs = [
        drive(
            services.run_start(
                workflow=gated,
                input={"answer": {"label": "bug"}, "confidence": 0.5, "votes": {"bug": 2}},
                actor=system,
                callback_url=url,
                now=LATER,
            ),
            now=LATER,
        )
        for url in (MINE, None)
    ]
    rows = list(Delivery.objects.filter(endpoint=mine))
    assert [(d.event, d.payload["data"]["run"]["id"]) for d in rows] == [
        ("task.created", runs[0].pk)
    ]


@pytest.mark.parametrize(
    "callback_url, why",
    [
        ("https://evil.example.net/steal", "no endpoint"),
        (MINE + "/", "not an exact match"),
        (URL, "disabled"),
        ("https://chat.example.com/services/T0/B0/x", "a chat endpoint"),
    ],
)
def test_a_callback_url_that_is_not_an_active_webhook_endpoint_is_refused(
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    system: Any,
    owner: User,
    callback_url: str,
    why: str,
) -> None:
    make_endpoint(hooked, MINE, named_runs_only=True)
    services.endpoint_disable(endpoint=make_endpoint(hooked, URL), user=owner)
    make_endpoint(hooked, "https://chat.example.com/services/T0/B0/x", kind="slack")
    with pytest.raises(InvalidInput, match="callback_url must be one of"):
        start(hooked, system, callback_url=callback_url)
    assert not Run.objects.exists(), why


def test_an_endpoint_of_another_workflow_cannot_be_named(
    hooked: Workflow,
    make_workflow: Callable[..., Workflow],
    make_endpoint: Callable[..., Endpoint],
    system: Any,
) -> None:
    other = make_workflow({"slug": "other", "name": "O", "steps": [{"id": "w", "kind": "wait"}]})
    make_endpoint(other, MINE)
    with pytest.raises(InvalidInput, match="callback_url"):
        start(hooked, system, callback_url=MINE)


def test_the_api_takes_a_callback_url_and_shows_it(
    api_for: Callable[..., Api],  # noqa: F811 (the imported fixture)
    owner: User,
    wait_workflow: Workflow,  # noqa: F811
    make_endpoint: Callable[..., Endpoint],
) -> None:
    mine = make_endpoint(wait_workflow, MINE, named_runs_only=True)
    api = api_for(owner)
    response = api.post("/workflows/expenses/runs", {"input": {"amount": 5}, "callback_url": MINE})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["callback_url"] == MINE
    assert Run.objects.get(pk=body["id"]).callback_endpoint_id == mine.pk
    assert api.get(f"/runs/{body['id']}").json()["callback_url"] == MINE

    refused = api.post(
        "/workflows/expenses/runs",
        {"input": {"amount": 5}, "callback_url": "https://evil.example.net/x"},
    )
    assert refused.status_code == 400
    assert error_of(refused)["code"] == "invalid_input"
    assert "callback_url" in error_of(refused)["message"]
    assert Run.objects.count() == 1
