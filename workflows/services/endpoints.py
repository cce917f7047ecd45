"""Callback endpoints: created, changed, rotated, disabled and enabled by a workflow's admins.

Lock order: the endpoint row, then its pending deliveries. Endpoint rows are locked FOR NO
KEY UPDATE, which does not wait for an event transaction inserting a delivery (its foreign
key takes a KEY SHARE lock), so an admin never stalls the engine. The sender, recording a
410, holds a `sending` delivery and then locks its endpoint: the other order, but on a row
this one never locks (only pending deliveries are), so the two cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workflows import notifications, outbound
from workflows.access import access_workflow_admin
from workflows.errors import Conflict, InvalidInput
from workflows.models import AuditEvent, Delivery, Endpoint, Event, Workflow
from workflows.secrets import new_signing_secret
from workflows.services.audit import Actor, audit_event, audit_record


def endpoint_check_url(url: str) -> str:
    """The URL an endpoint may have (http(s), no credentials, https unless allowed)."""
    try:
        return outbound.check_url(url)
    except outbound.Refused as exc:
        raise InvalidInput(str(exc)) from None


def endpoint_check_events(kind: str, event_types: Iterable[str] | None) -> list[str]:
    """Known events, each once, in their declared order; a kind's defaults when none given."""
    if event_types is None:
        return list(Endpoint.DEFAULT_EVENTS[Endpoint.Kind(kind)])
    chosen = set(event_types)
    unknown = sorted(chosen - set(Event.values))
    if unknown:
        raise InvalidInput(f"unknown event types: {', '.join(unknown)}")
    if not chosen:
        raise InvalidInput("an endpoint needs at least one event type")
    return [value for value in Event.values if value in chosen]


def endpoint_create(
    *,
    workflow: Workflow,
    user: Any,
    url: str,
    kind: str = Endpoint.Kind.WEBHOOK,
    event_types: Iterable[str] | None = None,
    description: str = "",
    min_priority: int | None = None,
    named_runs_only: bool = False,
    now: datetime | None = None,
) -> Endpoint:
    """A new active endpoint. A webhook endpoint gets a fresh signing secret, readable as
    `endpoint.secret` on the returned object: show it once, it is never shown again.
    `named_runs_only` keeps it for the runs that name it as their `callback_url`."""
    now = now or timezone.now()
    access_workflow_admin(user=user, workflow=workflow)
    if kind not in Endpoint.Kind.values:
        raise InvalidInput(f"unknown endpoint kind {kind!r}")
    url = endpoint_check_url(url)
    events = endpoint_check_events(kind, event_types)
    if named_runs_only and kind != Endpoint.Kind.WEBHOOK:
        raise InvalidInput("only a webhook endpoint can be named by a run's callback_url")
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            workflow=workflow,
            kind=kind,
            url=url,
            description=description,
            secret=new_signing_secret() if kind == Endpoint.Kind.WEBHOOK else None,
            event_types=events,
            min_priority=settings.HITL_CHAT_MIN_PRIORITY if min_priority is None else min_priority,
            named_runs_only=named_runs_only,
            created_by=user,
            created_at=now,
        )
        audit_record(
            actor=Actor.for_user(user),
            verb="endpoint.created",
            target=endpoint,
            payload={
                **_shown(endpoint),
                "workflow": workflow.slug,
                "kind": kind,
                "named_runs_only": named_runs_only,
            },
        )
    return endpoint


def endpoint_update(
    *,
    endpoint: Endpoint,
    user: Any,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    description: str | None = None,
    min_priority: int | None = None,
    now: datetime | None = None,
) -> Endpoint:
    """Change what an endpoint receives or where; the arguments left None stay as they are."""
    now = now or timezone.now()
    access_workflow_admin(user=user, workflow=endpoint.workflow)
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = endpoint_check_url(url)
    if event_types is not None:
        changes["event_types"] = endpoint_check_events(endpoint.kind, event_types)
    if description is not None:
        changes["description"] = description
    if min_priority is not None:
        changes["min_priority"] = min_priority
    with transaction.atomic():
        endpoint = _locked(endpoint)
        before = _shown(endpoint)
        changed = [name for name, value in changes.items() if getattr(endpoint, name) != value]
        if not changed:
            return endpoint
        for name in changed:
            setattr(endpoint, name, changes[name])
        endpoint.save(update_fields=changed)
        audit_record(
            actor=Actor.for_user(user),
            verb="endpoint.changed",
            target=endpoint,
            payload={"changed": changed, "before": before, "after": _shown(endpoint)},
        )
    return endpoint


