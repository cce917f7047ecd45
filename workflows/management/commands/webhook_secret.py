"""`manage.py webhook_secret --source SLUG [--workflow SLUG] [--rotate]`: a sender's URL and secret.

Creates the source (with `--workflow`) and its first secret, or with `--rotate` gives an
existing source a new secret (the previous ones keep verifying for `--overlap-hours`), and
prints the URL to post to and the secret, which is shown nowhere else. `make run` uses it to
print a fresh demo secret at each start.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.errors import ServiceError
from workflows.models import WebhookSource, Workflow
from workflows.services import webhook_sources


class Command(BaseCommand):
    help = "Create a webhook source, or rotate its secret, and print its URL and secret."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", required=True, help="the source's slug (in its URL)")
        parser.add_argument("--workflow", help="the workflow it starts (to create the source)")
        parser.add_argument(
            "--rotate", action="store_true", help="an existing source gets a new secret"
        )
        parser.add_argument(
            "--overlap-hours",
            type=float,
            default=webhook_sources.ROTATION_OVERLAP.total_seconds() / 3600,
            help="how long the previous secrets still verify after --rotate (default 24)",
        )
        parser.add_argument("--rate-limit", type=int, help="deliveries per minute (new source)")
        parser.add_argument("--base-url", default=settings.HITL_BASE_URL)

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["source"]
        source = WebhookSource.objects.select_related("workflow").filter(slug=slug).first()
        try:
            if source is None:
                issued = webhook_sources.webhook_source_create(
                    workflow=self._workflow(options.get("workflow"), slug),
                    slug=slug,
                    user=None,  # the operator at the command line
                    rate_limit_per_minute=options.get("rate_limit"),
                )
                source, done = issued.record.source, "created"
            elif not options["rotate"]:
                raise CommandError(
                    f"webhook source {slug!r} exists; pass --rotate for a new secret"
                )
            else:
                if options.get("workflow") and options["workflow"] != source.workflow.slug:
                    raise CommandError(
                        f"webhook source {slug!r} starts {source.workflow.slug!r}, "
                        f"not {options['workflow']!r}"
                    )
                overlap = timedelta(hours=options["overlap_hours"])
                issued = webhook_sources.webhook_secret_rotate(
                    source=source, user=None, overlap=overlap
                )
                done = "rotated"
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        state = "" if source.active else " (DISABLED: it answers 404)"
        self.stdout.write(
            f"webhook source {source.slug} ({done}, workflow {source.workflow.slug}){state}"
        )
        self.stdout.write(
            f"url:    {options['base_url'].rstrip('/')}/api/v1/webhooks/{source.slug}/"
        )
        self.stdout.write(f"secret: {issued.secret}")

    def _workflow(self, slug: str | None, source: str) -> Workflow:
        if not slug:
            raise CommandError(f"no webhook source {source!r}: pass --workflow to create it")
        workflow = Workflow.objects.filter(slug=slug).first()
        if workflow is None:
            raise CommandError(f"no workflow {slug!r}")
        return workflow
