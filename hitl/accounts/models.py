"""API tokens: how a business system (or a person's script) acts as a user through the API.

A token carries scopes and, optionally, a set of workflows; both only narrow what its user's
roles allow, and the roles are read when the token is used, never copied into it.
Writes go through `hitl.accounts.services`.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from workflows.models import Workflow

# Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "hitl_"  # noqa: S105 (a public prefix, not a secret)
# How much of a token is kept in clear, to tell tokens apart in lists and audit labels.
PUBLIC_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8

# What a token may be used for, in the order the tokens page lists them.
SCOPES: dict[str, str] = {
    "workflows:read": "Read workflows and their versions",
    "runs:start": "Start runs, cancel them and resume their wait steps",
    "runs:read": "Read runs, their steps and outputs",
    "tasks:read": "Read review tasks",
    "tasks:decide": "Claim, release and decide review tasks",
}


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The first characters of the token ("hitl_AbCd1234"): enough to recognise it, useless
    # to authenticate with.
    prefix = models.CharField(max_length=PUBLIC_PREFIX_LENGTH)
    # SHA-256 of the whole token: the token itself is shown once and never stored.
    digest = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=32))
    # Whether the token is limited to `workflows`. A flag rather than "an empty set means
    # every workflow": deleting the last listed workflow must leave the token with none.
    limited = models.BooleanField(default=False)
    workflows = models.ManyToManyField(Workflow, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now` (its user's roles are checked separately)."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
