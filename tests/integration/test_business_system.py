"""A business system's whole round trip, on a real worker: a signed webhook starts a run, a
reviewer decides on the desk, and the system receives a signed callback with the outcome."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from standardwebhooks import Webhook

from tests.integration.worker import Worker
from tests.receiver import Receiver
from workflows import services
from workflows.ai.trainingdata import load_jsonl
from workflows.models import Delivery, ReviewTask, Run, StepRun
from workflows.services import webhook_sources

pytestmark = pytest.mark.integration

TICKETS = Path(__file__).resolve().parents[2] / "hitl" / "demo" / "data" / "tickets.jsonl"
LABELS = ["billing", "technical", "account", "shipping", "other"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def test_webhook_in_review_on_the_desk_signed_callback_out(
    worker: Worker,
    make_workflow: Any,
    owner: User,
    system: Any,
    receiver: Receiver,
    wait_until: Callable[..., None],
) -> None:
    services.local_model_train(name="tickets", examples=load_jsonl(TICKETS), actor=system)
    group = Group.objects.create(name="system-reviewers")
    reviewer = User.objects.create_user("desk", "desk@example.com", "pw")
    reviewer.groups.add(group)
    workflow = make_workflow(
        {
            "slug": "tickets",
            "name": "Tickets",
            "input_schema": {
                "type": "object",
                "required": ["id", "text"],
                "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
            },
            "steps": [
                {
                    "id": "classify",
                    "kind": "ai",
                    "config": {
                        "model": "local:tickets",
                        "prompt": "Classify the support ticket.",
                        "input": "input.text",
                        "output": {"labels": LABELS},
                    },
                },
                # Every item goes to a person: nothing scores 1.0.
                {"id": "check", "kind": "gate", "config": {"threshold": 1.0}},
            ],
        },
        reviewer_group=group,
    )
    workflow.admins.add(owner)
    endpoint = services.endpoint_create(
        workflow=workflow, user=owner, url=receiver.url, event_types=["run.completed"]
    )
    issued = webhook_sources.webhook_source_create(workflow=workflow, slug="crm", user=owner)

    # 1. The business system sends a signed webhook.
    body = json.dumps({"id": "ticket-7", "text": "I was charged twice, refund one"}).encode()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_ticket_7",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(issued.secret).sign("msg_ticket_7", now, body),
    }
    answer = Client().post(
        "/api/v1/webhooks/crm/", body, content_type="application/json", headers=headers
    )
    assert answer.status_code == 202, answer.content
    run = Run.objects.get(pk=answer.json()["run"])

    # 2. A reviewer decides on the desk, correcting the AI's label.
    wait_until(lambda: ReviewTask.objects.filter(run=run, status="open").exists())
    task = ReviewTask.objects.get(run=run)
    ai_label = StepRun.objects.get(run=run, step_id="classify").output["label"]
    corrected = "billing" if ai_label != "billing" else "account"
    desk = Client()
    desk.force_login(reviewer)
    decided = desk.post(
        reverse("review:decide", args=[task.pk]),
        {"action": "edit", "reason": "a refund is billing", "out:label": corrected},
    )
    assert decided.status_code == 302

    # 3. The business system receives the signed outcome.
    wait_until(lambda: Delivery.objects.filter(status="delivered").exists())
    [request] = receiver.requests
    event = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert event["type"] == "run.completed"
    data = event["data"]
    assert (data["run"]["id"], data["run"]["outcome"]) == (run.pk, "approved")
    assert data["input_id"] == "ticket-7"
    assert data["output"] == {"label": corrected}
    assert data["decision"]["action"] == "edit"
    assert data["decision"]["reviewer"] == "desk"
    assert data["decision"]["reason"] == "a refund is billing"
