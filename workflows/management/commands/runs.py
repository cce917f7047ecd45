"""`manage.py runs retry-failed --since T [--workflow SLUG]`: send failed runs round again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from workflows import services
from workflows.models import Workflow


class Command(BaseCommand):
    help = "Operate on runs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        retry = sub.add_parser("retry-failed", help="retry every run that failed since T")
        retry.add_argument("--since", required=True, help="ISO date or datetime (UTC if naive)")
        retry.add_argument("--workflow", help="only this workflow (slug)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = datetime.fromisoformat(options["since"])
        except ValueError:
            raise CommandError(f"--since {options['since']!r} is not an ISO date") from None
        if timezone.is_naive(since):
            since = since.replace(tzinfo=UTC)
        workflow = None
        if options.get("workflow"):
            workflow = Workflow.objects.filter(slug=options["workflow"]).first()
            if workflow is None:
                raise CommandError(f"no workflow {options['workflow']!r}")
        count = services.runs_retry_failed(
            since=since, workflow=workflow, actor=services.Actor.system("cli")
        )
        self.stdout.write(f"retried {count} failed run{'s' if count != 1 else ''}")
