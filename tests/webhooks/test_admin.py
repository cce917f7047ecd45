"""The admin: sources with their secrets; a new secret is shown once, lists never show one."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tests.factories import UserFactory
from tests.webhooks.conftest import Sender
from workflows.models import AuditEvent, WebhookSecret, WebhookSource, Workflow
from workflows.services import webhook_sources

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def shown_secret(response: Any) -> str:
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    secrets = [t.rsplit(": ", 1)[1] for t in texts if "not shown again" in t]
    assert len(secrets) == 1, texts
    return secrets[0]


def test_adding_a_source_shows_its_secret_once(staff: Client, intake: Workflow) -> None:
    response = staff.post(
        reverse("admin:workflows_webhooksource_add"),
        {"workflow": intake.pk, "slug": "crm", "description": "", "rate_limit_per_minute": 60},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    secret = shown_secret(response)
    source = WebhookSource.objects.get()
    assert (source.slug, source.rate_limit_per_minute) == ("crm", 60)
    assert AuditEvent.objects.filter(verb="webhook_source.created", actor_label="boss").exists()
    assert Sender(secret).post({"subject": "hello"}).status_code == 202
    # The page the admin lands on shows it (the message), and no page shows it again.
    assert secret in staff.get(response["Location"]).content.decode()
    pages = [
        reverse("admin:workflows_webhooksource_changelist"),
        reverse("admin:workflows_webhooksource_change", args=[source.pk]),
        reverse("admin:workflows_webhooksecret_changelist"),
        reverse("admin:workflows_webhooksecret_change", args=[source.secrets.get().pk]),
        reverse("admin:workflows_inboundmessage_changelist"),
    ]
    for page in pages:
        html = staff.get(page).content.decode()
        assert "crm" in html and secret not in html and secret.removeprefix("whsec_") not in html


def test_the_rotate_action_shows_the_new_secret_and_keeps_the_old_one_for_a_while(
    staff: Client, issued: webhook_sources.IssuedSecret, source: WebhookSource
) -> None:
    response = staff.post(
        reverse("admin:workflows_webhooksource_changelist"),
        {"action": "rotate_secret", "_selected_action": [source.pk]},
    )
    new = shown_secret(response)
    assert new != issued.secret
    assert Sender(new).post({"subject": "new"}).status_code == 202
    assert Sender(issued.secret).post({"subject": "old"}).status_code == 202
    assert WebhookSecret.objects.filter(expires_at__isnull=False).count() == 1


def test_the_revoke_and_disable_actions(
    staff: Client, issued: webhook_sources.IssuedSecret, source: WebhookSource
) -> None:
    staff.post(
        reverse("admin:workflows_webhooksecret_changelist"),
        {"action": "revoke", "_selected_action": [issued.record.pk]},
    )
    assert Sender(issued.secret).post({"subject": "x"}).status_code == 401
    staff.post(
        reverse("admin:workflows_webhooksource_changelist"),
        {"action": "disable", "_selected_action": [source.pk]},
    )
    source.refresh_from_db()
    assert not source.active
    assert AuditEvent.objects.filter(verb="webhook_source.disabled").count() == 1


def test_editing_a_source_goes_through_the_service(staff: Client, source: WebhookSource) -> None:
    response = staff.post(
        reverse("admin:workflows_webhooksource_change", args=[source.pk]),
        {
            "description": "the CRM",
            "active": "on",
            "rate_limit_per_minute": 30,
            "secrets-TOTAL_FORMS": 1,
            "secrets-INITIAL_FORMS": 1,
            "secrets-0-id": source.secrets.get().pk,
            "secrets-0-source": source.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    source.refresh_from_db()
    assert (source.rate_limit_per_minute, source.description) == (30, "the CRM")
    event = AuditEvent.objects.get(verb="webhook_source.updated")
    assert event.payload["changes"] == {"rate_limit_per_minute": 30, "description": "the CRM"}


def test_staff_see_only_the_sources_of_workflows_they_administer(
    source: WebhookSource, make_workflow: Any
) -> None:
    other = make_workflow(
        {
            "slug": "other",
            "name": "Other",
            "steps": [{"id": "t", "kind": "transform", "config": {"output": {"x": "1"}}}],
        }
    )
    webhook_sources.webhook_source_create(workflow=other, slug="theirs", user=None)
    clerk = UserFactory(username="clerk", is_staff=True)
    from django.contrib.auth.models import Permission

    clerk.user_permissions.add(*Permission.objects.filter(codename__endswith="webhooksource"))
    source.workflow.admins.add(clerk)
    client = Client()
    client.force_login(clerk)
    html = client.get(reverse("admin:workflows_webhooksource_changelist")).content.decode()
    assert "crm" in html and "theirs" not in html
