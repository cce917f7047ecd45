"""`manage.py audit verify [--since SEQ] [--checkpoint PATH]` and `manage.py audit seal`.

`verify` walks the sealed chain after SEQ (all of it by default) in batches, checks it against
the latest checkpoint (HITL_AUDIT_CHECKPOINT_FILE, or PATH), then every review decision against
its event. It prints the count and exits 0, or names the first broken link and its kind and
exits 1; a checkpoint file it cannot trust exits 2. `seal` seals what is waiting (what the beat
task does every few seconds) and prints how many. `redact --event ID ... --reason TEXT`
blanks those events' payloads for retention (see docs/audit.md) and records why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.auditchain import CheckpointError
from workflows.errors import InvalidInput
from workflows.services import Actor, audit_redact, audit_seal, audit_verify


class Command(BaseCommand):
    help = "Verify or seal the audit trail."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="verify the chain, checkpoint and decisions")
        verify.add_argument(
            "--since", type=int, default=0, help="verify only the events after this seq"
        )
        verify.add_argument(
            "--checkpoint", type=Path, help="a checkpoint file (default: the configured one)"
        )
        sub.add_parser("seal", help="seal the events waiting for the sealer")
        redact = sub.add_parser("redact", help="blank events' payloads for retention")
        redact.add_argument(
            "--event", type=int, action="append", required=True, help="an audit event id"
        )
        redact.add_argument("--reason", required=True, help="why (kept in the audit trail)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "seal":
            self.stdout.write(f"sealed {audit_seal()} events")
            return
        if options["action"] == "redact":
            try:
                done = audit_redact(
                    event_ids=options["event"],
                    actor=Actor.system("manage.py audit redact"),
                    reason=options["reason"],
                )
            except InvalidInput as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"redacted {done} events")
            return
        path = options.get("checkpoint")
        if path is not None and not path.is_file():
            raise CommandError(f"no checkpoint file at {path}", returncode=2)
        if options["since"] < 0:
            raise CommandError("--since must be 0 or more", returncode=2)
        try:
            report = audit_verify(since=options["since"], checkpoint=path)
        except CheckpointError as exc:
            raise CommandError(f"the checkpoint cannot be trusted: {exc}", returncode=2) from exc
        if not report.ok:
            raise CommandError(report.describe(), returncode=1)
        self.stdout.write(report.describe())
