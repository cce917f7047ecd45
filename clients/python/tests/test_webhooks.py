"""`WebhookSender` against a real server that verifies with `standardwebhooks`, as hitl does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from hitl_client import ApiError, WebhookSender
from tests.conftest import Clock
from tests.server import Reply, Request, Server, error

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ANSWER = {"run": 17, "status": "pending", "duplicate": False}


def verified(request: Request, secret: str = SECRET) -> None:
    """What hitl does first with a delivery (raises WebhookVerificationError if it fails)."""
    Webhook(secret).verify(request.body, request.headers)


class Ticking:
    """A sender's clock that moves a minute at each reading: every attempt is signed at its
    own time, and the receiver's five-minute tolerance still holds."""

    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc) - timedelta(minutes=2)

    def __call__(self) -> datetime:
        self.at += timedelta(minutes=1)
        return self.at


@pytest.fixture
def sender(server: Server, clock: Clock) -> Iterator[WebhookSender]:
    url = f"{server.url}/api/v1/webhooks/tickets/"
    with WebhookSender(url, SECRET, sleep=clock.sleep, now=Ticking()) as s:
        yield s


def test_a_delivery_is_signed_so_that_standard_webhooks_verifies_it(
    server: Server, sender: WebhookSender
) -> None:
    server.reply(Reply(202, ANSWER))

    accepted = sender.send({"subject": "Charged twice", "body": "Order 1042"})

    (request,) = server.requests
    verified(request)
    assert request.path == "/api/v1/webhooks/tickets/"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert json.loads(request.body) == {"subject": "Charged twice", "body": "Order 1042"}
    assert (accepted.run, accepted.status, accepted.duplicate) == (17, "pending", False)
    assert accepted.webhook_id == request.headers["webhook-id"]


def test_a_signature_made_with_another_secret_would_not_verify(
    server: Server, sender: WebhookSender
) -> None:
    # The check above could not pass by accident: the receiver's verification is real.
    server.reply(Reply(202, ANSWER))
    sender.send({"subject": "x"})
    with pytest.raises(Exception, match="No matching signature"):
        verified(server.requests[0], secret="whsec_" + "QUJD" * 8)


def test_a_retry_sends_the_same_id_and_bytes_signed_afresh(
    server: Server, sender: WebhookSender, clock: Clock
) -> None:
    server.reply(Reply(drop=True), error(503, "unavailable", Retry_After="2"), Reply(202, ANSWER))

    assert sender.send({"subject": "x"}).run == 17

    assert len(server.requests) == 3 and clock.slept == [0.5, 2.0]
    assert len({r.headers["webhook-id"] for r in server.requests}) == 1
    assert len({r.body for r in server.requests}) == 1
    stamps = [int(r.headers["webhook-timestamp"]) for r in server.requests]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    for request in server.requests:
        verified(request)


def test_a_rate_limited_delivery_waits_as_asked(
    server: Server, sender: WebhookSender, clock: Clock
) -> None:
    server.reply(error(429, "rate_limited", Retry_After="9"), Reply(202, ANSWER))
    sender.send({"subject": "x"})
    assert clock.slept == [9.0]


def test_resending_with_the_first_id_is_answered_as_a_duplicate(
    server: Server, sender: WebhookSender
) -> None:
    server.reply(Reply(200, {**ANSWER, "status": "running", "duplicate": True}))
    accepted = sender.send({"subject": "x"}, webhook_id="msg_order_1042")
    assert server.requests[0].headers["webhook-id"] == "msg_order_1042"
    assert accepted.duplicate and accepted.status == "running"


@pytest.mark.parametrize(
    "refusal",
    [
        lambda: error(401, "invalid_signature", "no signature matches"),
        lambda: error(422, "invalid_input", "schema", [{"path": "subject"}]),
        lambda: error(409, "webhook_id_reused", "another body", {"run": 3}),
    ],
)
def test_a_refusal_is_an_api_error_and_is_not_retried(
    server: Server, sender: WebhookSender, refusal: Callable[[], Reply]
) -> None:
    reply = refusal()
    server.reply(reply)
    with pytest.raises(ApiError) as caught:
        sender.send({"subject": "x"})
    assert caught.value.status == reply.status
    assert caught.value.code == reply.body["error"]["code"]
    assert caught.value.details == reply.body["error"]["details"]
    assert len(server.requests) == 1


def test_bytes_are_sent_as_they_are(server: Server, sender: WebhookSender) -> None:
    server.reply(Reply(202, ANSWER))
    body = b'{"subject":  "spaces kept", "n": 1.50}'
    sender.send(body)
    assert server.requests[0].body == body
    verified(server.requests[0])


def test_a_secret_that_is_not_base64_is_refused_when_the_sender_is_made() -> None:
    with pytest.raises(ValueError):
        WebhookSender("http://127.0.0.1:1/", "whsec_not*base64")
