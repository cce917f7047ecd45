"""Operations: raised alerts (de-duplicated) and the marks periodic jobs leave.

Written only by `workflows.services.alerts`.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from workflows.models.core import Workflow


class Alert(models.Model):
    """One alert condition: a kind, for a workflow (or none) and an optional finer key.

    Raising it again updates the same row; an email goes out only when the last one is older
    than HITL_ALERT_DEDUP_SECONDS, so a stuck condition mails once per window, not per sweep.
    """

    kind = models.CharField(max_length=64)
    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    # What makes two raises of one kind distinct conditions ("" for one per kind and workflow).
    key = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    first_raised_at = models.DateTimeField(default=timezone.now)
    last_raised_at = models.DateTimeField(default=timezone.now)
    raised = models.PositiveIntegerField(default=0)
    # When the last email went out; the raises since then were only counted and logged.
    notified_at = models.DateTimeField(null=True, blank=True)
    suppressed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-last_raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "workflow", "key"],
                name="alert_one_per_condition",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"alert {self.kind} ({self.raised}x)"


class JobMark(models.Model):
    """When a periodic job last ran, so its next run can tell how long beat was silent."""

    name = models.CharField(max_length=64, unique=True)
    last_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} last ran at {self.last_at:%Y-%m-%d %H:%M:%S}"
