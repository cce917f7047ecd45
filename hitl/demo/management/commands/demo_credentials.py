"""`manage.py demo_credentials FILE`: a fresh demo API token and webhook secret at each start.

`make run` runs it after `seed_demo`. The previous demo token is revoked and the webhook
source's previous secret stops verifying at once, so only the pair printed by the running
`make run` works. They are written to FILE (mode 0600) as shell `export` lines, so that the
examples in docs/integrations.md can `source` them, and printed. Refused unless HITL_DEMO=1
and DEBUG=1, like the seed: these are credentials to a demo, never to production.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hitl.accounts.models import SCOPES, ApiToken
from hitl.accounts.services import api_token_create, api_token_revoke
from workflows.models import WebhookSource, Workflow
from workflows.services import webhook_sources

TOKEN_NAME = "demo (make run)"  # noqa: S105 (a name, not a secret)
SOURCE = "tickets"
WORKFLOW = "ticket-triage"


class Command(BaseCommand):
    help = "Issue a fresh demo API token and webhook secret (needs HITL_DEMO=1 and DEBUG=1)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="where to write the export lines (mode 0600)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (settings.HITL_DEMO and settings.DEBUG):
            raise CommandError("demo_credentials only runs with HITL_DEMO=1 and DEBUG=1.")
        admin = User.objects.filter(username="demo-admin").first()
        workflow = Workflow.objects.filter(slug=WORKFLOW).first()
        if admin is None or workflow is None:
            raise CommandError("run `manage.py seed_demo` first: no demo-admin or ticket-triage")
        with transaction.atomic():
            for old in ApiToken.objects.filter(user=admin, name=TOKEN_NAME, revoked_at=None):
                api_token_revoke(token=old, user=admin)
            _, token = api_token_create(user=admin, name=TOKEN_NAME, scopes=SCOPES)
            source = WebhookSource.objects.filter(slug=SOURCE).first()
            if source is None:
                issued = webhook_sources.webhook_source_create(
                    workflow=workflow, slug=SOURCE, user=None
                )
            else:
                issued = webhook_sources.webhook_secret_rotate(
                    source=source, user=None, overlap=timedelta(0)
                )
        base = settings.HITL_BASE_URL.rstrip("/")
        values = {
            "HITL": base,
            "HITL_TOKEN": token,
            "WEBHOOK_URL": f"{base}/api/v1/webhooks/{SOURCE}/",
            "WEBHOOK_SECRET": issued.secret,
        }
        path = Path(options["file"])
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
        self.stdout.write(f"demo API token (all scopes, demo-admin): {token}")
        self.stdout.write(f"demo webhook: {values['WEBHOOK_URL']} secret {issued.secret}")
        self.stdout.write(f"both, as shell exports: {path}")
