"""Changes made in the Django admin that decide who may do what are audit events: a
workflow's admins, reviewer and escalation groups (and the workflow itself), and a user's
groups and staff, superuser and active flags."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from workflows.models import AuditEvent, Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(db: None) -> User:
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def staff(boss: User) -> Client:
    client = Client()
    client.force_login(boss)
    return client


def workflow_form(workflow: Workflow, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "slug": workflow.slug,
        "name": workflow.name,
        "description": workflow.description,
        "daily_cost_cap_usd": "",
        "admins": [u.pk for u in workflow.admins.all()],
        "reviewer_group": workflow.reviewer_group_id or "",
        "escalation_group": workflow.escalation_group_id or "",
    }
    form.update(changes)
    return form


def test_changing_a_workflows_roles_in_the_admin_is_audited(
    staff: Client, boss: User, transform_workflow: Workflow, owner: User, reviewers: Group
) -> None:
    escalators = Group.objects.create(name="escalators")
    url = reverse("admin:workflows_workflow_change", args=[transform_workflow.pk])
    response = staff.post(
        url,
        workflow_form(
            transform_workflow,
            admins=[owner.pk, boss.pk],
            reviewer_group=reviewers.pk,
            escalation_group=escalators.pk,
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    [event] = AuditEvent.objects.filter(verb="workflow.roles_changed")
    assert (event.actor_id, event.object_id) == (str(boss.pk), str(transform_workflow.pk))
    assert event.payload["before"] == {
        "admins": [],
        "reviewer_group": None,
        "escalation_group": None,
    }
    assert event.payload["after"] == {
        "admins": ["boss", "owner"],
        "reviewer_group": reviewers.name,
        "escalation_group": "escalators",
    }

    # Saving again with nothing changed records nothing.
    transform_workflow.refresh_from_db()
    staff.post(url, workflow_form(transform_workflow))
    assert AuditEvent.objects.filter(verb="workflow.roles_changed").count() == 1


def test_a_workflow_added_in_the_admin_is_audited_with_its_roles(
    staff: Client, boss: User, reviewers: Group
) -> None:
    response = staff.post(
        reverse("admin:workflows_workflow_add"),
        {
            "slug": "fresh",
            "name": "Fresh",
            "description": "",
            "daily_cost_cap_usd": "",
            "admins": [boss.pk],
            "reviewer_group": reviewers.pk,
            "escalation_group": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow = Workflow.objects.get(slug="fresh")
    [event] = AuditEvent.objects.filter(verb="workflow.created", object_id=str(workflow.pk))
    assert event.actor_id == str(boss.pk)
    assert event.payload["roles"] == {
        "admins": ["boss"],
        "reviewer_group": reviewers.name,
        "escalation_group": None,
    }


def test_a_users_groups_and_flags_changed_in_the_admin_are_audited(
    staff: Client, boss: User, reviewer: User, reviewers: Group
) -> None:
    escalators = Group.objects.create(name="escalators")
    url = reverse("admin:auth_user_change", args=[reviewer.pk])
    form = {
        "username": reviewer.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "is_staff": "on",
        "groups": [escalators.pk],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    response = staff.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    [event] = AuditEvent.objects.filter(verb="user.access_changed")
    assert (event.actor_id, event.object_type, event.object_id) == (
        str(boss.pk),
        "user",
        str(reviewer.pk),
    )
    assert event.payload == {
        "username": reviewer.username,
        "groups_added": ["escalators"],
        "groups_removed": [reviewers.name],
        "is_staff": [False, True],
    }
    staff.post(url, form)
    assert AuditEvent.objects.filter(verb="user.access_changed").count() == 1


def test_a_superuser_starts_a_verification_from_the_admin(
    staff: Client, reviewer: User, settings: Any
) -> None:
    import redis

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    url = reverse("admin:workflows_auditverification_verify")
    before = broker.llen("default")
    changelist = staff.get(reverse("admin:workflows_auditverification_changelist"))
    assert url in changelist.content.decode()  # the button
    response = staff.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:workflows_auditverification_changelist")
    assert "Verification started" in response.content.decode()
    queued = broker.lrange("default", 0, -1)
    assert broker.llen("default") == before + 1
    assert b"hitl.audit_verify" in queued[0]
    broker.lpop("default")  # leave nothing for a worker of another test

    assert staff.get(url).status_code == 405
    reviewer.is_staff = True
    reviewer.save()
    other = Client()
    other.force_login(reviewer)
    assert other.post(url).status_code == 403
