"""Proving the audit trail: the chain, its last checkpoint, and every decision against its event.

The walk streams the sealed chain in keyset batches (seq order, never the whole table) and
stops at the first broken link, naming its kind:

- `deleted`: a seq is missing (a gap);
- `altered`: an event's fields, payload or key id no longer give its hash, or the event at
  the checkpoint's seq no longer has the checkpoint's hash (the chain was rewritten);
- `inserted`: an event that is not part of the chain (it links to nothing, or the next event
  links past it);
- `reordered`: an event that links after another event than its predecessor;
- `truncated`: the chain ends before the last checkpoint;
- `backdated`: a keyed event created before the seal that preceded it (less the slack an
  honest transaction may take to commit, HITL_AUDIT_BACKDATE_SLACK);
- `decision mismatch`: a Decision row, or its gate's final output, that differs from its
  review.decided event, a decision without one, or an event whose decision is gone while its
  run is still there (retention removes whole runs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from workflows import auditchain
from workflows.auditchain import GENESIS_HASH, REKEYED, UNKEYED, Checkpoint
from workflows.canonical import stored_json_digest
from workflows.models import AuditVerification
from workflows.services.alerts import alert_raise

# The event that names redacted events (workflows.services.audit_redact).
REDACTED = "audit.redacted"

logger = logging.getLogger(__name__)
VERIFY_BATCH = 5000


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    kind: str = ""
    problem: str = ""
    seq: int | None = None
    decision: int | None = None
    last_seq: int = 0  # the last event verified
    last_hash: str = GENESIS_HASH

    def describe(self) -> str:
        if self.ok:
            return f"audit chain ok: {self.checked} events verified (up to seq {self.last_seq})"
        where = f"decision {self.decision}" if self.decision else f"seq {self.seq}"
        return f"audit chain broken at {where} ({self.kind}): {self.problem}"


@dataclass
class _State:
    seq: int  # the last event verified
    hash: str
    key_id: str  # the key the next link must be made with
    batch_time: datetime | None = None  # the seal time of the last keyed event
    preceding_seal: datetime | None = None  # the seal before that one
    checked: int = 0
    hashes: dict[int, str] = field(default_factory=dict)
    redacted: dict[int, int] = field(default_factory=dict)  # redacted event id -> its seq
    named: set[int] = field(default_factory=set)  # ids that audit.redacted events name


_COLUMNS = (
    "seq, id, created_at, actor_type, actor_id, actor_label, verb, object_type, object_id,"
    " payload::text, payload_sha256, prev_hash, hash, key_id, sealed_at, redacted_at"
)


def audit_verify(
    *, since: int = 0, expect_hash: str | None = None, checkpoint: str | Path | None = None
) -> ChainReport:
    """Verify the events after seq `since` (all with 0), the latest checkpoint, and the
    decisions.

    `expect_hash` is the hash event `since` had when it was last verified. `checkpoint` is a
    checkpoint file (default HITL_AUDIT_CHECKPOINT_FILE); a file that does not verify raises
    `auditchain.CheckpointError`.
    """
    path = checkpoint or settings.HITL_AUDIT_CHECKPOINT_FILE
    latest = auditchain.checkpoint_latest(path) if path else None
    state = _start(since)
    if isinstance(state, ChainReport):
        return state
    if expect_hash is not None and state.hash != expect_hash:
        return _broken(state, "altered", since, f"event {since} changed since it was verified")
    if latest is not None and latest.seq > since:
        state.hashes[latest.seq] = ""
    secrets = auditchain.keys()
    for batch in _batches(since):
        for index, row in enumerate(batch):
            problem = _check(
                state, row, secrets, batch[index + 1] if index + 1 < len(batch) else None
            )
            if problem is not None:
                return _broken(state, *problem)
    report = _checkpoint(state, latest) or _redactions(state) or _decisions(state)
    return report or ChainReport(True, state.checked, last_seq=state.seq, last_hash=state.hash)


def _broken(state: _State, kind: str, seq: int | None, problem: str) -> ChainReport:
    return ChainReport(False, state.checked, kind, problem, seq, None, state.seq, state.hash)


def _start(since: int) -> _State | ChainReport:
    if since <= 0:
        return _State(0, GENESIS_HASH, UNKEYED)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hash, key_id, verb, payload->>'to', sealed_at FROM workflows_auditevent"
            " WHERE seq = %s",
            [since],
        )
        row = cursor.fetchone()
        if row is None:
            state = _State(since, "", UNKEYED)
            return _broken(state, "truncated", since, f"event {since} no longer exists")
        hash_, key_id, verb, rekeyed_to, sealed_at = row
        state = _State(since, hash_, rekeyed_to if verb == REKEYED else key_id)
        if key_id != UNKEYED:
            state.batch_time = sealed_at
            cursor.execute(
                "SELECT sealed_at FROM workflows_auditevent WHERE seq < %s AND key_id <> ''"
                " AND sealed_at < %s ORDER BY seq DESC LIMIT 1",
                [since, sealed_at],
            )
            before = cursor.fetchone()
            state.preceding_seal = before[0] if before else None
    return state


def _batches(since: int) -> Iterator[list[tuple[Any, ...]]]:
    """The sealed events after `since`, in seq order, VERIFY_BATCH at a time (keyset)."""
    last = since
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {_COLUMNS} FROM workflows_auditevent"  # noqa: S608 (constant columns)
                " WHERE seq > %s ORDER BY seq LIMIT %s",
                [last, VERIFY_BATCH],
            )
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _check(
    state: _State, row: tuple[Any, ...], secrets: dict[str, bytes], after: tuple[Any, ...] | None
) -> tuple[str, int, str] | None:
    """The first problem with `row` as the next link, or None (and the state moves on)."""
    (seq, id_, created_at, actor_type, actor_id, actor_label, verb, otype, oid) = row[:9]
    payload_text, digest, prev_hash, hash_, key_id, sealed_at, redacted_at = row[9:]
    expected = state.seq + 1
    if seq != expected:
        return "deleted", seq, f"events {expected} to {seq - 1} are missing"
    if key_id != state.key_id:
        wanted = f"key {state.key_id!r}" if state.key_id else "no key"
        return "altered", seq, f"sealed with key {key_id!r}, but the chain here uses {wanted}"
    secret = secrets.get(key_id) if key_id != UNKEYED else None
    if key_id != UNKEYED and secret is None:
        return "altered", seq, f"sealed with key {key_id!r}, which HITL_AUDIT_KEYS does not list"
    if prev_hash != state.hash:
        return _misplaced(seq, prev_hash)
    link = auditchain.link(
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
    if link != hash_:
        following = after[11] if after is not None else _prev_hash_of(seq + 1)
        if following is not None and following == state.hash:
            return "inserted", seq, "the next event links past this one"
        return "altered", seq, "its fields no longer give its hash (or the key differs)"
    # jsonb text is not canonical: parse it, then hash the canonical form.
    payload = json.loads(payload_text)
    if redacted_at is not None:
        # Blanked for retention: the digest stays in the chain; the payload must be the mark.
        if payload != redaction_mark(verb, payload):
            return "altered", seq, "its payload was changed under the redaction mark"
        state.redacted[id_] = seq
    elif auditchain.payload_digest(payload) != digest:
        return "altered", seq, "its payload does not match its digest"
    if verb == REDACTED:
        state.named.update(int(i) for i in payload.get("events", []))
    if key_id != UNKEYED:
        if sealed_at != state.batch_time:
            state.preceding_seal, state.batch_time = state.batch_time, sealed_at
        slack = settings.HITL_AUDIT_BACKDATE_SLACK
        if state.preceding_seal is not None and created_at < state.preceding_seal - slack:
            return (
                "backdated",
                seq,
                f"created {created_at.isoformat()}, before the seal of"
                f" {state.preceding_seal.isoformat()} that preceded it",
            )
    if verb == REKEYED:
        state.key_id = str(payload.get("to", ""))
    state.seq, state.hash = seq, hash_
    state.checked += 1
    if seq in state.hashes:
        state.hashes[seq] = hash_
    return None


def redaction_mark(verb: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a redacted payload must be (`hitl_audit_redacted_payload`, migration 0010)."""
    mark: dict[str, Any] = {"redacted": True}
    if verb == "review.decided":
        mark.update({k: payload[k] for k in ("run", "decision") if payload.get(k) is not None})
    return mark


