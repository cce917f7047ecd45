"""The sender against a real HTTP server on loopback: signatures, retries, 410, Retry-After,
exhaustion and its alert, leases, redelivery and secret rotation. The clock is `now=`."""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.helpers import drive
from tests.receiver import Answer, Receiver, free_port
from workflows import services
from workflows.errors import Conflict, NotAllowed
from workflows.models import AuditEvent, Delivery, Endpoint, Workflow
from workflows.secrets import new_signing_secret

pytestmark = pytest.mark.django_db


def enqueue(workflow: Workflow, now: datetime, event: str = "run.completed") -> list[Delivery]:
    return services.deliveries_enqueue(
        workflow_id=workflow.pk, run_id=None, event=event, data={"run": {"id": 1}}, now=now
    )


def send(delivery: Delivery, now: datetime, **kwargs: Any) -> Delivery | None:
    return services.delivery_send(delivery_id=delivery.pk, now=now, **kwargs)


def verbs(delivery: Delivery) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="delivery", object_id=str(delivery.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


def test_a_run_s_callback_arrives_signed_and_verifies(
    receiver: Receiver, hooked: Workflow, make_endpoint: Callable[..., Endpoint], system: Any
) -> None:
    endpoint = make_endpoint(hooked, receiver.url, event_types=["run.completed"])
    now = timezone.now()
    run = services.run_start(workflow=hooked, input={"amount": 70}, actor=system, now=now)
    drive(run, now=now)
    [delivery] = Delivery.objects.all()

    sent = send(delivery, now)

    assert sent is not None
    assert (sent.status, sent.attempts, sent.last_status_code) == ("delivered", 1, 200)
    assert (sent.response_excerpt, sent.delivered_at, sent.lease_expires_at) == ("ok", now, None)
    [request] = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery.webhook_id
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    # Verified as a receiver would, with the secret shown once at creation.
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body == delivery.payload
    assert body["data"]["run"]["id"] == run.pk
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(request.body, request.headers)
    assert verbs(delivery) == ["delivery.created", "delivery.sending", "delivery.delivered"]
    # Delivered is final: another message for it is a no-op.
    assert send(delivery, now + timedelta(days=1)) is None
    assert len(receiver.requests) == 1


def test_a_receiver_that_is_down_gets_the_delivery_later_with_the_same_id(
    allow_loopback: None, hooked: Workflow, make_endpoint: Callable[..., Endpoint]
) -> None:
    port = free_port()
    make_endpoint(hooked, f"http://127.0.0.1:{port}/hooks")
    now = timezone.now()
    [delivery] = enqueue(hooked, now)

    failed = send(delivery, now)

    assert failed is not None
    assert (failed.status, failed.attempts, failed.last_status_code) == ("pending", 1, None)
    assert "ConnectError" in failed.last_error
    assert now + timedelta(seconds=5) <= failed.due_at <= now + timedelta(seconds=6)
    assert failed.enqueued_at is None  # left to the sweep, not a countdown
    assert send(delivery, now) is None  # not due yet
    receiver = Receiver(port).start()
    try:
        delivered = send(delivery, failed.due_at)
    finally:
        receiver.stop()
    assert delivered is not None
    assert (delivered.status, delivered.attempts) == ("delivered", 2)
    [request] = receiver.requests
    assert request.headers["webhook-id"] == delivery.webhook_id
    assert verbs(delivery)[1:] == [
        "delivery.sending",
        "delivery.retry_scheduled",
        "delivery.sending",
        "delivery.delivered",
    ]


def test_410_disables_the_endpoint_and_cancels_its_pending_deliveries(
    receiver: Receiver,
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    owner: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    endpoint = make_endpoint(hooked, receiver.url, event_types=["run.completed", "run.failed"])
    other = make_endpoint(hooked, receiver.url + "/other", event_types=["run.failed"])
    now = timezone.now()
    [first] = enqueue(hooked, now)
    pending = enqueue(hooked, now, event="run.failed")
    receiver.answer(Answer(410, body=b"gone"))

    with django_capture_on_commit_callbacks(execute=True):
        gone = send(first, now)

    assert gone is not None
    assert (gone.status, gone.last_status_code) == ("failed", 410)
    endpoint.refresh_from_db()
    assert not endpoint.active
    assert "410" in endpoint.disabled_reason and endpoint.disabled_at == now
    statuses = {
        d.endpoint_id: d.status for d in Delivery.objects.filter(pk__in=[p.pk for p in pending])
    }
    assert statuses == {endpoint.pk: "cancelled", other.pk: "pending"}
    [alert] = mail.outbox
    assert alert.to == [owner.email] and "disabled" in alert.subject
    assert AuditEvent.objects.filter(verb="endpoint.disabled", object_id=str(endpoint.pk)).exists()
    # A cancelled delivery is never sent; a message still on the queue is a no-op.
    cancelled = next(p for p in pending if p.endpoint_id == endpoint.pk)
    assert send(cancelled, now) is None
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", timedelta(seconds=120)),
        ("date", timedelta(hours=3)),
        ("9999999", timedelta(hours=6)),  # capped at HITL_DELIVERY_RETRY_AFTER_MAX
        ("1", None),  # shorter than the backoff: the backoff wins
    ],
)
def test_retry_after_is_honoured(
    receiver: Receiver,
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    header: str,
    wait: timedelta | None,
) -> None:
    make_endpoint(hooked, receiver.url)
    now = timezone.now().replace(microsecond=0)
    if header == "date":
        header = email.utils.format_datetime(now + timedelta(hours=3), usegmt=True)
    receiver.answer(Answer(503, headers=(("Retry-After", header),)))
    [delivery] = enqueue(hooked, now)

    retried = send(delivery, now)

    assert retried is not None
    assert (retried.status, retried.last_status_code) == ("pending", 503)
    if wait is None:
        assert now + timedelta(seconds=5) <= retried.due_at <= now + timedelta(seconds=6)
    else:
        assert retried.due_at == now + wait


