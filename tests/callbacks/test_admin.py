"""The admin for endpoints and their delivery log: a secret shown once, rotation, enable and
disable, redelivery, and nothing of another workflow's endpoints or of any secret in lists."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory
from workflows import services
from workflows.errors import NotAllowed
from workflows.models import AuditEvent, Delivery, Endpoint, Workflow

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/hitl"
CHAT = "https://chat.example.com/services/T0/B0/chat-credential"


@pytest.fixture
def boss(db: None) -> User:
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def staff(boss: User) -> Client:
    client = Client()
    client.force_login(boss)
    return client


def add(client: Client, workflow: Workflow, **form: Any) -> Any:
    data = {"workflow": workflow.pk, "kind": "webhook", "url": URL, "description": "", **form}
    return client.post(reverse("admin:workflows_endpoint_add"), data, follow=True)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_new_endpoint_s_secret_is_shown_once_on_its_page(
    staff: Client, transform_workflow: Workflow
) -> None:
    response = add(staff, transform_workflow, event_types=["run.completed", "task.decided"])

    endpoint = Endpoint.objects.get()
    assert response.redirect_chain[-1][0] == reverse(
        "admin:workflows_endpoint_change", args=[endpoint.pk]
    )
    assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
    assert any(endpoint.secret in m for m in messages_of(response))
    assert endpoint.event_types == ["run.completed", "task.decided"]
    assert endpoint.created_by is not None and endpoint.created_by.username == "boss"
    audit = AuditEvent.objects.get(verb="endpoint.created")
    assert endpoint.secret not in str(audit.payload)
    # Never again: not on its page, not in the list.
    page = staff.get(reverse("admin:workflows_endpoint_change", args=[endpoint.pk]))
    listing = staff.get(reverse("admin:workflows_endpoint_changelist"))
    for later in (page, listing):
        assert later.status_code == 200
        assert endpoint.secret not in later.content.decode()


def test_an_endpoint_with_a_refused_url_is_not_created(
    staff: Client, transform_workflow: Workflow, settings: Any
) -> None:
    settings.HITL_OUTBOUND_ALLOW = []
    for url in (
        "http://hooks.example.com/x",
        "https://10.0.0.1/x",
        "https://u:p@hooks.example.com/",
    ):
        response = add(staff, transform_workflow, url=url)
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["url"]
    assert not Endpoint.objects.exists()


def test_chat_urls_are_masked_in_the_list(staff: Client, transform_workflow: Workflow) -> None:
    add(staff, transform_workflow, kind="slack", url=CHAT)
    endpoint = Endpoint.objects.get()
    assert endpoint.secret is None
    assert endpoint.event_types == ["task.created", "task.escalated", "task.sla_breached"]
    listing = staff.get(reverse("admin:workflows_endpoint_changelist")).content.decode()
    assert "chat-credential" not in listing
    assert "https://chat.example.com/…" in listing


def test_rotate_disable_and_enable_through_actions(
    staff: Client, transform_workflow: Workflow, boss: User
) -> None:
    endpoint = services.endpoint_create(workflow=transform_workflow, user=boss, url=URL)
    changelist = reverse("admin:workflows_endpoint_changelist")

    def act(action: str) -> list[str]:
        data = {"action": action, "_selected_action": [endpoint.pk]}
        return messages_of(staff.post(changelist, data, follow=True))

    old = endpoint.secret
    shown = act("rotate_secret")
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert any(endpoint.secret in m for m in shown)
    page = staff.get(reverse("admin:workflows_endpoint_change", args=[endpoint.pk])).content
    assert "the previous one also signs until" in page.decode()

    act("disable")
    endpoint.refresh_from_db()
    assert not endpoint.active and endpoint.disabled_reason == "disabled by boss"
    assert any("1 skipped" in m for m in act("disable"))  # already disabled
    act("enable")
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.disabled_reason == ""
    assert [e.verb for e in AuditEvent.objects.filter(object_type="endpoint")] == [
        "endpoint.created",
        "endpoint.secret_rotated",
        "endpoint.disabled",
        "endpoint.enabled",
    ]


def test_the_delivery_log_redelivers(
    staff: Client, transform_workflow: Workflow, boss: User
) -> None:
    endpoint = services.endpoint_create(workflow=transform_workflow, user=boss, url=URL)
    now = timezone.now()
    [delivery] = services.deliveries_enqueue(
        workflow_id=transform_workflow.pk, run_id=None, event="run.completed", data={}, now=now
    )
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=11)
    page = staff.get(reverse("admin:workflows_endpoint_change", args=[endpoint.pk])).content
    assert "1 failed" in page.decode()
    log = reverse("admin:workflows_delivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
    assert delivery.webhook_id in staff.get(log).content.decode()

    staff.post(log, {"action": "redeliver", "_selected_action": [delivery.pk]})

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert AuditEvent.objects.filter(verb="delivery.redelivered").count() == 1


def test_staff_see_and_manage_only_the_workflows_they_administer(
    transform_workflow: Workflow, make_workflow: Any, boss: User
) -> None:
    theirs = make_workflow({"slug": "theirs", "name": "T", "steps": [{"id": "w", "kind": "wait"}]})
    mine_endpoint = services.endpoint_create(workflow=transform_workflow, user=boss, url=URL)
    services.endpoint_create(workflow=theirs, user=boss, url=URL + "/theirs")
    clerk = UserFactory(username="clerk", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__endswith="_endpoint"),
        *Permission.objects.filter(codename__endswith="_delivery"),
    )
    transform_workflow.admins.add(clerk)
    client = Client()
    client.force_login(clerk)

    listing = client.get(reverse("admin:workflows_endpoint_changelist"))
    assert [e.pk for e in listing.context["cl"].result_list] == [mine_endpoint.pk]
    log = client.get(reverse("admin:workflows_delivery_changelist")).content.decode()
    assert "/theirs" not in log and "theirs" not in listing.content.decode()
    refused = add(client, theirs)
    assert refused.context["adminform"].form.errors["workflow"]
    assert Endpoint.objects.count() == 2
    with pytest.raises(NotAllowed):
        services.endpoint_create(workflow=theirs, user=clerk, url=URL)