def _redactions(state: _State) -> ChainReport | None:
    """Every redacted event must be named by an `audit.redacted` event: one the walk met, or
    one not sealed yet (written with the redaction, in its transaction)."""
    unnamed = {i: seq for i, seq in state.redacted.items() if i not in state.named}
    if not unnamed:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT payload->'events' FROM workflows_auditevent"
            " WHERE verb = %s AND (seq IS NULL OR seq <= %s)",
            [REDACTED, state.seq],
        )
        for (events,) in cursor.fetchall():
            for i in json.loads(events) if isinstance(events, str) else events:
                unnamed.pop(int(i), None)
    if not unnamed:
        return None
    event_id, seq = min(unnamed.items(), key=lambda item: item[1])
    return _broken(
        state,
        "altered",
        seq,
        f"event {event_id} is marked redacted, but no audit.redacted event names it",
    )


def _misplaced(seq: int, prev_hash: str) -> tuple[str, int, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq FROM workflows_auditevent WHERE hash = %s LIMIT 1", [prev_hash])
        row = cursor.fetchone()
    if row is not None:
        return "reordered", seq, f"it links after event {row[0]}, not after event {seq - 1}"
    return "inserted", seq, "it links to no event of the chain"


def _prev_hash_of(seq: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT prev_hash FROM workflows_auditevent WHERE seq = %s", [seq])
        row = cursor.fetchone()
    return row[0] if row else None


def _checkpoint(state: _State, latest: Checkpoint | None) -> ChainReport | None:
    if latest is None:
        return None
    when = latest.time.isoformat()
    if latest.seq > state.seq:
        return _broken(
            state,
            "truncated",
            state.seq + 1,
            f"the chain ends at seq {state.seq}, but the checkpoint of {when} saw seq {latest.seq}",
        )
    found = state.hashes.get(latest.seq) or _hash_of(latest.seq)
    if found != latest.hash:
        return _broken(
            state,
            "altered",
            latest.seq,
            f"event {latest.seq} differs from the checkpoint of {when}: the chain was rewritten",
        )
    return None


def _hash_of(seq: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT hash FROM workflows_auditevent WHERE seq = %s", [seq])
        row = cursor.fetchone()
    return row[0] if row else None


_DECISIONS = """
SELECT d.id, d.action, d.reason, d.edited_output::text, d.shown::text, d.reviewer_id,
       s.output::text, e.payload::text, e.seq
FROM workflows_decision d
JOIN workflows_reviewtask t ON t.id = d.task_id
LEFT JOIN workflows_steprun s ON s.id = t.step_run_id
LEFT JOIN workflows_auditevent e
       ON e.object_type = 'review_task' AND e.object_id = d.task_id::text
      AND e.verb = 'review.decided' AND e.payload->>'decision' = d.id::text
WHERE d.id > %s ORDER BY d.id LIMIT %s
"""
_ORPHANS = """
SELECT e.seq, e.id, e.payload->>'decision' FROM workflows_auditevent e
WHERE e.verb = 'review.decided'
  AND NOT EXISTS (SELECT 1 FROM workflows_decision d WHERE d.id::text = e.payload->>'decision')
  -- Retention removes whole runs, their decisions with them: only a run still there counts.
  AND EXISTS (SELECT 1 FROM workflows_run r WHERE r.id::text = e.payload->>'run')
ORDER BY e.id LIMIT 1
"""


def _decisions(state: _State) -> ChainReport | None:
    """Every decision against its review.decided event, and every such event against its
    decision. Events written before decisions carried their content (action and reason
    only) are checked for what they carry."""
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_DECISIONS, [last, VERIFY_BATCH])
            rows = cursor.fetchall()
        for decision_id, action, reason, edited, shown, reviewer, output, payload, seq in rows:
            problem = _decision_problem(
                action, reason, _json(edited), _json(shown), reviewer, _json(output), _json(payload)
            )
            if problem:
                report = _broken(state, "decision mismatch", seq, problem)
                return replace(report, decision=decision_id)
        if len(rows) < VERIFY_BATCH:
            break
        last = rows[-1][0]
    with connection.cursor() as cursor:
        cursor.execute(_ORPHANS)
        orphan = cursor.fetchone()
    if orphan is not None:
        seq, event_id, decision_id = orphan
        report = _broken(
            state,
            "decision mismatch",
            seq,
            f"event {event_id} records decision {decision_id}, which no longer exists",
        )
        return replace(report, decision=int(decision_id))
    return None


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _decision_problem(
    action: str,
    reason: str,
    edited: Any,
    shown: Any,
    reviewer: int,
    output: Any,
    payload: dict[str, Any] | None,
) -> str:
    if payload is None:
        return "the decision has no review.decided event"
    differs = [
        name
        for name, value in (
            ("action", action),
            ("reason", reason),
            ("edited_output", edited),
            ("reviewer", reviewer),
        )
        if name in payload and payload[name] != value
    ]
    if "shown_sha256" in payload and payload["shown_sha256"] != stored_json_digest(shown):
        differs.append("shown")
    if "output" in payload and payload["output"] != output:
        differs.append("the gate's final output")
    if differs:
        return f"{', '.join(differs)} no longer match the review.decided event"
    return ""


def audit_verify_scheduled() -> ChainReport:
    """The beat task's verification: from the last good one on, recorded; a failure is logged
    as an ERROR and emailed to the superusers (an alert, `services.alerts`)."""
    last = AuditVerification.objects.filter(ok=True).first()
    since = last.last_seq if last else 0
    try:
        report = audit_verify(since=since, expect_hash=last.last_hash if last else None)
    except auditchain.CheckpointError as exc:
        report = ChainReport(False, 0, "checkpoint", str(exc), last_seq=since)
    AuditVerification.objects.create(
        first_seq=since,
        last_seq=report.last_seq if report.ok else since,
        last_hash=report.last_hash if report.ok else (last.last_hash if last else GENESIS_HASH),
        checked=report.checked,
        ok=report.ok,
        problem="" if report.ok else report.describe(),
    )
    if not report.ok:
        alert_raise(
            kind="audit_verify_failed",
            message=report.describe(),
            details={"kind": report.kind, "seq": report.seq, "decision": report.decision},
            subject="The audit trail failed verification",
            advice="Reproduce it with `python manage.py audit verify`; the audit table and its"
            " checkpoint file are evidence: keep both as they are.",
        )
    return report
