"""What the API keeps between requests: the answers to POSTs sent with an Idempotency-Key."""

from __future__ import annotations

from django.db import models

from hitl.accounts.models import ApiToken


class IdempotencyRecord(models.Model):
    """The answer to one POST made with an `Idempotency-Key`, replayed to its repetitions.

    Scoped to (token, method, path, key): two integrations, or two endpoints, never share
    keys. Written in the same transaction as the request's own writes (see
    `hitl.api.idempotency`), so there is never a record without its effects or effects
    without their record. Swept once expired.
    """

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    # SHA-256 of the request body: the same key with another body is a client error.
    request_digest = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.TextField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["token", "method", "path", "key"], name="idempotency_once_per_scope"
            )
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
