from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.helpers import drive
from workflows import services
from workflows.models import AuditEvent, Run, StepRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_runs_and_steps_show_status_attempts_output_and_errors(
    staff: Client, transform_workflow: Any, system: Any
) -> None:
    run = drive(services.run_start(workflow=transform_workflow, input={"amount": 70}, actor=system))
    page = staff.get(reverse("admin:workflows_run_change", args=[run.pk])).content.decode()
    assert "Completed" in page and "double" in page and "140" in page
    assert staff.get(reverse("admin:workflows_steprun_changelist")).status_code == 200
    assert staff.get(reverse("admin:workflows_auditevent_changelist")).status_code == 200
    assert staff.get(reverse("admin:workflows_auditverification_changelist")).status_code == 200


def test_the_retry_action_reopens_failed_runs(
    staff: Client, make_workflow: Any, system: Any
) -> None:
    workflow = make_workflow(
        {
            "slug": "broken",
            "name": "Broken",
            "steps": [{"id": "t", "kind": "transform", "config": {"output": {"x": "input.no"}}}],
        }
    )
    run = drive(services.run_start(workflow=workflow, input={}, actor=system))
    assert run.status == Run.Status.FAILED
    response = staff.post(
        reverse("admin:workflows_run_changelist"),
        {"action": "retry_failed", "_selected_action": [run.pk]},
    )
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    assert StepRun.objects.get(run=run).status == StepRun.Status.READY


def test_changing_the_cost_cap_goes_through_the_service(
    staff: Client, transform_workflow: Any
) -> None:
    url = reverse("admin:workflows_workflow_change", args=[transform_workflow.pk])
    form = {
        "slug": transform_workflow.slug,
        "name": transform_workflow.name,
        "description": "",
        "daily_cost_cap_usd": "12.50",
    }
    response = staff.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    transform_workflow.refresh_from_db()
    assert transform_workflow.daily_cost_cap_usd == Decimal("12.50")
    assert AuditEvent.objects.filter(verb="workflow.cost_cap_changed").count() == 1
