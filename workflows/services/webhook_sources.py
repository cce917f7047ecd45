"""Webhook sources and their signing secrets: create, rotate, revoke, disable.

Workflow admins only (`workflows.access`), every change audited; a secret is returned in
clear once, by the service that made it, and never written to the audit trail (only its
fingerprint is).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from workflows.access import access_workflow_admin
from workflows.errors import InvalidInput
from workflows.models import WebhookSecret, WebhookSource, Workflow
from workflows.secrets import new_signing_secret
from workflows.services.audit import Actor, audit_record

# How long a rotated-out secret keeps verifying, so the sender can switch at its own pace.
ROTATION_OVERLAP = timedelta(hours=24)


class IssuedSecret(NamedTuple):
    """A new secret's row, and the secret in clear: shown to the caller once, never again."""

    record: WebhookSecret
    secret: str


# `user` is whose permission counts: a workflow admin (or a superuser). None is the operator
# at the command line (manage.py), trusted like `workflow_import`; pages always pass a user.


def _authorise(user: Any, workflow: Workflow) -> Actor:
    if user is None:
        return Actor.system("cli")
    access_workflow_admin(user=user, workflow=workflow)
    return Actor.for_user(user)


def _audit(actor: Actor, verb: str, source: WebhookSource, now: datetime, **payload: Any) -> None:
    audit_record(
        actor=actor,
        verb=verb,
        object_type="webhook_source",
        object_id=source.pk,
        payload={"source": source.slug, "workflow": source.workflow.slug, **payload},
    )


def _new_secret(source: WebhookSource, now: datetime) -> IssuedSecret:
    secret = new_signing_secret()
    record = WebhookSecret.objects.create(
        source=source,
        secret=secret,
        fingerprint=hashlib.sha256(secret.encode()).hexdigest()[:12],
        created_at=now,
    )
    return IssuedSecret(record, secret)


def webhook_source_create(
    *,
    workflow: Workflow,
    slug: str,
    user: Any,
    description: str = "",
    rate_limit_per_minute: int | None = None,
    now: datetime | None = None,
) -> IssuedSecret:
    """A new source for `workflow` and its first secret (in clear in the result, once)."""
    now = now or timezone.now()
    actor = _authorise(user, workflow)
    limit = (
        settings.HITL_WEBHOOK_RATE_LIMIT if rate_limit_per_minute is None else rate_limit_per_minute
    )
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,80}", slug):
        raise InvalidInput("a source's slug is 1 to 80 letters, digits, hyphens or underscores")
    if limit < 1:
        raise InvalidInput("the rate limit is at least one delivery per minute")
    with transaction.atomic():
        if WebhookSource.objects.filter(slug=slug).exists():
            raise InvalidInput(f"a webhook source {slug!r} exists already")
        source = WebhookSource.objects.create(
            workflow=workflow,
            slug=slug,
            description=description,
            rate_limit_per_minute=limit,
            created_by=user,
            created_at=now,
        )
        issued = _new_secret(source, now)
        _audit(actor, "webhook_source.created", source, now, fingerprint=issued.record.fingerprint)
    return issued


def webhook_secret_add(
    *, source: WebhookSource, user: Any, now: datetime | None = None
) -> IssuedSecret:
    """One more live secret; the others keep verifying until revoked."""
    now = now or timezone.now()
    actor = _authorise(user, source.workflow)
    with transaction.atomic():
        issued = _new_secret(source, now)
        _audit(actor, "webhook_secret.added", source, now, fingerprint=issued.record.fingerprint)
    return issued


def webhook_secret_rotate(
    *,
    source: WebhookSource,
    user: Any,
    overlap: timedelta = ROTATION_OVERLAP,
    now: datetime | None = None,
) -> IssuedSecret:
    """A new secret; the live ones expire after `overlap` (zero: at once), so deliveries
    signed with either verify until the sender has switched."""
    now = now or timezone.now()
    actor = _authorise(user, source.workflow)
    if overlap < timedelta(0):
        raise InvalidInput("the overlap cannot be negative")
    until = now + overlap
    with transaction.atomic():
        live = WebhookSecret.objects.filter(source=source, revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=until)
        )
        retired = sorted(live.values_list("fingerprint", flat=True))
        live.update(expires_at=until)
        issued = _new_secret(source, now)
        _audit(
            actor,
            "webhook_secret.rotated",
            source,
            now,
            fingerprint=issued.record.fingerprint,
            expiring=retired,
            expires_at=until.isoformat(),
        )
    return issued


def webhook_secret_revoke(
    *, secret: WebhookSecret, user: Any, now: datetime | None = None
) -> WebhookSecret:
    """Stop a secret verifying, at once."""
    now = now or timezone.now()
    source = secret.source
    actor = _authorise(user, source.workflow)
    with transaction.atomic():
        updated = WebhookSecret.objects.filter(pk=secret.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not updated:
            raise InvalidInput(f"secret {secret.fingerprint} is already revoked")
        _audit(actor, "webhook_secret.revoked", source, now, fingerprint=secret.fingerprint)
    secret.revoked_at = now
    return secret


def webhook_source_update(
    *,
    source: WebhookSource,
    user: Any,
    active: bool | None = None,
    rate_limit_per_minute: int | None = None,
    description: str | None = None,
    now: datetime | None = None,
) -> WebhookSource:
    """Disable or enable a source, change its rate limit or description."""
    now = now or timezone.now()
    actor = _authorise(user, source.workflow)
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise InvalidInput("the rate limit is at least one delivery per minute")
    wanted = {
        "active": active,
        "rate_limit_per_minute": rate_limit_per_minute,
        "description": description,
    }
    with transaction.atomic():
        source = (
            WebhookSource.objects.select_for_update().select_related("workflow").get(pk=source.pk)
        )
        changes = {
            field: value
            for field, value in wanted.items()
            if value is not None and getattr(source, field) != value
        }
        if not changes:
            return source
        for field, value in changes.items():
            setattr(source, field, value)
        source.save(update_fields=list(changes))
        verb = "webhook_source.updated"
        if "active" in changes:
            verb = "webhook_source.enabled" if changes["active"] else "webhook_source.disabled"
        _audit(actor, verb, source, now, changes=changes)
    return source
