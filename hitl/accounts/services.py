"""Creating, revoking and authenticating API tokens. Creating and revoking are audited.

A token is `hitl_` followed by 256 random bits: hashing it with plain SHA-256 is enough to
keep a database dump from yielding usable tokens (there is nothing to brute-force), and it
lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from hitl.accounts.models import PUBLIC_PREFIX_LENGTH, SCOPES, TOKEN_PREFIX, ApiToken
from workflows.access import workflows_visible_q
from workflows.errors import Conflict, InvalidInput, NotAllowed, ServiceError
from workflows.models import AuditEvent, Workflow
from workflows.services import Actor, audit_record

MAX_NAME = 100
# `last_used_at` is a hint for people cleaning up tokens, not an access log: it is written
# at most once per this interval, so a busy integration does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Anything longer is not a token this code made; refused before it is hashed.
_MAX_TOKEN_LENGTH = 200


class TokenRefused(ServiceError):
    """The bearer token is unknown, revoked or expired, or its user may no longer log in."""

    status_code = 401


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def workflows_for_tokens(*, user: Any) -> QuerySet[Workflow]:
    """The workflows a token of `user` may be limited to: those the user has a role in."""
    return Workflow.objects.filter(workflows_visible_q(user)).order_by("name")


def api_tokens_of(*, user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user_id=user.pk).prefetch_related("workflows")


def api_token_create(
    *,
    user: Any,
    name: str,
    scopes: Iterable[str],
    workflows: Iterable[Workflow] | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `user` and return it with its secret, which is never shown again.

    With `workflows`, the token is limited to them; without (None), it reaches every
    workflow its user has a role in, now or later.
    """
    now = now or timezone.now()
    name = name.strip()
    if not name or "\x00" in name or len(name) > MAX_NAME:
        raise InvalidInput(f"a token needs a name of 1 to {MAX_NAME} characters")
    chosen = sorted(set(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown or not chosen:
        raise InvalidInput(f"choose one or more scopes among {', '.join(SCOPES)}")
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("the expiry must be in the future")
    limited = workflows is not None
    listed = list(workflows or [])
    if limited and not listed:
        raise InvalidInput("a token limited to no workflow could do nothing: list one or more")
    allowed = set(workflows_for_tokens(user=user).values_list("pk", flat=True))
    outside = [wf.slug for wf in listed if wf.pk not in allowed]
    if outside:
        # It would grant nothing there, but a token that looks broader than it is misleads.
        raise InvalidInput(f"you have no role in {', '.join(sorted(outside))}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=raw[:PUBLIC_PREFIX_LENGTH],
            digest=token_digest(raw),
            scopes=chosen,
            limited=limited,
            created_at=now,
            expires_at=expires_at,
        )
        token.workflows.set(listed)
        audit_record(
            actor=Actor.for_user(user),
            verb="api_token.created",
            object_type="api_token",
            object_id=token.pk,
            payload={
                "name": name,
                "prefix": token.prefix,
                "scopes": chosen,
                "workflows": sorted(wf.slug for wf in listed) if limited else None,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return token, raw


def api_token_revoke(*, token: ApiToken, user: Any, now: datetime | None = None) -> ApiToken:
    """Revoke one's own token; it stops working at once."""
    now = now or timezone.now()
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.user_id != user.pk:
            raise NotAllowed("you may only revoke your own tokens")
        if token.revoked_at is not None:
            raise Conflict(f"token {token.prefix}… was already revoked")
        token.revoked_at = now
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=Actor.for_user(user),
            verb="api_token.revoked",
            object_type="api_token",
            object_id=token.pk,
            payload={"prefix": token.prefix},
        )
    return token


def api_token_authenticate(*, raw: str, now: datetime | None = None) -> ApiToken:
    """The usable token `raw` is, with its user; raise TokenRefused otherwise."""
    now = now or timezone.now()
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > _MAX_TOKEN_LENGTH:
        raise TokenRefused("missing or unknown bearer token")
    token = ApiToken.objects.select_related("user").filter(digest=token_digest(raw)).first()
    if token is None:
        raise TokenRefused("missing or unknown bearer token")
    if token.revoked_at is not None:
        raise TokenRefused(f"token {token.prefix}… was revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused(
            f"token {token.prefix}… expired at {token.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    if not token.user.is_active:
        raise TokenRefused(f"the user of token {token.prefix}… is inactive")
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    return token


def token_workflow_ids(token: ApiToken) -> frozenset[int] | None:
    """The workflows a token is limited to, or None for every workflow of its user."""
    if not token.limited:
        return None
    return frozenset(token.workflows.values_list("pk", flat=True))


def token_actor(token: ApiToken) -> Actor:
    """The token's user, labelled with the token, for the audit trail."""
    suffix = f" (token {token.prefix}…)"
    return Actor(
        AuditEvent.ActorType.USER,
        str(token.user.pk),
        token.user.get_username()[: 150 - len(suffix)] + suffix,
    )
