"""Offline local models, stored as their training set: workers rebuild them, no pickles."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class LocalModel(models.Model):
    """One trained version of a local classifier (`local:<name>@<version>` in a definition).

    What is stored is what was trained from: the labelled examples, the seed and the
    hyper-parameters. Training is deterministic and takes well under a second, so any worker
    rebuilds the same model on first use, and nothing executable is ever loaded from the DB.
    """

    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField()
    examples = models.JSONField()  # [{"text": ..., "label": ...}, ...]
    seed = models.IntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    # sha256 over the training set, seed, params and scikit-learn version.
    fingerprint = models.CharField(max_length=64)
    labels = models.JSONField(default=list)
    # Held-out evaluation at training time: accuracy, log loss, Brier score, ECE, n.
    metrics = models.JSONField(default=dict, blank=True)
    # Where the examples came from, e.g. {"file": "tickets.jsonl"} or {"decisions": 120}.
    source = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="localmodel_version_unique"),
        ]

    def __str__(self) -> str:
        return f"local:{self.name}@{self.version}"


class LocalModelRetrain(models.Model):
    """One retraining of a local model from reviewers' decisions, promoted or kept.

    `through_decision` is the highest decision id the retraining could read: the beat task
    counts the decisions made after it to know when the next one is due, whatever the outcome
    (a kept candidate is not retried until enough new decisions arrive).
    """

    class Outcome(models.TextChoices):
        PROMOTED = "promoted"
        KEPT = "kept"

    name = models.SlugField(max_length=80)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=40)
    # The version in force afterwards: the promoted one, or the current one kept.
    version = models.PositiveIntegerField()
    through_decision = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["name", "-created_at"], name="localmodel_retrain_recent")]

    def __str__(self) -> str:
        return f"local:{self.name}@{self.version} {self.outcome}"


class GateRecalibration(models.Model):
    """One recalibration of a gate in `mode: auto` (workflows/services/gates.py).

    `through_decision` is the newest final decision of the workflow when the review history
    was read: the beat task counts the calibration-side reviews after it to know when the
    next recalibration is due, whatever the outcome.
    """

    class Outcome(models.TextChoices):
        TIGHTENED = "tightened"
        LOOSENED = "loosened"
        KEPT = "kept"

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE)
    gate = models.CharField(max_length=63)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    # The workflow's active version afterwards: the one published, or the one kept.
    version = models.PositiveIntegerField()
    through_decision = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["workflow", "gate", "-created_at"], name="gate_recalibration_recent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.gate} {self.outcome}"
