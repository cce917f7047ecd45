"""`manage.py workflow import FILE | export SLUG | schema`: definitions as files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.definitions import DefinitionError, check_source_size, schema_as_json
from workflows.models import Workflow, WorkflowVersion


class Command(BaseCommand):
    help = "Import, export and describe workflow definitions."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser("import", help="validate and publish a definition file")
        imp.add_argument("file", help="a YAML or JSON definition, or - for stdin")
        imp.add_argument("--draft", action="store_true", help="store without publishing")
        exp = sub.add_parser("export", help="write a workflow's definition")
        exp.add_argument("slug")
        exp.add_argument("--version", type=int, help="a version number (default: active)")
        sub.add_parser("schema", help="print the JSON Schema of the definition format")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "import":
            self._import(options["file"], draft=options["draft"])
        elif action == "export":
            self._export(options["slug"], options.get("version"))
        else:
            self.stdout.write(schema_as_json())

    def _import(self, file: str, *, draft: bool) -> None:
        try:
            result = services.workflow_import(
                source=_read(file), actor=services.Actor.system("cli"), publish=not draft
            )
        except DefinitionError as exc:
            lines = "\n".join(f"  {loc or '(definition)'}: {msg}" for loc, msg in exc.errors)
            raise CommandError(f"{file} is not a valid workflow definition:\n{lines}") from None
        version = result.version
        state = "new" if result.created else "unchanged"
        active = " and activated" if result.activated else ""
        self.stdout.write(
            f"{result.workflow.slug} v{version.number} ({state}, {version.status}{active})"
        )

    def _export(self, slug: str, number: int | None) -> None:
        workflow = Workflow.objects.filter(slug=slug).first()
        if workflow is None:
            raise CommandError(f"no workflow {slug!r}")
        if number is None:
            version = workflow.active_version
        else:
            version = WorkflowVersion.objects.filter(workflow=workflow, number=number).first()
        if version is None:
            raise CommandError(f"{slug!r} has no such version")
        self.stdout.write(version.source.rstrip("\n"))


def _read(file: str) -> str:
    """The text of `file` (or stdin for -), reading no more than the size limit allows."""
    limit = settings.HITL_DEFINITION_MAX_BYTES
    try:
        if file == "-":
            stream = getattr(sys.stdin, "buffer", None)
            # A text-only stdin: characters never outnumber their UTF-8 bytes.
            raw = stream.read(limit + 1) if stream else sys.stdin.read(limit + 1).encode()
        else:
            with Path(file).open("rb") as handle:
                raw = handle.read(limit + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc}") from None
    check_source_size(len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{file} is not UTF-8 text: {exc}") from None
    # The universal newlines of a file read as text, as before: the source is stored as is.
    return text.replace("\r\n", "\n").replace("\r", "\n")
