"""Callbacks on a real Celery worker: a finished run calls a receiver on loopback back,
signed, and a worker killed mid-send still delivers after the lease, with the same id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from standardwebhooks import Webhook

from tests.integration.worker import Worker
from tests.receiver import Receiver
from workflows import services
from workflows.models import Delivery, Endpoint, Run, Workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def hooked(make_workflow: Any, owner: User) -> Workflow:
    workflow = make_workflow(
        {
            "slug": "called-back",
            "name": "Called back",
            "steps": [
                {"id": "first", "kind": "transform", "config": {"output": {"n": "input.n"}}},
                {
                    "id": "last",
                    "kind": "transform",
                    "config": {"output": {"n": "steps.first.output.n + 1"}},
                },
            ],
        }
    )
    workflow.admins.add(owner)
    return workflow


def subscribe(workflow: Workflow, owner: User, receiver: Receiver) -> Endpoint:
    return services.endpoint_create(
        workflow=workflow, user=owner, url=receiver.url, event_types=["run.completed"]
    )


def delivery_status() -> tuple[str, int] | None:
    return Delivery.objects.values_list("status", "attempts").first()


def test_a_run_completed_on_a_worker_is_called_back_signed(
    worker: Worker,
    hooked: Workflow,
    owner: User,
    system: Any,
    receiver: Receiver,
    wait_until: Callable[..., None],
) -> None:
    endpoint = subscribe(hooked, owner, receiver)
    run = services.run_start(workflow=hooked, input={"n": 41, "id": "order-1"}, actor=system)

    wait_until(lambda: delivery_status() == ("delivered", 1))

    assert Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED
    [request] = receiver.requests
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body["type"] == "run.completed"
    assert body["data"]["run"]["id"] == run.pk
    assert (body["data"]["input_id"], body["data"]["output"]) == ("order-1", {"n": 42})
    assert request.headers["webhook-id"] == Delivery.objects.get().webhook_id


def test_a_worker_killed_mid_send_delivers_after_the_lease_with_the_same_id(
    worker: Worker,
    hooked: Workflow,
    owner: User,
    system: Any,
    receiver: Receiver,
    wait_until: Callable[..., None],
) -> None:
    endpoint = subscribe(hooked, owner, receiver)
    receiver.hold()  # the first attempt reaches the receiver and waits for an answer ...
    services.run_start(workflow=hooked, input={"n": 1}, actor=system)
    assert receiver.arrived.wait(60)
    assert delivery_status() == ("sending", 1)  # claimed and committed, not recorded

    worker.kill_hard()  # ... while its worker dies
    receiver.release()
    worker.start()
    # Beat's sweep (run by wait_until) sends it again once the lease has expired.
    wait_until(lambda: delivery_status() == ("delivered", 2), timeout=60)

    delivery = Delivery.objects.get()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.webhook_id] * 2
    for request in receiver.requests:
        Webhook(endpoint.secret).verify(request.body, request.headers)
