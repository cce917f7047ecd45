from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from workflows.models import Run, Workflow

pytestmark = pytest.mark.django_db


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
    assert authenticate(username="demo-admin", password="demo") is not None
    assert authenticate(username="demo-reviewer", password="demo") is not None
    workflow = Workflow.objects.get(slug="expense-intake")
    assert workflow.active_version is not None
    runs = Run.objects.filter(workflow=workflow)
    assert runs.count() == 4
    assert set(runs.values_list("status", flat=True)) == {Run.Status.COMPLETED}
    call_command("seed_demo", stdout=StringIO())
    assert Run.objects.filter(workflow=workflow).count() == 4