def endpoint_rotate_secret(
    *, endpoint: Endpoint, user: Any, now: datetime | None = None
) -> Endpoint:
    """A new signing secret, readable once as `endpoint.secret` on the returned object.

    The previous secret keeps signing, as a second signature in the same header, for
    HITL_ENDPOINT_SECRET_GRACE, so the receiver can switch over without rejecting a message.
    """
    now = now or timezone.now()
    access_workflow_admin(user=user, workflow=endpoint.workflow)
    with transaction.atomic():
        endpoint = _locked(endpoint)
        if endpoint.kind != Endpoint.Kind.WEBHOOK:
            raise InvalidInput("only webhook endpoints sign their messages")
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + settings.HITL_ENDPOINT_SECRET_GRACE
        endpoint.secret = new_signing_secret()
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
        audit_record(
            actor=Actor.for_user(user),
            verb="endpoint.secret_rotated",
            target=endpoint,
            payload={"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()},
        )
    return endpoint


def endpoint_disable(
    *, endpoint: Endpoint, user: Any, reason: str = "", now: datetime | None = None
) -> Endpoint:
    """Stop sending to an endpoint; its pending deliveries are cancelled (redeliverable)."""
    now = now or timezone.now()
    access_workflow_admin(user=user, workflow=endpoint.workflow)
    with transaction.atomic():
        endpoint = _locked(endpoint)
        if not endpoint.active:
            raise Conflict(f"endpoint {endpoint.pk} is already disabled")
        endpoint_disable_locked(
            endpoint=endpoint,
            actor=Actor.for_user(user),
            reason=reason or f"disabled by {user.get_username()}",
            now=now,
        )
    return endpoint


def endpoint_disable_locked(*, endpoint: Endpoint, actor: Actor, reason: str, now: datetime) -> int:
    """Disable the locked `endpoint` and cancel its pending deliveries, in the caller's
    transaction (an admin's, or the sender's after a 410 Gone). Returns how many were
    cancelled."""
    endpoint.active = False
    endpoint.disabled_reason = reason[:200]
    endpoint.disabled_at = now
    endpoint.save(update_fields=["active", "disabled_reason", "disabled_at"])
    pending = list(
        Delivery.objects.select_for_update()
        .filter(endpoint=endpoint, status=Delivery.Status.PENDING)
        .values_list("pk", "webhook_id")
    )
    Delivery.objects.filter(pk__in=[pk for pk, _ in pending]).update(
        status=Delivery.Status.CANCELLED, lease_expires_at=None, last_error=reason[:200]
    )
    disabled = audit_event(
        actor=actor,
        verb="endpoint.disabled",
        target=endpoint,
        payload={"reason": reason, "cancelled": len(pending)},
    )
    cancelled = [
        audit_event(
            actor=actor,
            verb="delivery.cancelled",
            object_type="delivery",
            object_id=pk,
            payload={"endpoint": endpoint.pk, "webhook_id": webhook_id, "reason": reason},
        )
        for pk, webhook_id in pending
    ]
    AuditEvent.objects.bulk_create([disabled, *cancelled])
    notifications.notify_endpoint_disabled(endpoint)
    return len(pending)


def endpoint_enable(*, endpoint: Endpoint, user: Any, now: datetime | None = None) -> Endpoint:
    """Send to a disabled endpoint again. Deliveries cancelled meanwhile stay cancelled:
    redeliver the ones still wanted from its delivery log."""
    now = now or timezone.now()
    access_workflow_admin(user=user, workflow=endpoint.workflow)
    with transaction.atomic():
        endpoint = _locked(endpoint)
        if endpoint.active:
            raise Conflict(f"endpoint {endpoint.pk} is already enabled")
        endpoint_check_url(endpoint.url)
        endpoint.active = True
        endpoint.disabled_reason = ""
        endpoint.disabled_at = None
        endpoint.save(update_fields=["active", "disabled_reason", "disabled_at"])
        audit_record(actor=Actor.for_user(user), verb="endpoint.enabled", target=endpoint)
    return endpoint


def _locked(endpoint: Endpoint) -> Endpoint:
    return (
        Endpoint.objects.select_for_update(no_key=True, of=("self",))
        .select_related("workflow")
        .get(pk=endpoint.pk)
    )


def _shown(endpoint: Endpoint) -> dict[str, Any]:
    # What the audit trail keeps of an endpoint: never a secret, nor a credential in its URL.
    return {
        "url": endpoint.url_shown(),
        "events": endpoint.event_types,
        "description": endpoint.description,
        "min_priority": endpoint.min_priority,
    }
