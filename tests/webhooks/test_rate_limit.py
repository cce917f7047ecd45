"""Each source's verified deliveries per minute: over the limit, 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.helpers import database_state
from tests.webhooks.conftest import Sender, encode, error_of, present, sign
from workflows.models import Run, WebhookSource
from workflows.secrets import new_signing_secret
from workflows.services import webhook_sources
from workflows.services.webhooks import WebhookRejected, webhook_receive

pytestmark = pytest.mark.django_db

TICKET = {"subject": "Refund please"}


def deliver(secret: str, now: Any, payload: Any = TICKET, slug: str = "crm") -> Any:
    body = encode(payload)
    return webhook_receive(source_slug=slug, headers=sign(secret, body, at=now), body=body, now=now)


def test_the_limit_counts_per_minute_and_says_when_to_retry(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any
) -> None:
    webhook_sources.webhook_source_update(source=source, user=owner, rate_limit_per_minute=2)
    # A fixed clock, 45 s into its minute: the window and Retry-After are exact.
    now = present().replace(second=45)
    if now > present():
        now -= timedelta(minutes=1)
    deliver(issued.secret, now, {"subject": "1"})
    deliver(issued.secret, now, {"subject": "2"})
    before = database_state()
    with pytest.raises(WebhookRejected) as refused:
        deliver(issued.secret, now, {"subject": "3"})
    assert (refused.value.status_code, refused.value.code) == (429, "rate_limited")
    assert refused.value.retry_after == 15
    assert database_state() == before
    # The next minute is a new window.
    later = now + timedelta(seconds=15)
    assert not deliver(issued.secret, later, {"subject": "3"}).duplicate
    assert Run.objects.count() == 3


def test_each_source_has_its_own_window(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any
) -> None:
    webhook_sources.webhook_source_update(source=source, user=owner, rate_limit_per_minute=1)
    other = webhook_sources.webhook_source_create(
        workflow=source.workflow, slug="erp", user=owner, rate_limit_per_minute=1
    )
    now = present()
    deliver(issued.secret, now)
    deliver(other.secret, now, slug="erp")
    with pytest.raises(WebhookRejected, match="more than 1 deliveries"):
        deliver(issued.secret, now, {"subject": "again"})


def test_the_http_answer_is_429_with_retry_after(
    sender: Sender, source: WebhookSource, owner: Any
) -> None:
    webhook_sources.webhook_source_update(source=source, user=owner, rate_limit_per_minute=1)
    # Three posts span at most one minute boundary, so two share a window: one is refused.
    responses = [sender.post({"subject": str(i)}) for i in range(3)]
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {202, 429}
    refused = responses[statuses.index(429)]
    assert error_of(refused)["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert Run.objects.count() == statuses.count(202)


def test_unverified_requests_do_not_spend_the_senders_budget(
    sender: Sender, source: WebhookSource, owner: Any
) -> None:
    webhook_sources.webhook_source_update(source=source, user=owner, rate_limit_per_minute=1)
    for _ in range(5):
        assert sender.post(TICKET, secret=new_signing_secret()).status_code == 401
    assert sender.post(TICKET).status_code == 202
