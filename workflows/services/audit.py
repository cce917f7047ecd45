"""The audit trail: events written in the business transaction, chained later by the sealer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from workflows.canonical import canonical_json, sha256_hex
from workflows.models import (
    AuditEvent,
    Delivery,
    Endpoint,
    LocalModel,
    ReviewTask,
    Run,
    StepRun,
    Workflow,
)

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key: "hitl" + "seal" as two int32s keeps clear of other users' locks.
_SEAL_LOCK = (0x6869746C, 0x7365616C)


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(AuditEvent.ActorType.SYSTEM, "", label)

    @classmethod
    def for_user(cls, user: Any) -> Actor:
        return cls(AuditEvent.ActorType.USER, str(user.pk), user.get_username())


# The object type each audited model is recorded under.
OBJECT_TYPES: dict[type[models.Model], str] = {
    Run: "run",
    StepRun: "step_run",
    ReviewTask: "review_task",
    Workflow: "workflow",
    LocalModel: "local_model",
    Endpoint: "endpoint",
    Delivery: "delivery",
}


def audit_event(
    *,
    actor: Actor,
    verb: str,
    target: models.Model | None = None,
    object_type: str = "",
    object_id: object = "",
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """An unsaved event about `target` (or an explicit object type and id).

    For a transition that writes several events, build them with this and bulk-create them
    in one statement; for one event, `audit_record` builds and saves it.
    """
    if target is not None:
        object_type, object_id = OBJECT_TYPES[type(target)], target.pk
    payload = payload or {}
    return AuditEvent(
        created_at=now or timezone.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        verb=verb,
        object_type=object_type,
        object_id=str(object_id),
        payload=payload,
        payload_sha256=sha256_hex(canonical_json(payload)),
    )


def audit_record(**kwargs: Any) -> AuditEvent:
    """Build an event (the arguments of `audit_event`) and save it, in the caller's transaction."""
    event = audit_event(**kwargs)
    event.save(force_insert=True)
    return event


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return sha256_hex(prev_hash + canonical_json(event.chain_fields()))


def audit_seal(*, batch_size: int = 1000, now: datetime | None = None) -> int:
    """Give unsealed events a gap-free `seq` and a chained hash, in seal order.

    Chaining here rather than at insert keeps business transactions off one global lock;
    the advisory lock makes concurrent sealers take turns. Returns how many were sealed.
    """
    sealed = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", list(_SEAL_LOCK))
                if not cursor.fetchone()[0]:
                    return sealed
            last = (
                AuditEvent.objects.filter(seq__isnull=False)
                .order_by("-seq")
                .values_list("seq", "hash")
                .first()
            )
            seq: int = last[0] if last and last[0] is not None else 0
            prev_hash: str = last[1] if last else GENESIS_HASH
            batch = list(AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:batch_size])
            sealed_at = now or timezone.now()
            for event in batch:
                seq += 1
                event.seq = seq
                event.prev_hash = prev_hash
                event.hash = chain_hash(prev_hash, event)
                event.sealed_at = sealed_at
                prev_hash = event.hash
            AuditEvent.objects.bulk_update(batch, ["seq", "prev_hash", "hash", "sealed_at"])
        sealed += len(batch)
        if len(batch) < batch_size:
            return sealed


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problem: str = ""
    seq: int | None = None


def audit_verify() -> ChainReport:
    """Walk the sealed chain and check continuity, hashes and (unredacted) payload digests."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    events = AuditEvent.objects.filter(seq__isnull=False).order_by("seq").iterator(chunk_size=2000)
    for event in events:
        if event.seq != expected_seq:
            return ChainReport(False, checked, f"gap: expected seq {expected_seq}", event.seq)
        if event.prev_hash != prev_hash or event.hash != chain_hash(prev_hash, event):
            return ChainReport(False, checked, "hash mismatch", event.seq)
        if sha256_hex(canonical_json(event.payload)) != event.payload_sha256:
            return ChainReport(False, checked, "payload does not match its digest", event.seq)
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    return ChainReport(True, checked)
