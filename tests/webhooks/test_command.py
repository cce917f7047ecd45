"""`manage.py webhook_secret`: a sender's URL and secret, for `make run` and operators."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from tests.webhooks.conftest import Sender
from workflows.models import AuditEvent, Run, Workflow

pytestmark = pytest.mark.django_db

TICKET = {"subject": "Refund please"}


def test_the_command_creates_a_source_then_rotates_its_secret(
    intake: Workflow, capsys: Any, settings: Any
) -> None:
    settings.HITL_BASE_URL = "http://127.0.0.1:8000"
    call_command("webhook_secret", "--source", "demo", "--workflow", "intake")
    first = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert first["url"].strip() == "http://127.0.0.1:8000/api/v1/webhooks/demo/"
    with pytest.raises(CommandError, match="pass --rotate"):
        call_command("webhook_secret", "--source", "demo")
    call_command("webhook_secret", "--source", "demo", "--rotate")
    second = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert second["secret"] != first["secret"]
    for secret in (first["secret"], second["secret"]):  # the old one verifies during the overlap
        assert Sender(secret.strip(), slug="demo").post(TICKET).status_code == 202
    assert Run.objects.count() == 2
    assert AuditEvent.objects.filter(verb="webhook_secret.rotated", actor_label="cli").exists()


def test_the_command_needs_a_workflow_to_create_a_source(db: None) -> None:
    with pytest.raises(CommandError, match="pass --workflow"):
        call_command("webhook_secret", "--source", "demo")
    with pytest.raises(CommandError, match="no workflow 'nope'"):
        call_command("webhook_secret", "--source", "demo", "--workflow", "nope")
