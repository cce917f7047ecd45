"""`manage.py calibrate WORKFLOW [--gate ID] [--apply]`: a gate threshold with a guarantee."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.errors import InvalidInput
from workflows.models import Workflow
from workflows.services.gates import GateCalibration, gate_calibrate, gate_threshold_apply


class Command(BaseCommand):
    help = (
        "Recommend each calibrated gate's threshold from the review history (docs/gates.md); "
        "--apply publishes it as a new version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workflow", help="the workflow's slug")
        parser.add_argument("--gate", help="only this gate (its step id)")
        parser.add_argument(
            "--apply",
            action="store_true",
            help="publish a version with the recommended threshold (none: review everything)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workflow = Workflow.objects.filter(slug=options["workflow"]).first()
        if workflow is None:
            raise CommandError(f"no workflow {options['workflow']!r}")
        try:
            calibrations = gate_calibrate(workflow=workflow, gate_id=options["gate"])
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        for calibration in calibrations:
            self._print(calibration)
            if options["apply"]:
                self._apply(calibration)

    def _print(self, c: GateCalibration) -> None:
        left_out = ", ".join(f"{why} {n}" for why, n in c.left_out.items()) or "none"
        self.stdout.write(
            f"{c.workflow} / {c.gate} (version {c.version}): alpha={c.alpha:g} delta={c.delta:g}"
            f" mode={c.mode}; {c.sample} items in the sample; left out: {left_out}"
        )
        for r in c.results:
            who = f"  label {r.label}: " if r.label is not None else "  "
            now = "none" if r.current is None else f"{r.current:g}"
            if r.threshold is None:
                head = (
                    f"review everything (now {now}): {r.reviews_needed} more clean reviews needed"
                )
            else:
                head = f"recommended threshold {r.threshold:g} (now {now})"
            self.stdout.write(
                f"{who}{head}; bound {r.upper_bound:.4f} at delta={r.delta:g}, n={r.n},"
                f" errors={r.errors}, automation {r.automation:.1%}"
            )
            self.stdout.write(f"    {r.reason}")
            self.stdout.write("    threshold  coverage  observed error  upper bound      n")
            for row in r.table:
                observed = "-" if row.observed_error is None else f"{row.observed_error:.4f}"
                self.stdout.write(
                    f"    {row.threshold:9g}  {row.coverage:8.1%}  {observed:>14}"
                    f"  {row.upper_bound:11.4f}  {row.n:5d}"
                )

    def _apply(self, calibration: GateCalibration) -> None:
        try:
            result = gate_threshold_apply(
                calibration=calibration, actor=services.Actor.system("calibrate")
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        if result is None:
            self.stdout.write("  unchanged: nothing published")
        else:
            self.stdout.write(f"  published version {result.version.number}")
