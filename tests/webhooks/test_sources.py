"""Sources and secrets: created and rotated by workflow admins, audited, encrypted at rest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from tests.factories import UserFactory
from tests.helpers import database_state
from tests.webhooks.conftest import Sender, error_of, present
from workflows.errors import InvalidInput, NotAllowed
from workflows.models import AuditEvent, WebhookSecret, WebhookSource, Workflow
from workflows.services import webhook_sources

pytestmark = pytest.mark.django_db

TICKET = {"subject": "Refund please"}


def test_a_new_source_gives_its_secret_once_and_stores_it_encrypted(
    issued: webhook_sources.IssuedSecret,
) -> None:
    assert issued.secret.startswith("whsec_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM workflows_webhooksecret")
        (stored,) = cursor.fetchone()
    assert issued.secret not in stored and "whsec_" not in stored
    assert WebhookSecret.objects.get().secret == issued.secret  # Fernet, under HITL_SECRETS_KEYS
    event = AuditEvent.objects.get(verb="webhook_source.created")
    assert (event.object_type, event.actor_label) == ("webhook_source", "owner")
    assert event.payload == {
        "source": "crm",
        "workflow": "intake",
        "fingerprint": issued.record.fingerprint,
    }


def test_secrets_never_reach_the_audit_trail(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any
) -> None:
    added = webhook_sources.webhook_secret_add(source=source, user=owner)
    rotated = webhook_sources.webhook_secret_rotate(source=source, user=owner)
    webhook_sources.webhook_secret_revoke(secret=added.record, user=owner)
    trail = str(list(AuditEvent.objects.values_list("payload", flat=True)))
    for secret in (issued.secret, added.secret, rotated.secret):
        assert secret not in trail and secret.removeprefix("whsec_") not in trail
    verbs = AuditEvent.objects.filter(object_type="webhook_source").values_list("verb", flat=True)
    assert list(verbs) == [
        "webhook_source.created",
        "webhook_secret.added",
        "webhook_secret.rotated",
        "webhook_secret.revoked",
    ]


def test_during_a_rotation_old_and_new_secrets_verify_until_the_old_is_revoked(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any
) -> None:
    old = Sender(issued.secret)
    new = webhook_sources.webhook_secret_rotate(source=source, user=owner)
    assert old.post({"subject": "old"}).status_code == 202
    assert Sender(new.secret).post({"subject": "new"}).status_code == 202
    webhook_sources.webhook_secret_revoke(secret=issued.record, user=owner)
    before = database_state()
    refused = old.post({"subject": "old again"})
    assert (refused.status_code, error_of(refused)["code"]) == (401, "invalid_signature")
    assert database_state() == before
    assert Sender(new.secret).post({"subject": "new again"}).status_code == 202


def test_a_rotated_out_secret_stops_verifying_when_its_overlap_ends(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any
) -> None:
    # Rotated two hours ago with one hour of overlap: the old secret expired an hour ago.
    new = webhook_sources.webhook_secret_rotate(
        source=source, user=owner, overlap=timedelta(hours=1), now=present() - timedelta(hours=2)
    )
    issued.record.refresh_from_db()
    assert not issued.record.is_live(present()) and new.record.is_live(present())
    assert Sender(issued.secret).post(TICKET).status_code == 401
    assert Sender(new.secret).post(TICKET).status_code == 202


def test_a_sender_may_sign_with_both_secrets_at_once(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any
) -> None:
    from tests.webhooks.conftest import encode, sign

    new = webhook_sources.webhook_secret_rotate(source=source, user=owner, overlap=timedelta(0))
    body = encode(TICKET)
    at = present()
    stale = sign(issued.secret, body, msg_id="msg_both", at=at)["webhook-signature"]
    fresh = sign(new.secret, body, msg_id="msg_both", at=at)["webhook-signature"]
    response = Sender(new.secret).post(
        TICKET, msg_id="msg_both", at=at, headers={"webhook-signature": f"{stale} {fresh}"}
    )
    assert response.status_code == 202


def test_a_secret_no_key_decrypts_is_skipped_and_the_others_still_verify(
    issued: webhook_sources.IssuedSecret, source: WebhookSource, owner: Any, settings: Any
) -> None:
    from cryptography.fernet import Fernet

    settings.HITL_SECRETS_KEYS = [Fernet.generate_key().decode(), *settings.HITL_SECRETS_KEYS]
    new = webhook_sources.webhook_secret_add(source=source, user=owner)
    settings.HITL_SECRETS_KEYS = settings.HITL_SECRETS_KEYS[1:]  # that key dropped too soon
    assert Sender(new.secret).post(TICKET).status_code == 401
    assert Sender(issued.secret).post(TICKET).status_code == 202


@pytest.mark.parametrize("who", ["outsider", "reviewer", "admin of another workflow"])
def test_only_the_workflows_admins_manage_its_sources(
    who: str, source: WebhookSource, make_workflow: Any, reviewer: Any, outsider: Any
) -> None:
    user = {"outsider": outsider, "reviewer": reviewer}.get(who)
    if user is None:
        user = UserFactory(username="other-admin")
        other = make_workflow(
            {
                "slug": "other",
                "name": "Other",
                "steps": [{"id": "t", "kind": "transform", "config": {"output": {"x": "1"}}}],
            }
        )
        other.admins.add(user)
    secret = source.secrets.get()
    before = database_state()
    calls = [
        lambda: webhook_sources.webhook_source_create(
            workflow=source.workflow, slug="mine", user=user
        ),
        lambda: webhook_sources.webhook_secret_add(source=source, user=user),
        lambda: webhook_sources.webhook_secret_rotate(source=source, user=user),
        lambda: webhook_sources.webhook_secret_revoke(secret=secret, user=user),
        lambda: webhook_sources.webhook_source_update(source=source, user=user, active=False),
    ]
    for call in calls:
        with pytest.raises(NotAllowed):
            call()
    assert database_state() == before


def test_a_superuser_may_manage_any_source(source: WebhookSource) -> None:
    boss = UserFactory(username="boss", is_superuser=True)
    assert webhook_sources.webhook_secret_add(source=source, user=boss).secret


def test_source_names_are_unique_and_slugs(intake: Workflow, owner: Any, source: Any) -> None:
    with pytest.raises(InvalidInput, match="exists already"):
        webhook_sources.webhook_source_create(workflow=intake, slug="crm", user=owner)
    with pytest.raises(InvalidInput, match="slug"):
        webhook_sources.webhook_source_create(workflow=intake, slug="a/b", user=owner)
    with pytest.raises(InvalidInput, match="at least one"):
        webhook_sources.webhook_source_update(source=source, user=owner, rate_limit_per_minute=0)
    with pytest.raises(InvalidInput, match="at least one"):
        webhook_sources.webhook_source_create(
            workflow=intake, slug="zero", user=owner, rate_limit_per_minute=0
        )


def test_a_new_sources_rate_limit_defaults_to_the_setting(
    intake: Workflow, owner: Any, settings: Any
) -> None:
    settings.HITL_WEBHOOK_RATE_LIMIT = 42
    issued = webhook_sources.webhook_source_create(workflow=intake, slug="erp", user=owner)
    assert issued.record.source.rate_limit_per_minute == 42


def test_revoking_twice_is_refused(issued: webhook_sources.IssuedSecret, owner: Any) -> None:
    webhook_sources.webhook_secret_revoke(secret=issued.record, user=owner)
    with pytest.raises(InvalidInput, match="already revoked"):
        webhook_sources.webhook_secret_revoke(secret=issued.record, user=owner)
