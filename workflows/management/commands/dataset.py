"""`manage.py dataset export --out PATH|- [--format records|chat] [filters]`: reviewed gate
items as JSONL for retraining and evaluation (docs/datasets.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from workflows import services
from workflows.datasets import ACTIONS, FORMATS, REGIONS
from workflows.errors import InvalidInput
from workflows.services.datasets import BATCH_SIZE, DatasetFilters
from workflows.splits import SPLITS


class Command(BaseCommand):
    help = "Export reviewed gate items as JSONL datasets."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        exp = sub.add_parser("export", help="write reviewed gate items as JSONL")
        exp.add_argument("--out", required=True, help="the file to write, or - for stdout")
        exp.add_argument("--format", choices=FORMATS, default="records")
        exp.add_argument(
            "--workflow", action="append", default=[], help="only this workflow (repeatable)"
        )
        exp.add_argument("--since", help="settled at or after (ISO date or datetime, UTC if naive)")
        exp.add_argument("--until", help="settled before (ISO date or datetime, UTC if naive)")
        exp.add_argument("--action", action="append", default=[], choices=ACTIONS, dest="actions")
        exp.add_argument("--region", action="append", default=[], choices=REGIONS)
        exp.add_argument("--split", choices=[*SPLITS, "all"], default="all")
        exp.add_argument(
            "--include-auto", action="store_true", help="also the items the gate auto-approved"
        )
        exp.add_argument("--user", help="who exports, for the audit trail (default: system)")
        exp.add_argument(
            "--progress", action="store_true", help="show progress even if stderr is no terminal"
        )
        exp.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="items per query")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _moment(options["since"], "--since")
        until = _moment(options["until"], "--until")
        if since and until and since >= until:
            raise CommandError("--since must be before --until")
        if "auto" in options["region"] and not options["include_auto"]:
            raise CommandError("--region auto needs --include-auto")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        filters = DatasetFilters(
            workflows=tuple(options["workflow"]),
            since=since,
            until=until,
            actions=tuple(options["actions"]),
            regions=tuple(options["region"]),
            split=options["split"],
            include_auto=options["include_auto"],
        )
        show = options["progress"] or self.stderr.isatty()
        try:
            result = services.dataset_export(
                filters=filters,
                fmt=options["format"],
                out=options["out"],
                actor=self._actor(options["user"]),
                stream=self.stdout,
                batch_size=options["batch_size"],
                progress=self._progress if show else None,
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot write {options['out']}: {exc}") from None
        if show:
            self._note("")
        where = "stdout" if options["out"] == "-" else options["out"]
        noun = "row" if result.rows == 1 else "rows"
        summary = f"wrote {result.rows} {noun} to {where} (sha256 {result.sha256})"
        if result.skipped:
            counts = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items()))
            summary += f"; skipped {counts}"
        self._note(summary)

    def _actor(self, username: str | None) -> services.Actor:
        if not username:
            return services.Actor.system("cli")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return services.Actor.for_user(user)

    def _progress(self, read: int, rows: int, total: int) -> None:
        # One line, redrawn in place on a terminal; one line per batch anywhere else.
        end = "\r" if self.stderr.isatty() else "\n"
        self._note(f"exporting: {read}/{total} items, {rows} rows", ending=end)

    def _note(self, text: str, ending: str = "\n") -> None:
        # Plain text: Django would paint everything written to a terminal's stderr as an error.
        self.stderr.write(text, style_func=_plain, ending=ending)


def _plain(text: str) -> str:
    return text


def _moment(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{flag} {text!r} is not an ISO date") from None
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment
