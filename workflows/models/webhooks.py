"""Signed inbound webhooks: where senders post, the secrets they sign with, what they sent.

A `WebhookSource` is one sender's URL for one workflow (`/api/v1/webhooks/<slug>/`). Each
delivery is signed in the Standard Webhooks format with one of the source's secrets, and
becomes one run; its `InboundMessage` row makes the sender's `webhook-id` an idempotency key.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from workflows.models.core import Run, Workflow
from workflows.secrets import EncryptedSecretField

# Standard Webhooks ids are short (`msg_` + a KSUID); the bound keeps the unique index small.
WEBHOOK_ID_MAX_LENGTH = 255


class WebhookSource(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="webhook_sources")
    # Unique across workflows: the URL names the source alone, so a sender needs no other id.
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    # A disabled source answers 404, like one that does not exist; its history stays.
    active = models.BooleanField(default=True)
    # Verified deliveries accepted per minute (a fixed window in Redis) before 429.
    rate_limit_per_minute = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1)]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rate_limit_per_minute__gt=0), name="webhooksource_rate_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class WebhookSecret(models.Model):
    """One signing secret of a source. Several may be live at once: during a rotation the
    sender may sign with the old or the new one, and either verifies."""

    source = models.ForeignKey(WebhookSource, on_delete=models.CASCADE, related_name="secrets")
    # Encrypted at rest (workflows/secrets.py); Python sees it in clear, lists never show it.
    secret = EncryptedSecretField()
    # The first 12 hex digits of the secret's SHA-256: tells secrets apart without revealing one.
    fingerprint = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    # A rotated-out secret keeps verifying until then, so the sender can switch at leisure.
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["source", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.fingerprint}"

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class InboundMessage(models.Model):
    """One accepted delivery, written in the transaction that starts its run.

    The unique (source, webhook_id) pair is what makes a retried or doubled delivery start
    one run, however many copies arrive at once.
    """

    # No index of its own: the unique constraint below starts with this column.
    source = models.ForeignKey(
        WebhookSource, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    webhook_id = models.CharField(max_length=WEBHOOK_ID_MAX_LENGTH)
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="inbound_messages")
    received_at = models.DateTimeField(default=timezone.now)
    # SHA-256 of the body as received: a reused webhook-id with another body is refused.
    body_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "webhook_id"], name="inboundmessage_once_per_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.webhook_id}"
