"""`manage.py review agreement WORKFLOW [--raters N]`: how much quorum reviewers agree."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.models import Workflow
from workflows.selectors_quorum import quorum_agreement


class Command(BaseCommand):
    help = "Review statistics: agreement (kappa) among the seats of a workflow's quorum gates."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        agreement = sub.add_parser(
            "agreement", help="Fleiss' (and with two raters Cohen's) kappa of quorum answers"
        )
        agreement.add_argument("workflow", help="the workflow's slug")
        agreement.add_argument(
            "--raters",
            type=int,
            default=2,
            help="answers per item: each gate's first N seats that answered (default 2)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["workflow"]
        workflow = Workflow.objects.filter(slug=slug).first()
        if workflow is None:
            raise CommandError(f"no workflow {slug!r}")
        raters = options["raters"]
        if not 2 <= raters <= 9:
            raise CommandError(
                f"--raters must be from 2 to 9 (a quorum has at most 9 seats), got {raters}"
            )
        report = quorum_agreement(workflow=workflow, raters=raters)
        if report.items == 0:
            self.stdout.write(f"{slug}: no quorum gate has {raters} answers yet; kappa unknown")
            return
        line = f"{slug}: {report.items} items, {raters} answers each"
        line += f"; Fleiss' kappa {_k(report.fleiss)}"
        if raters == 2:
            line += f"; Cohen's kappa {_k(report.cohen)} (lower seat first)"
        self.stdout.write(line)


def _k(value: float | None) -> str:
    # Undefined when everyone gave one same answer: chance explains all of the agreement.
    return "undefined (every answer the same)" if value is None else f"{value:.3f}"
