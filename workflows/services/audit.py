"""The audit trail: events written in the business transaction, chained later by the sealer.

The sealer links events with the audit key (`workflows.auditchain`) and publishes a signed
checkpoint of the head; `audit_verify` (services/audit_verify.py) checks both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction

from workflows import auditchain
from workflows.auditchain import GENESIS_HASH, REKEYED, UNKEYED, Checkpoint
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

# pg_advisory_xact_lock key: "hitl" + "seal" as two int32s keeps clear of other users' locks.
_SEAL_LOCK = (0x6869746C, 0x7365616C)
# Events per seal transaction: large enough that round trips do not dominate, small enough
# that one batch's UPDATE holds its row locks briefly (bench.audit measured 2,000-10,000 alike).
SEAL_BATCH = 5000
checkpoint_logger = logging.getLogger("hitl.audit.checkpoint")


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
) -> AuditEvent:
    """An unsaved event about `target` (or an explicit object type and id).

    For a transition that writes several events, build them with this and bulk-create them
    in one statement; for one event, `audit_record` builds and saves it. The database dates
    the event when it is inserted (`created_at`, migration 0009), so no caller can.
    """
    if target is not None:
        object_type, object_id = OBJECT_TYPES[type(target)], target.pk
    payload = payload or {}
    return AuditEvent(
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


def audit_backlog() -> int:
    """How many events wait for the sealer (the partial index on unsealed ids answers it)."""
    return AuditEvent.objects.filter(seq__isnull=True).count()


@dataclass
class _Head:
    seq: int
    hash: str
    key_id: str  # the key the next link is made with


_UNSEALED = """
SELECT id, created_at, actor_type, actor_id, actor_label, verb, object_type, object_id,
       payload_sha256
FROM workflows_auditevent WHERE seq IS NULL ORDER BY id LIMIT %s
"""
# One statement per batch, setting only the seal's columns (the runtime role may be granted
# UPDATE on exactly these). The ids and hashes travel as comma-separated text that the
# statement splits and zips (unnest of several arrays): psycopg would otherwise build array
# literals element by element, a third of the seal's time. Only the first row's key can
# differ from the others' (the sealer's own rekeyed event).
_SEAL = """
UPDATE workflows_auditevent AS e
SET seq = %(seq)s::bigint + v.n, prev_hash = v.prev_hash, hash = v.hash,
    key_id = CASE WHEN v.n = 1 THEN %(first_key)s::text ELSE %(key)s::text END,
    sealed_at = %(sealed_at)s
FROM unnest(string_to_array(%(ids)s::text, ',')::bigint[],
            string_to_array(%(prevs)s::text, ','),
            string_to_array(%(hashes)s::text, ','))
     WITH ORDINALITY AS v(id, prev_hash, hash, n)
