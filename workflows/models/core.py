"""Workflows, their immutable versions, runs, steps and the audit trail.

Models hold fields, constraints and status choices. Every write goes through `workflows.services`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from workflows.auditchain import chain_fields


class Workflow(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    admins = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="administered_workflows"
    )
    reviewer_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    escalation_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    active_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Spend control: at the cap, new AI steps wait (reason "budget") instead of spending.
    daily_cost_cap_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class WorkflowVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # The parsed, validated definition: what the engine runs.
    definition = models.JSONField()
    # What the admin wrote (YAML or JSON), kept for export and review.
    source = models.TextField(blank=True)
    # sha256 of the canonical JSON of `definition`; the same content twice is one version.
    content_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="version_number_unique"),
            models.UniqueConstraint(
                fields=["workflow", "content_hash"], name="version_content_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug} v{self.number}"


class Run(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Outcome(models.TextChoices):
        APPROVED = "approved"
        REJECTED = "rejected"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs")
    # A run pins the version it started on: editing a workflow never changes runs in progress.
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # "" until a step settles it; see engine.run_outcome.
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, default="")
    input = models.JSONField(encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    # Who or what started it: "web", "api", "webhook", "demo", "cli" ...
    source = models.CharField(max_length=32, default="api")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The endpoint the starter named as its `callback_url` (one of the workflow's active
    # webhook endpoints): it hears this run's events even if it hears no other run's.
    callback_endpoint = models.ForeignKey(
        "workflows.Endpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workflow", "status", "-created_at"], name="run_wf_status_idx"),
            models.Index(fields=["status", "finished_at"], name="run_status_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.workflow_id})"


class StepRun(models.Model):
    class Status(models.TextChoices):
        READY = "ready"
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    step_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=32)
    # The step's index in the definition: orders a run's steps for display and context.
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    attempts = models.PositiveIntegerField(default=0)
    # Copied from the definition (or the setting) when the step is created.
    max_attempts = models.PositiveIntegerField(default=5)
    # When a READY step may run (now, or after a retry backoff). Swept by beat, never a countdown.
    due_at = models.DateTimeField(null=True, blank=True)
    # When a message for this step was last put on the queue; the sweeper only re-sends one
    # that has sat unclaimed for HITL_REENQUEUE_AFTER.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    outcome = models.CharField(max_length=32, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # Kind-specific detail: samples, votes, tiers, gate reasons, wait reasons ...
    meta = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    calls = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_id"], name="steprun_one_per_step"),
        ]
        indexes = [
            # The sweeper's two questions: what is due, and whose lease has expired.
            models.Index(
                fields=["due_at"], name="steprun_ready_due_idx", condition=Q(status="ready")
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="steprun_running_lease_idx",
                condition=Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step_id}"


class AuditEvent(models.Model):
    """An append-only record of a transition, decision or configuration change.

    Rows are inserted in the business transaction; a PostgreSQL trigger refuses UPDATE and
    DELETE, except the one-time seal that sets `seq`, `prev_hash`, `hash`, `key_id` and
    `sealed_at`. Another trigger sets `created_at` from the database clock on insert, so no
    caller can date an event (migration 0009).
    """

    class ActorType(models.TextChoices):
        USER = "user"
        TOKEN = "token"  # noqa: S105 (an actor type, not a secret)
        SYSTEM = "system"

    # Always the database's clock (a trigger); the default only lets Django read it back.
    created_at = models.DateTimeField(db_default=Now())
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    verb = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    # The payload enters the hash chain only as this digest, so a payload can be redacted
    # for retention without breaking the chain.
    payload_sha256 = models.CharField(max_length=64)
    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)
    # The audit key the seal used ("" for links made before the chain was keyed).
    key_id = models.CharField(max_length=32, blank=True, db_default="")
    sealed_at = models.DateTimeField(null=True, blank=True)
    # Set, with the payload blanked, by the one database function that redacts for retention
    # (`hitl_audit_redact`); the chain holds only the payload's digest, so it still verifies.
    redacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["id"], name="audit_unsealed_idx", condition=Q(seq__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.verb} {self.object_type}:{self.object_id}"

    def chain_fields(self) -> dict[str, Any]:
        """What the hash covers, besides the previous hash."""
        return chain_fields(
            seq=self.seq,
            id=self.pk,
            created_at=self.created_at,
            actor_type=self.actor_type,
            actor_id=self.actor_id,
            actor_label=self.actor_label,
            verb=self.verb,
            object_type=self.object_type,
            object_id=self.object_id,
            payload_sha256=self.payload_sha256,
            key_id=self.key_id,
            sealed_at=self.sealed_at,
        )


class AuditVerification(models.Model):
    """One run of the audit verifier: the scheduled one starts after the last good one."""

    verified_at = models.DateTimeField(default=timezone.now)
    first_seq = models.BigIntegerField()  # verification started after this event
    last_seq = models.BigIntegerField()
    last_hash = models.CharField(max_length=64)
    checked = models.BigIntegerField()
    ok = models.BooleanField()
    problem = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"audit verification {self.pk}: {'ok' if self.ok else self.problem}"
