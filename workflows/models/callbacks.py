"""Outbound callbacks: the endpoints a workflow reports to, and the outbox of deliveries.

Models hold fields, constraints and choices. Every write goes through
`workflows.services.callbacks` (the outbox), `.deliveries` (the sender) and `.endpoints`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from workflows.models.core import Workflow
from workflows.secrets import EncryptedSecretField


class Event(models.TextChoices):
    """What an endpoint may subscribe to: one Delivery per event and subscribed endpoint."""

    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    TASK_CREATED = "task.created"
    TASK_DECIDED = "task.decided"
    TASK_ESCALATED = "task.escalated"
    TASK_SLA_BREACHED = "task.sla_breached"


class Endpoint(models.Model):
    """Where a workflow's events go: a signed webhook, or a chat channel's incoming webhook."""

    class Kind(models.TextChoices):
        # Standard Webhooks: signed JSON (`webhook-id`, `-timestamp`, `-signature` headers).
        WEBHOOK = "webhook"
        # A Slack-compatible incoming-webhook URL: unsigned `{"text": ...}` messages. The URL
        # is itself the credential, so it is masked wherever endpoints are listed.
        SLACK = "slack"

    # What a new endpoint subscribes to unless told otherwise.
    DEFAULT_EVENTS = {
        Kind.WEBHOOK: [Event.RUN_COMPLETED, Event.RUN_FAILED, Event.RUN_CANCELLED],
        Kind.SLACK: [Event.TASK_CREATED, Event.TASK_ESCALATED, Event.TASK_SLA_BREACHED],
    }

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="endpoints")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Encrypted at rest (HITL_SECRETS_KEYS); none for chat endpoints, which are not signed.
    secret = EncryptedSecretField(null=True, blank=True)
    # After a rotation the old secret signs too (a second signature in the same header)
    # until this time, so receivers can switch over without dropping a message.
    previous_secret = EncryptedSecretField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Event values (Event); the outbox asks which active endpoints contain an event.
    event_types = models.JSONField(default=list)
    # Chat endpoints: new tasks below this priority are not posted.
    min_priority = models.IntegerField(default=0)
    # Only runs that name this endpoint as their `callback_url` report to it; otherwise
    # every run of the workflow does.
    named_runs_only = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workflow", "id"]
        indexes = [
            # The outbox's question, asked in every event's transaction (and by the fast
            # record when it finishes a run): this workflow's active endpoints.
            models.Index(fields=["workflow"], name="endpoint_active_idx", condition=Q(active=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} endpoint {self.pk}: {self.url_shown()}"

    def url_shown(self) -> str:
        """The URL as lists, emails and the audit trail show it: a chat URL's path is its
        credential and any query string may carry a token, so neither is shown."""
        parts = urlsplit(self.url)
        if self.kind == self.Kind.SLACK:
            return f"{parts.scheme}://{parts.netloc}/…"
        return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


class Delivery(models.Model):
    """One event for one endpoint: the outbox row, written with the event, sent after commit."""

    class Status(models.TextChoices):
        PENDING = "pending"  # due at due_at
        SENDING = "sending"  # claimed: an attempt holds the lease
        DELIVERED = "delivered"  # a 2xx answer
        FAILED = "failed"  # out of attempts, or the endpoint answered 410 Gone
        CANCELLED = "cancelled"  # its endpoint was disabled before it was sent

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64, choices=Event.choices)
    # The Standard Webhooks message id: the same on every attempt, so receivers de-duplicate.
    webhook_id = models.CharField(max_length=64, unique=True)
    # The body as sent: the event envelope, or a chat message.
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # len(HITL_DELIVERY_RETRY_SCHEDULE) + 1 when written; redelivery starts the count again.
    max_attempts = models.PositiveIntegerField(default=1)
    # When a PENDING delivery may be sent. Swept by beat, never a countdown.
    due_at = models.DateTimeField(null=True, blank=True)
    # When a message for it was last put on the queue (see StepRun.enqueued_at).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The start of the receiver's last answer, for the delivery log.
    response_excerpt = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The sender's and sweeper's questions: what is due, and whose lease has expired.
            models.Index(
                fields=["due_at"], name="delivery_pending_due_idx", condition=Q(status="pending")
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="delivery_sending_lease_idx",
                condition=Q(status="sending"),
            ),
            # An endpoint's delivery log, newest first.
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_log_idx"),
            # The metrics' window (workflows/metrics.py): deliveries written since a moment.
            models.Index(fields=["created_at"], name="delivery_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.webhook_id} ({self.status})"