WHERE e.id = v.id AND e.seq IS NULL
"""


def audit_seal(*, batch_size: int = SEAL_BATCH) -> int:
    """Give unsealed events a gap-free `seq` and a keyed link, in seal order; then publish the
    new head as a checkpoint. Returns how many were sealed.

    Chaining here rather than at insert keeps business transactions off one global lock; the
    advisory lock makes concurrent sealers take turns. Links are computed in Python and
    written by one UPDATE per batch. Every batch of one call carries the same `sealed_at`
    (the database's clock when the call began), which is also the checkpoint's time: the
    verifier reads the seal boundaries, and so the backdating check, from it.
    """
    current = auditchain.current_key_id()
    _check_checkpoint()
    sealed, sealed_at, head = 0, None, None
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s), statement_timestamp()", list(_SEAL_LOCK)
            )
            locked, clock = cursor.fetchone()
            if not locked:
                break
            sealed_at = sealed_at or clock
            head = _head(cursor)
            cursor.execute(_UNSEALED, [batch_size])
            rows = cursor.fetchall()
            rekeyed = bool(rows) and head.key_id != current
            if rekeyed:
                rows.insert(0, _rekeyed_row(head.key_id, current))
            _seal_rows(cursor, rows, head, current if rekeyed else None, sealed_at)
        sealed += len(rows)
        if len(rows) < batch_size:
            break
    if sealed and head is not None and sealed_at is not None:
        _publish(Checkpoint(head.seq, head.hash, sealed_at, current))
    return sealed


def _check_checkpoint() -> None:
    """Refuse to seal onto a chain cut or rewritten behind the last checkpoint: otherwise the
    next checkpoint would cover the cut, and only an older one would still show it."""
    path = settings.HITL_AUDIT_CHECKPOINT_FILE
    latest = auditchain.checkpoint_latest(path) if path else None
    if latest is None:
        return
    found = AuditEvent.objects.filter(seq=latest.seq).values_list("hash", flat=True).first()
    if found != latest.hash:
        when = latest.time.isoformat()
        what = (
            f"is gone, though the checkpoint of {when} recorded it"
            if found is None
            else f"no longer has the hash the checkpoint of {when} recorded"
        )
        raise auditchain.ChainBehindCheckpoint(
            f"event {latest.seq} {what}: the audit chain was cut or rewritten, so it is not"
            " sealed further (run `manage.py audit verify`)"
        )


def _head(cursor: Any) -> _Head:
    cursor.execute(
        "SELECT seq, hash, key_id, verb, payload->>'to' FROM workflows_auditevent"
        " WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    )
    row = cursor.fetchone()
    if row is None:
        return _Head(0, GENESIS_HASH, UNKEYED)
    seq, hash_, key_id, verb, rekeyed_to = row
    return _Head(seq, hash_, rekeyed_to if verb == REKEYED else key_id)


def _rekeyed_row(old: str, new: str) -> tuple[Any, ...]:
    """Record the switch to the current key: sealed with the old key (or unkeyed), it is the
    last link the old key makes, and it names both keys for the verifier."""
    event = audit_record(
        actor=Actor.system("audit sealer"),
        verb=REKEYED,
        object_type="audit",
        object_id=new,
        payload={"from": old, "to": new},
    )
    return (
        event.pk,
        event.created_at,
        event.actor_type,
        event.actor_id,
        event.actor_label,
        event.verb,
        event.object_type,
        event.object_id,
        event.payload_sha256,
    )


def _seal_rows(
    cursor: Any, rows: list[tuple[Any, ...]], head: _Head, rekey_to: str | None, sealed_at: datetime
) -> None:
    """Link `rows` after `head` and write them. With `rekey_to`, the first row is the sealer's
    own rekeyed event, linked with the head's key; the rest use `rekey_to`. (Only the sealer's
    own event switches keys here: a row someone else wrote with that verb is an ordinary one.)
    """
    if not rows:
        return
    secrets = auditchain.keys()
    ids, hashes, key_ids = [], [], []
    seq, prev_hash, key_id = head.seq, head.hash, head.key_id
    for index, row in enumerate(rows):
        id_, created_at, actor_type, actor_id, actor_label, verb, otype, oid, digest = row
        secret = secrets.get(key_id) if key_id != UNKEYED else None
        if key_id != UNKEYED and secret is None:
            raise ImproperlyConfigured(
                f"the audit chain's head is sealed with key {key_id!r}, which HITL_AUDIT_KEYS"
                " no longer lists: list it after the current key until the sealer has rotated"
            )
        seq += 1
        hash_ = auditchain.link(
            prev_hash,
            secret,
            seq,
            id_,
            created_at,
            actor_type,
            actor_id,
            actor_label,
            verb,
            otype,
            oid,
            digest,
            key_id,
            sealed_at,
        )
        ids.append(id_)
        hashes.append(hash_)
        key_ids.append(key_id)
        prev_hash = hash_
        if index == 0 and rekey_to is not None:
            key_id = rekey_to  # everything after the rekeyed event uses the new key
    cursor.execute(
        _SEAL,
        {
            "sealed_at": sealed_at,
            "seq": head.seq,
            "ids": ",".join(map(str, ids)),
            "prevs": ",".join([head.hash, *hashes[:-1]]),
            "hashes": ",".join(hashes),
            "first_key": key_ids[0],
            "key": key_ids[-1],
        },
    )
    head.seq, head.hash, head.key_id = seq, prev_hash, key_id


def _publish(checkpoint: Checkpoint) -> None:
    """Log the head, signed, and append it to the checkpoint file if there is one."""
    line = auditchain.checkpoint_line(checkpoint)
    checkpoint_logger.info(line)
    path = settings.HITL_AUDIT_CHECKPOINT_FILE
    if path:
        auditchain.checkpoint_append(path, checkpoint)
