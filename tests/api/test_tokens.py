"""API tokens: created hashed and shown once, scoped, revocable, expiring, audited."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from hitl.accounts.models import ApiToken
from hitl.accounts.services import (
    LAST_USED_RESOLUTION,
    TokenRefused,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    token_actor,
    token_workflow_ids,
)
from workflows.errors import Conflict, InvalidInput, NotAllowed
from workflows.models import AuditEvent, Workflow

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_as_its_hash_with_a_public_prefix(owner: User) -> None:
    token, secret = api_token_create(user=owner, name="billing", scopes=["runs:read"])
    assert secret.startswith("hitl_") and len(secret) > 40
    assert token.prefix == secret[:13]
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    # The secret is nowhere in the row.
    assert secret not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    # Another token never collides.
    _, other = api_token_create(user=owner, name="billing", scopes=["runs:read"])
    assert other != secret


def test_creating_and_revoking_are_audited_as_the_user(owner: User) -> None:
    token, secret = api_token_create(user=owner, name="ci", scopes=["runs:read", "runs:start"])
    created = AuditEvent.objects.get(verb="api_token.created")
    assert (created.actor_type, created.actor_id) == ("user", str(owner.pk))
    assert created.object_type == "api_token" and created.object_id == str(token.pk)
    assert created.payload["scopes"] == ["runs:read", "runs:start"]
    assert created.payload["workflows"] is None
    assert secret not in str(created.payload)
    api_token_revoke(token=token, user=owner)
    revoked = AuditEvent.objects.get(verb="api_token.revoked")
    assert revoked.object_id == str(token.pk) and revoked.actor_id == str(owner.pk)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": " "}, "a token needs a name"),
        ({"name": "x" * 101}, "a token needs a name"),
        ({"scopes": []}, "choose one or more scopes"),
        ({"scopes": ["runs:read", "admin"]}, "choose one or more scopes"),
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "in the future"),
        ({"workflows": []}, "limited to no workflow"),
    ],
)
def test_bad_tokens_are_refused(owner: User, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        api_token_create(user=owner, **{"name": "t", "scopes": ["runs:read"], **fields})
    assert not ApiToken.objects.exists() and not AuditEvent.objects.exists()


def test_a_token_is_limited_only_to_workflows_its_user_has_a_role_in(
    owner: User, outsider: User, make_workflow: Callable[..., Workflow]
) -> None:
    mine = make_workflow({"slug": "mine", "name": "Mine", "steps": [{"id": "w", "kind": "wait"}]})
    mine.admins.add(owner)
    theirs = make_workflow({"slug": "theirs", "name": "T", "steps": [{"id": "w", "kind": "wait"}]})
    token, _ = api_token_create(user=owner, name="t", scopes=["runs:read"], workflows=[mine])
    assert token.limited and token_workflow_ids(token) == {mine.pk}
    with pytest.raises(InvalidInput, match="you have no role in theirs"):
        api_token_create(user=owner, name="t", scopes=["runs:read"], workflows=[mine, theirs])
    unlimited, _ = api_token_create(user=owner, name="t", scopes=["runs:read"])
    assert token_workflow_ids(unlimited) is None
    # Deleting the one workflow it was limited to leaves it limited to none, not to all.
    Workflow.objects.filter(pk=mine.pk).update(active_version=None)
    Workflow.objects.get(pk=mine.pk).delete()
    assert token_workflow_ids(ApiToken.objects.get(pk=token.pk)) == frozenset()


def test_only_the_owner_revokes_and_only_once(owner: User, outsider: User) -> None:
    token, secret = api_token_create(user=owner, name="t", scopes=["runs:read"])
    with pytest.raises(NotAllowed):
        api_token_revoke(token=token, user=outsider)
    assert api_token_authenticate(raw=secret).pk == token.pk
    api_token_revoke(token=token, user=owner)
    with pytest.raises(Conflict):
        api_token_revoke(token=token, user=owner)
    with pytest.raises(TokenRefused, match="was revoked"):
        api_token_authenticate(raw=secret)


def test_unknown_expired_and_inactive_users_tokens_are_refused(owner: User) -> None:
    now = timezone.now()
    _, secret = api_token_create(
        user=owner, name="t", scopes=["runs:read"], expires_at=now + timedelta(hours=1)
    )
    assert api_token_authenticate(raw=secret, now=now).user == owner
    with pytest.raises(TokenRefused, match="expired"):
        api_token_authenticate(raw=secret, now=now + timedelta(hours=1))
    for raw in ("", "hitl_", "hitl_nope", secret + "x", "Bearer " + secret, "hitl_" + "a" * 500):
        with pytest.raises(TokenRefused, match="unknown"):
            api_token_authenticate(raw=raw, now=now)
    owner.is_active = False
    owner.save()
    with pytest.raises(TokenRefused, match="inactive"):
        api_token_authenticate(raw=secret, now=now)


def test_last_used_is_written_at_most_once_a_minute(owner: User) -> None:
    now = timezone.now()
    token, secret = api_token_create(user=owner, name="t", scopes=["runs:read"], now=now)
    assert token.last_used_at is None
    api_token_authenticate(raw=secret, now=now)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == now
    api_token_authenticate(raw=secret, now=now + LAST_USED_RESOLUTION / 2)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == now
    later = now + LAST_USED_RESOLUTION * 2
    api_token_authenticate(raw=secret, now=later)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == later


def test_the_audit_actor_names_the_token(owner: User) -> None:
    token, _ = api_token_create(user=owner, name="t", scopes=["runs:read"])
    actor = token_actor(token)
    assert (actor.type, actor.id) == ("user", str(owner.pk))
    assert actor.label == f"owner (token {token.prefix}…)"
    long = User.objects.create_user("u" * 150)
    token, _ = api_token_create(user=long, name="t", scopes=["runs:read"])
    assert len(token_actor(token).label) == 150
    assert token_actor(token).label.endswith(f"(token {token.prefix}…)")


def test_the_database_checksum_sees_tokens_but_not_their_last_use(owner: User) -> None:
    from tests.helpers import database_state

    token, secret = api_token_create(user=owner, name="t", scopes=["runs:read"])
    before = database_state()
    assert "accounts_apitoken" in before and "api_idempotencyrecord" in before
    api_token_authenticate(raw=secret)
    assert database_state() == before
    api_token_revoke(token=token, user=owner)
    assert database_state()["accounts_apitoken"] != before["accounts_apitoken"]