def test_exhausted_retries_fail_the_delivery_log_an_error_and_email_the_admins(
    receiver: Receiver,
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    owner: User,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.HITL_DELIVERY_RETRY_SCHEDULE = [10.0, 20.0]
    make_endpoint(hooked, receiver.url)
    receiver.answer(*[Answer(500, body=b"boom")] * 3)
    at = timezone.now()
    [delivery] = enqueue(hooked, at)
    assert delivery.max_attempts == 3
    waits = []
    with (
        caplog.at_level(logging.ERROR, logger="workflows.services.deliveries"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        for _ in range(3):
            result = send(delivery, at)
            assert result is not None
            if result.status == "pending":
                waits.append((result.due_at - at).total_seconds())
                at = result.due_at
    assert 10 <= waits[0] <= 12 and 20 <= waits[1] <= 24
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 500)
    assert (delivery.last_error, delivery.response_excerpt) == ("HTTP 500", "boom")
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert delivery.webhook_id in record.getMessage()
    assert "failed after 3 attempts" in record.getMessage()
    [alert] = mail.outbox
    assert alert.to == [owner.email]
    assert "failed" in alert.subject and delivery.webhook_id in alert.body
    assert verbs(delivery)[-1] == "delivery.failed"
    assert send(delivery, at + timedelta(days=2)) is None
    assert len(receiver.requests) == 3


def test_a_redirect_is_not_followed(
    receiver: Receiver, hooked: Workflow, make_endpoint: Callable[..., Endpoint]
) -> None:
    make_endpoint(hooked, receiver.url)
    receiver.answer(Answer(302, headers=(("Location", "http://169.254.169.254/latest/"),)))
    now = timezone.now()
    [delivery] = enqueue(hooked, now)
    result = send(delivery, now)
    assert result is not None
    assert (result.status, result.last_status_code) == ("pending", 302)
    assert len(receiver.requests) == 1


def test_a_name_resolving_to_a_private_address_is_refused_and_retried(
    hooked: Workflow, make_endpoint: Callable[..., Endpoint]
) -> None:
    make_endpoint(hooked, "https://hooks.example.com/hitl")
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.1"]

    now = timezone.now()
    [delivery] = enqueue(hooked, now)
    result = send(delivery, now, resolver=resolver)
    assert result is not None
    assert asked == ["hooks.example.com"]
    assert result.status == "pending"
    assert result.last_error == "refused hooks.example.com: 10.0.0.1 is a private address"


def test_a_claim_is_a_lease_and_a_lost_worker_s_delivery_is_sent_after_it(
    receiver: Receiver, hooked: Workflow, make_endpoint: Callable[..., Endpoint], settings: Any
) -> None:
    from workflows.services import deliveries

    make_endpoint(hooked, receiver.url)
    now = timezone.now()
    [delivery] = enqueue(hooked, now)
    # A worker claims it and dies before sending or recording anything.
    assert deliveries._claim(delivery.pk, now) is not None
    assert send(delivery, now) is None  # the lease is live
    expired = now + settings.HITL_DELIVERY_LEASE
    result = send(delivery, expired)
    assert result is not None
    assert (result.status, result.attempts) == ("delivered", 2)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.webhook_id]


def test_a_delivery_whose_worker_is_lost_on_every_attempt_is_parked_as_failed(
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from workflows.services import deliveries

    settings.HITL_DELIVERY_RETRY_SCHEDULE = []
    make_endpoint(hooked, "https://hooks.example.com/hitl")
    now = timezone.now()
    [delivery] = enqueue(hooked, now)
    assert deliveries._claim(delivery.pk, now) is not None
    expired = now + settings.HITL_DELIVERY_LEASE
    with django_capture_on_commit_callbacks(execute=False):
        assert services.deliveries_sweep(now=expired) == {"enqueued": 0, "parked": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "worker was lost" in delivery.last_error


def test_the_sweep_resends_due_and_lapsed_deliveries_but_not_fresh_ones(
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from workflows.services import deliveries

    make_endpoint(hooked, "https://hooks.example.com/hitl")
    now = timezone.now()
    fresh, lost, retry = (enqueue(hooked, now)[0] for _ in range(3))
    Delivery.objects.filter(pk=lost.pk).update(enqueued_at=now - settings.HITL_REENQUEUE_AFTER)
    Delivery.objects.filter(pk=retry.pk).update(attempts=1, enqueued_at=None, due_at=now)
    earlier = now - settings.HITL_DELIVERY_LEASE
    [lapsed] = enqueue(hooked, earlier)
    assert deliveries._claim(lapsed.pk, earlier) is not None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = services.deliveries_sweep(now=now)
    assert result == {"enqueued": 3, "parked": 0}
    assert len(callbacks) == 3
    stamped = dict(Delivery.objects.values_list("pk", "enqueued_at"))
    assert stamped[fresh.pk] == fresh.enqueued_at
    assert {stamped[pk] for pk in (lost.pk, retry.pk, lapsed.pk)} == {now}


@pytest.mark.django_db(transaction=True)
def test_nothing_is_locked_while_the_request_is_in_flight_and_a_late_attempt_is_dropped(
    receiver: Receiver, hooked: Workflow, make_endpoint: Callable[..., Endpoint], settings: Any
) -> None:
    make_endpoint(hooked, receiver.url)
    now = timezone.now()
    [delivery] = enqueue(hooked, now)
    seen: list[tuple[str, int]] = []

    def while_in_flight(_: Any) -> None:
        # The claim committed, and the sender holds no lock on the row during the request.
        try:
            with transaction.atomic():
                row = Delivery.objects.select_for_update(nowait=True).get(pk=delivery.pk)
                seen.append((row.status, row.attempts))
        except DatabaseError:
            seen.append(("locked", 0))
        finally:
            connection.close()

    receiver.on_request = while_in_flight
    receiver.hold()  # the first attempt waits at the receiver ...
    results: dict[str, Any] = {}

    def first_attempt() -> None:
        try:
            results["first"] = send(delivery, now)
        finally:
            connection.close()

    thread = threading.Thread(target=first_attempt)
    thread.start()
    assert receiver.arrived.wait(10)
    # ... past its lease: a second attempt takes over and is answered at once.
    second = send(delivery, now + settings.HITL_DELIVERY_LEASE)
    receiver.release()
    thread.join(30)
    assert second is not None and (second.status, second.attempts) == ("delivered", 2)
    assert results["first"] is None  # its result is dropped, never recorded twice
    assert seen == [("sending", 1), ("sending", 2)]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.webhook_id}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert verbs(delivery).count("delivery.delivered") == 1


def test_redelivery_sends_again_with_the_same_id_for_admins_only(
    receiver: Receiver,
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    owner: User,
    outsider: User,
) -> None:
    endpoint = make_endpoint(hooked, receiver.url)
    now = timezone.now()
    [delivery] = enqueue(hooked, now)
    assert send(delivery, now) is not None
    with pytest.raises(NotAllowed):
        services.delivery_redeliver(delivery=delivery, user=outsider, now=now)

    again = services.delivery_redeliver(delivery=delivery, user=owner, now=now)

    assert (again.status, again.attempts, again.webhook_id) == ("pending", 0, delivery.webhook_id)
    with pytest.raises(Conflict):
        services.delivery_redeliver(delivery=delivery, user=owner, now=now)
    assert send(delivery, now) is not None
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.webhook_id] * 2
    assert "delivery.redelivered" in verbs(delivery)
    services.endpoint_disable(endpoint=endpoint, user=owner, now=now)
    with pytest.raises(Conflict, match="disabled"):
        services.delivery_redeliver(delivery=delivery, user=owner, now=now)


def test_after_a_rotation_both_secrets_verify_until_the_grace_period_ends(
    receiver: Receiver,
    hooked: Workflow,
    make_endpoint: Callable[..., Endpoint],
    owner: User,
    settings: Any,
) -> None:
    endpoint = make_endpoint(hooked, receiver.url)
    old = endpoint.secret
    now = timezone.now()
    rotated = services.endpoint_rotate_secret(endpoint=endpoint, user=owner, now=now)
    new = rotated.secret
    assert new != old
    stored = Endpoint.objects.get(pk=endpoint.pk)
    assert (stored.secret, stored.previous_secret) == (new, old)
    first, second = enqueue(hooked, now), enqueue(hooked, now)
    assert send(first[0], now) is not None
    # Past the grace period, only the new secret signs (the clock is moved, not waited for).
    after = now + settings.HITL_ENDPOINT_SECRET_GRACE
    Delivery.objects.filter(pk=second[0].pk).update(due_at=after)
    assert send(second[0], after) is not None
    during, past = receiver.requests
    assert len(during.headers["webhook-signature"].split()) == 2
    Webhook(new).verify(during.body, during.headers)
    Webhook(old).verify(during.body, during.headers)
    # Its timestamp is a day ahead of the wall clock, which verify() would refuse as such:
    # compare the signatures themselves.
    msg_id = past.headers["webhook-id"]
    assert past.headers["webhook-signature"] == Webhook(new).sign(msg_id, after, past.body)
    assert Webhook(old).sign(msg_id, after, past.body) not in past.headers["webhook-signature"]


def test_a_chat_endpoint_gets_unsigned_text(
    receiver: Receiver, hooked: Workflow, make_endpoint: Callable[..., Endpoint]
) -> None:
    endpoint = make_endpoint(hooked, receiver.url, kind="slack", event_types=["run.failed"])
    assert endpoint.secret is None
    now = timezone.now()
    [delivery] = services.deliveries_enqueue(
        workflow_id=hooked.pk,
        run_id=None,
        event="run.failed",
        data={
            "run": {"id": 4, "error": "step 'x' failed: <boom> & more", "outcome": ""},
            "workflow": {"slug": "totals", "version": 1},
        },
        now=now,
    )
    assert send(delivery, now) is not None
    [request] = receiver.requests
    assert not any(name.startswith("webhook-") for name in request.headers)
    assert request.body == (
        b'{"text":"Run 4 of *totals* failed: step \'x\' failed: &lt;boom&gt; &amp; more"}'
    )


def test_the_sender_is_routed_to_the_callbacks_queue() -> None:
    from hitl.celery import app

    route = app.amqp.router.route({}, services.callbacks.DELIVERY_SEND_TASK)
    assert route["queue"].name == "callbacks"
