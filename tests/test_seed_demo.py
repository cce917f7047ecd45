from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from hitl.demo.management.commands.seed_demo import DEMO_DIR
from workflows import services
from workflows.models import LocalModel, ReviewTask, Run, Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


def logs_in(username: str, password: str) -> bool:
    """Whether the login page would let this user in: authentication always has a request
    (login throttling counts by its address)."""
    request = RequestFactory().post("/accounts/login/")
    return authenticate(request, username=username, password=password) is not None


def test_it_refuses_without_demo_mode(settings: Any) -> None:
    settings.HITL_DEMO = False
    settings.DEBUG = True
    with pytest.raises(CommandError, match="HITL_DEMO=1 and DEBUG=1"):
        call_command("seed_demo", stdout=StringIO())


def test_it_refuses_with_debug_off(settings: Any) -> None:
    settings.HITL_DEMO = True
    settings.DEBUG = False
    with pytest.raises(CommandError):
        call_command("seed_demo", stdout=StringIO())


def test_it_seeds_users_workflows_and_completed_runs_once(settings: Any) -> None:
    settings.HITL_DEMO = True
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())
    assert logs_in(username="demo-admin", password="demo")
    assert logs_in(username="demo-reviewer", password="demo")
    workflow = Workflow.objects.get(slug="expense-intake")
    assert workflow.active_version is not None
    runs = Run.objects.filter(workflow=workflow)
    assert runs.count() == 4
    assert set(runs.values_list("status", flat=True)) == {Run.Status.COMPLETED}
    call_command("seed_demo", stdout=StringIO())
    assert Run.objects.filter(workflow=workflow).count() == 4


def seed(settings: Any) -> None:
    settings.HITL_DEMO = True
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())


def counts() -> dict[str, int]:
    return {
        "versions": WorkflowVersion.objects.count(),
        "runs": Run.objects.count(),
        "tasks": ReviewTask.objects.count(),
        "models": LocalModel.objects.count(),
        "users": User.objects.count(),
    }


def test_first_seed_leaves_tasks_waiting_for_demo_reviewer(settings: Any) -> None:
    seed(settings)
    triage = Workflow.objects.get(slug="ticket-triage")
    reviewer = User.objects.get(username="demo-reviewer")
    assert triage.reviewer_group is not None
    assert reviewer.groups.filter(pk=triage.reviewer_group.pk).exists()
    assert triage.admins.filter(username="demo-admin").exists()
    assert ReviewTask.objects.filter(workflow=triage).exists()


def test_reseed_leaves_a_workflow_the_user_changed_as_they_left_it(settings: Any) -> None:
    seed(settings)
    triage = Workflow.objects.get(slug="ticket-triage")
    demo_version = triage.active_version
    assert demo_version is not None
    # The user publishes a stricter gate, and takes the workflow's admin and group away.
    changed = (
        (DEMO_DIR / "ticket-triage.yaml").read_text().replace("threshold: 0.9", "threshold: 0.8")
    )
    assert changed != demo_version.source
    result = services.workflow_import(source=changed, actor=services.Actor.system("test"))
    assert result.activated
    triage.admins.clear()
    own_group = Group.objects.create(name="triage-team")
    triage.reviewer_group = own_group
    triage.save(update_fields=["reviewer_group"])
    before = counts()

    seed(settings)

    triage.refresh_from_db()
    assert triage.active_version_id == result.version.pk
    assert triage.reviewer_group_id == own_group.pk
    assert not triage.admins.exists()
    assert counts() == before


def test_reseed_leaves_demo_users_as_the_user_left_them(settings: Any) -> None:
    seed(settings)
    reviewer = User.objects.get(username="demo-reviewer")
    reviewer.set_password("changed-by-the-user")
    reviewer.save()
    reviewer.groups.clear()
    admin = User.objects.get(username="demo-admin")
    admin.is_superuser = False
    admin.save()

    seed(settings)

    assert logs_in(username="demo-reviewer", password="changed-by-the-user")
    assert not logs_in(username="demo-reviewer", password="demo")
    assert not User.objects.get(username="demo-reviewer").groups.exists()
    assert not User.objects.get(username="demo-admin").is_superuser


def test_reseed_creates_nothing_new(settings: Any) -> None:
    seed(settings)
    before = counts()
    seed(settings)
    assert counts() == before
