"""Redaction for retention: blank sealed events' payloads, and say so in the chain.

A payload may hold personal data that must go after a retention period or on request. The
chain holds each payload only as its SHA-256, so blanking it leaves every link verifiable.
The blanking is done by the database function `hitl_audit_redact` (migration 0010), which can
do nothing else, and which the application's role may call though it may not rewrite a
payload itself; `audit_verify` accepts a blanked payload only if it is the exact mark and
an `audit.redacted` event names it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction

from workflows.errors import InvalidInput
from workflows.models import AuditEvent
from workflows.services.audit import Actor, audit_record, audit_seal

MAX_REASON = 500


def audit_redact(*, event_ids: Iterable[int], actor: Actor, reason: str) -> int:
    """Redact the payloads of these events (sealing what waits first); return how many were
    redacted now. Events of the audit trail itself (`audit.*`) are never redacted: they are
    what proves the rest. An event already redacted is left as it is."""
    ids = sorted(set(event_ids))
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a redaction needs a reason (it is kept in the audit trail)")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is too long (at most {MAX_REASON} characters)")
    found = dict(AuditEvent.objects.filter(pk__in=ids).values_list("pk", "verb"))
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput(f"no audit event {', '.join(map(str, missing))}")
    own = [i for i in ids if found[i].startswith("audit.")]
    if own:
        raise InvalidInput(f"events {own} belong to the audit trail itself and stay as they are")
    audit_seal()  # only a sealed event's digest is in the chain, so only those are redacted
    with transaction.atomic():
        done = []
        with connection.cursor() as cursor:
            for event_id in ids:
                cursor.execute("SELECT hitl_audit_redact(%s)", [event_id])
                if cursor.fetchone()[0]:
                    done.append(event_id)
        if done:
            audit_record(
                actor=actor,
                verb="audit.redacted",
                object_type="audit_event",
                object_id=done[0],
                payload={"events": done, "reason": reason},
            )
    return len(done)
