"""`make run` issues a fresh demo API token and webhook secret at each start."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from standardwebhooks import Webhook

from workflows.models import InboundMessage, Run

pytestmark = pytest.mark.django_db


def exports(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0]
    return values


@pytest.fixture
def demo(settings: Any) -> None:
    settings.HITL_DEMO = True
    settings.DEBUG = True
    settings.HITL_BASE_URL = "http://127.0.0.1:8000"
    call_command("seed_demo", stdout=StringIO())


def test_it_refuses_outside_demo_mode(settings: Any, tmp_path: Path) -> None:
    settings.HITL_DEMO = False
    with pytest.raises(CommandError, match="HITL_DEMO=1 and DEBUG=1"):
        call_command("demo_credentials", str(tmp_path / "c.env"), stdout=StringIO())


def test_each_start_revokes_the_previous_pair_and_the_new_one_works(
    demo: None, tmp_path: Path
) -> None:
    path = tmp_path / "demo-credentials.env"
    call_command("demo_credentials", str(path), stdout=StringIO())
    first = exports(path)
    call_command("demo_credentials", str(path), stdout=StringIO())
    second = exports(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert second["HITL_TOKEN"] != first["HITL_TOKEN"]
    assert second["WEBHOOK_URL"] == "http://127.0.0.1:8000/api/v1/webhooks/tickets/"

    def api(token: str) -> int:
        client = Client(headers={"Authorization": f"Bearer {token}"})
        return client.get("/api/v1/workflows").status_code

    assert (api(first["HITL_TOKEN"]), api(second["HITL_TOKEN"])) == (401, 200)

    def post(secret: str, msg_id: str) -> int:
        body = json.dumps({"subject": "Charged twice", "body": "Order 1042."}).encode()
        now = datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        }
        path = "/api/v1/webhooks/tickets/"
        return (
            Client().post(path, body, content_type="application/json", headers=headers).status_code
        )

    assert post(first["WEBHOOK_SECRET"], "msg_old") == 401
    assert post(second["WEBHOOK_SECRET"], "msg_new") == 202
    message = InboundMessage.objects.get()
    assert Run.objects.get(pk=message.run_id).source == "webhook"
