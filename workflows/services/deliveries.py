"""Sending deliveries: claim, commit, send outside any transaction, record. As for steps.

A Celery message is only a nudge. The claim is one conditional UPDATE (pending and due, or
sending with an expired lease, and still at the attempt number read), which adds an attempt
and sets a lease; it commits before anything is sent. The HTTP request holds no database
lock. The result is recorded in a new short transaction only by the attempt that still owns
the delivery. A worker killed mid-send leaves the delivery `sending` with a lease that
expires; the deliveries sweep then sends it again, with the same `webhook-id`.

Answers: 2xx delivered; 410 Gone disables the endpoint (its pending deliveries are
cancelled); anything else, and no answer at all, is retried after the next entry of
HITL_DELIVERY_RETRY_SCHEDULE (with jitter, and never before a Retry-After). After the last
attempt the delivery fails, which raises an alert (`services.alerts`): an ERROR line, an
email to the workflow's admins.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from workflows import instruments, outbound
from workflows.access import access_workflow_admin
from workflows.errors import Conflict
from workflows.models import Delivery, Endpoint
from workflows.secrets import SecretUnreadable
from workflows.services.alerts import alert_raise
from workflows.services.audit import Actor, audit_record
from workflows.services.callbacks import SYSTEM, delivery_enqueue_on_commit, max_attempts
from workflows.services.endpoints import endpoint_disable_locked

logger = logging.getLogger(__name__)
_rng = random.SystemRandom()
# Retries wait their schedule entry plus up to this share of it, so that the deliveries of
# a receiver that was down do not all come back at the same second.
JITTER = 0.2
USER_AGENT = "hitl-callbacks/1"
# How much of a receiver's answer the delivery log keeps.
EXCERPT_CHARS = 1000


@dataclass(frozen=True)
class Skipped:
    """The attempt sent nothing: its endpoint was disabled after the delivery was written."""

    reason: str


def delivery_send(
    *, delivery_id: int, now: datetime | None = None, resolver: outbound.Resolver | None = None
) -> Delivery | None:
    """Send one delivery, if this caller wins the claim. Returns the recorded Delivery or None.

    `now` pins the clock for tests (the claim, the signature's timestamp and the record);
    `resolver` replaces DNS for the SSRF checks (`workflows.outbound`).
    """
    claim_at = now or timezone.now()
    delivery = _claim(delivery_id, claim_at)
    if delivery is None:
        deliveries_park_exhausted(where=Q(pk=delivery_id), now=claim_at)
        return None
    endpoint = delivery.endpoint
    result: outbound.Answer | Skipped | str
    if not endpoint.active:
        result = Skipped(endpoint.disabled_reason or "the endpoint is disabled")
    else:
        # Outside any transaction: a slow receiver must never hold a database lock.
        try:
            body, headers = delivery_request(delivery, endpoint, now or timezone.now())
            result = outbound.post(endpoint.url, body=body, headers=headers, resolver=resolver)
        except (outbound.OutboundError, SecretUnreadable) as exc:
            result = str(exc)
        except Exception as exc:  # the soft time limit included: record it, retry later
            logger.exception("delivery %s raised", delivery.webhook_id)
            result = f"{type(exc).__name__}: {exc}"
    return _record(delivery.pk, delivery.attempts, result, now or timezone.now())


def _claim(delivery_id: int, now: datetime) -> Delivery | None:
    attempts = Delivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first()
    if attempts is None:
        return None
    with transaction.atomic():
        won = Delivery.objects.filter(
            Q(status=Delivery.Status.PENDING, due_at__lte=now)
            | Q(status=Delivery.Status.SENDING, lease_expires_at__lte=now),
            pk=delivery_id,
            attempts=attempts,
            attempts__lt=F("max_attempts"),
        ).update(
            status=Delivery.Status.SENDING,
            attempts=attempts + 1,
            lease_expires_at=now + settings.HITL_DELIVERY_LEASE,
            last_attempt_at=now,
        )
        if not won:
            return None
        delivery = Delivery.objects.select_related("endpoint__workflow").get(pk=delivery_id)
        audit_record(
            actor=SYSTEM,
            verb="delivery.sending",
            target=delivery,
            payload={"attempt": delivery.attempts, "webhook_id": delivery.webhook_id},
        )
    return delivery


def delivery_request(
    delivery: Delivery, endpoint: Endpoint, at: datetime
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an attempt at `at`: signed for webhook endpoints."""
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    if endpoint.kind == Endpoint.Kind.WEBHOOK:
        secrets = [endpoint.secret]
        expires = endpoint.previous_secret_expires_at
        if endpoint.previous_secret and expires is not None and expires > at:
            secrets.append(endpoint.previous_secret)
        headers["webhook-id"] = delivery.webhook_id
        headers["webhook-timestamp"] = str(int(at.timestamp()))
        # Standard Webhooks: space-separated signatures; a receiver accepts any that matches.
        headers["webhook-signature"] = " ".join(
            Webhook(secret).sign(delivery.webhook_id, at, body) for secret in secrets if secret
        )
    return body, headers


def _record(
    delivery_id: int, attempt: int, result: outbound.Answer | Skipped | str, now: datetime
) -> Delivery | None:
    """Record an attempt's result, if the attempt still owns the delivery."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("endpoint__workflow")
            .filter(pk=delivery_id, status=Delivery.Status.SENDING, attempts=attempt)
            .first()
        )
        if delivery is None:
            # The lease expired and another attempt took over: it records, this one is dropped.
            logger.warning("attempt %s of delivery %s lost its lease", attempt, delivery_id)
            return None
        delivery.lease_expires_at = None
        payload: dict[str, Any] = {"attempt": attempt, "webhook_id": delivery.webhook_id}
        if isinstance(result, Skipped):
            delivery.status = Delivery.Status.CANCELLED
            delivery.last_error = result.reason[:200]
            return _save(delivery, "delivery.cancelled", {**payload, "reason": result.reason}, now)
        retry_after: float | None = None
        if isinstance(result, outbound.Answer):
            delivery.last_status_code = result.status_code
            delivery.response_excerpt = result.excerpt[:EXCERPT_CHARS]
            delivery.last_error = (
                "" if 200 <= result.status_code < 300 else f"HTTP {result.status_code}"
            )
            payload["status_code"] = result.status_code
            retry_after = outbound.retry_after_seconds(result.retry_after, now)
        else:
            delivery.last_status_code = None
            delivery.response_excerpt = ""
            delivery.last_error = result
            payload["error"] = result
        code = delivery.last_status_code
        if code is not None and 200 <= code < 300:
            delivery.status = Delivery.Status.DELIVERED
            delivery.delivered_at = now
            return _save(delivery, "delivery.delivered", payload, now)
        if code == 410:
            # Gone: the receiver asks us to stop. The endpoint is disabled (which alerts).
            delivery.status = Delivery.Status.FAILED
            _save(delivery, "delivery.failed", {**payload, "reason": "gone"}, now)
            endpoint = (
                Endpoint.objects.select_for_update(no_key=True, of=("self",))
                .select_related("workflow")
                .get(pk=delivery.endpoint_id)
            )
            if endpoint.active:
                endpoint_disable_locked(
                    endpoint=endpoint,
                    actor=SYSTEM,
                    reason=f"the receiver answered 410 Gone to {delivery.webhook_id}",
                    now=now,
                )
            return delivery
        if attempt < delivery.max_attempts:
            delivery.status = Delivery.Status.PENDING
            delivery.due_at = now + retry_delay(attempt, retry_after)
            # No countdown in Redis: the deliveries sweep sends it once due_at has passed.
            delivery.enqueued_at = None
            return _save(
                delivery,
                "delivery.retry_scheduled",
                {**payload, "due_at": delivery.due_at.isoformat()},
                now,
            )
        delivery.status = Delivery.Status.FAILED
        _save(delivery, "delivery.failed", {**payload, "reason": "attempts exhausted"}, now)
        endpoint = delivery.endpoint
        alert_raise(
            kind="delivery_failed",
            message=f"delivery {delivery.webhook_id} ({delivery.event}, endpoint {endpoint.pk})"
            f" failed after {attempt} attempts: {delivery.last_error}",
            workflow=endpoint.workflow,
            details={"delivery": delivery.pk, "endpoint": endpoint.pk, "event": delivery.event},
            subject=f"A {delivery.event} callback of {endpoint.workflow.slug} failed",
            advice=f"It was sent to {endpoint.url_shown()} and will not be retried. Redeliver it"
            " from the endpoint's delivery log once the receiver is fixed.",
            now=now,
        )
    return delivery


def _save(delivery: Delivery, verb: str, payload: dict[str, Any], now: datetime) -> Delivery:
    outcome = verb.removeprefix("delivery.")
    transaction.on_commit(lambda: instruments.DELIVERIES.labels(outcome).inc())
    delivery.save(
        update_fields=[
            "status",
            "due_at",
            "enqueued_at",
            "lease_expires_at",
            "last_status_code",
            "last_error",
            "response_excerpt",
            "delivered_at",
        ]
    )
    audit_record(actor=SYSTEM, verb=verb, target=delivery, payload=payload)
    return delivery


def retry_delay(attempt: int, retry_after: float | None = None) -> timedelta:
    """How long after failed attempt number `attempt` (1-based) to try again."""
    schedule = settings.HITL_DELIVERY_RETRY_SCHEDULE
    base = schedule[min(attempt, len(schedule)) - 1]
    delay = base + _rng.uniform(0, base * JITTER)
    if retry_after is not None:
        # The receiver said when: never earlier, and never later than the cap.
        delay = max(delay, min(retry_after, settings.HITL_DELIVERY_RETRY_AFTER_MAX))
    return timedelta(seconds=delay)


def deliveries_park_exhausted(*, where: Q | None = None, now: datetime) -> int:
    """Fail deliveries that lost their worker on every allowed attempt, instead of looping."""
    candidates = Delivery.objects.filter(
        where or Q(),
        status=Delivery.Status.SENDING,
        lease_expires_at__lte=now,
        attempts__gte=F("max_attempts"),
    ).values_list("pk", "attempts")
    parked = 0
    for pk, attempts in list(candidates):
        error = f"the worker was lost while sending, on attempt {attempts} of {attempts}"
        parked += _record(pk, attempts, error, now) is not None
    return parked


def delivery_redeliver(*, delivery: Delivery, user: Any, now: datetime | None = None) -> Delivery:
    """Send a finished delivery again (failed, delivered or cancelled), with the same
    `webhook-id`, a fresh attempt budget and a fresh signature. Workflow admins only."""
    now = now or timezone.now()
    endpoint = Endpoint.objects.select_related("workflow").get(pk=delivery.endpoint_id)
    access_workflow_admin(user=user, workflow=endpoint.workflow)
    if not endpoint.active:
        raise Conflict(f"endpoint {endpoint.pk} is disabled: enable it before redelivering")
    finished = [Delivery.Status.FAILED, Delivery.Status.DELIVERED, Delivery.Status.CANCELLED]
    with transaction.atomic():
        updated = Delivery.objects.filter(pk=delivery.pk, status__in=finished).update(
            status=Delivery.Status.PENDING,
            attempts=0,
            max_attempts=max_attempts(),
            due_at=now,
            enqueued_at=now,
            lease_expires_at=None,
            delivered_at=None,
        )
        if not updated:
            raise Conflict(f"delivery {delivery.webhook_id} is already waiting to be sent")
        delivery.refresh_from_db()
        audit_record(
            actor=Actor.for_user(user),
            verb="delivery.redelivered",
            target=delivery,
            payload={"webhook_id": delivery.webhook_id, "endpoint": endpoint.pk},
        )
        delivery_enqueue_on_commit(delivery.pk)
    return delivery
