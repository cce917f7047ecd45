"""Fixtures for inbound webhooks: a workflow, a source, and a sender that signs as a real one.

Deliveries are signed by the `standardwebhooks` package, as another system would sign them,
with the current time: the package's own check reads the clock. Tests that need a fixed clock
(the rate limit's window) pass `now=` to the service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from standardwebhooks import Webhook

from workflows.models import WebhookSource, Workflow
from workflows.services import webhook_sources

INTAKE = {
    "slug": "intake",
    "name": "Intake",
    "input_schema": {
        "type": "object",
        "required": ["subject"],
        "properties": {
            "subject": {"type": "string", "maxLength": 200},
            "body": {"type": "string"},
            "priority": {"type": "integer", "minimum": 0},
        },
    },
    "steps": [{"id": "hold", "kind": "wait", "config": {"reason": "a person looks at it"}}],
}


@pytest.fixture(autouse=True)
def _fresh_rate_windows(settings: Any) -> Iterator[None]:
    """Rate-limit counters live in Redis, keyed by source id: ids repeat across test runs."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("hitl:webhook-rate:*"):
        client.delete(key)
    yield


@pytest.fixture
def intake(make_workflow: Any, owner: User) -> Workflow:
    workflow = make_workflow(INTAKE)
    workflow.admins.add(owner)
    return workflow


@pytest.fixture
def issued(intake: Workflow, owner: User) -> webhook_sources.IssuedSecret:
    return webhook_sources.webhook_source_create(workflow=intake, slug="crm", user=owner)


@pytest.fixture
def source(issued: webhook_sources.IssuedSecret) -> WebhookSource:
    return issued.record.source


def present() -> datetime:
    """Now, to the second: what a sender puts in webhook-timestamp."""
    return datetime.now(UTC).replace(microsecond=0)


def sign(
    secret: str, body: bytes, *, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers, as the package computes them for a sender."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or present()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


def encode(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


@dataclass
class Sender:
    """Posts to a source's URL through the whole Django stack (middleware, URL, view)."""

    secret: str
    slug: str = "crm"
    client: Client = field(default_factory=Client)

    @property
    def url(self) -> str:
        return f"/api/v1/webhooks/{self.slug}/"

    def post(
        self,
        payload: Any,
        *,
        msg_id: str | None = None,
        at: datetime | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
        **extra: Any,
    ) -> Any:
        body = encode(payload)
        signed = sign(secret or self.secret, body, msg_id=msg_id, at=at)
        return self.client.post(
            url or self.url,
            data=body,
            content_type="application/json",
            headers={**signed, **(headers or {})},
            **extra,
        )


@pytest.fixture
def sender(issued: webhook_sources.IssuedSecret) -> Sender:
    return Sender(issued.secret)


def error_of(response: Any) -> dict[str, Any]:
    """The API's error shape, checked, and its `error` object."""
    assert response["Content-Type"] == "application/json", response.content[:200]
    document = response.json()
    assert set(document) == {"error"}
    assert set(document["error"]) == {"code", "message", "details"}
    assert document["error"]["message"]
    return dict(document["error"])


MINUTE = timedelta(minutes=1)
