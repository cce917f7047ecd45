"""The audit chain: append-only rows, the database's clock, the keyed sealer, key rotation and
checkpoints. Attacks on the chain are in test_audit_attacks.py."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, connections, transaction

from hitl.settings import parse_audit_keys
from workflows import auditchain, services
from workflows.auditchain import GENESIS_HASH, CheckpointError
from workflows.canonical import canonical_json, sha256_hex
from workflows.models import AuditEvent

pytestmark = pytest.mark.django_db
KEY = ("test", "test-only-audit-key")


@pytest.fixture(autouse=True)
def _one_key(settings: Any) -> None:
    settings.HITL_AUDIT_KEYS = [KEY]


@pytest.fixture
def checkpoints(settings: Any, tmp_path: Path) -> Path:
    path = tmp_path / "checkpoints.jsonl"
    settings.HITL_AUDIT_CHECKPOINT_FILE = str(path)
    return path


def record(system: Any, n: int) -> list[AuditEvent]:
    return [
        services.audit_record(
            actor=system, verb="test.event", object_type="thing", object_id=i, payload={"i": i}
        )
        for i in range(n)
    ]


def sealed() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__isnull=False).order_by("seq"))


def test_the_trigger_refuses_update_and_delete(system: Any) -> None:
    (event,) = record(system, 1)
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(verb="tampered")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    raw = "UPDATE workflows_auditevent SET payload = '{}'::jsonb WHERE id = %s"
    with (
        pytest.raises(DatabaseError, match="UPDATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(raw, [event.pk])
    event.refresh_from_db()
    assert event.verb == "test.event"


def test_the_database_dates_every_event_whatever_the_insert_says(system: Any) -> None:
    (event,) = record(system, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        (clock,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO workflows_auditevent (created_at, actor_type, actor_id, actor_label,"
            " verb, object_type, object_id, payload, payload_sha256, prev_hash, hash)"
            " VALUES ('2001-01-01T00:00:00Z', 'system', '', 'x', 'test.backdated', 'thing', '1',"
            " '{}', '', '', '') RETURNING created_at"
        )
        (stamped,) = cursor.fetchone()
    assert stamped >= clock  # not 2001
    # The saved instance carries the database's time, read back on insert.
    assert AuditEvent.objects.get(pk=event.pk).created_at == event.created_at
    # One multi-row INSERT (one transition's events) is one moment.
    pair = AuditEvent.objects.bulk_create(
        [services.audit.audit_event(actor=system, verb="a", object_type="t", object_id=1)] * 1
        + [services.audit.audit_event(actor=system, verb="b", object_type="t", object_id=1)]
    )
    assert pair[0].created_at == pair[1].created_at


def test_the_sealer_chains_events_keyed_after_one_rekeyed_event(system: Any) -> None:
    events = record(system, 5)
    assert services.audit_backlog() == 5
    assert services.audit_seal() == 6  # the five, after the switch to the key
    assert services.audit_backlog() == 0
    chain = sealed()
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5, 6]
    rekeyed, *rest = chain
    # A fresh chain starts unkeyed, like one from before keys: the rekeyed event is its last
    # unkeyed link, names both keys, and everything after it is keyed.
    assert (rekeyed.verb, rekeyed.key_id, rekeyed.payload) == (
        "audit.rekeyed",
        "",
        {"from": "", "to": "test"},
    )
    assert rekeyed.hash == sha256_hex(GENESIS_HASH + canonical_json(rekeyed.chain_fields()))
    assert [e.pk for e in rest] == [e.pk for e in events]
    assert {e.key_id for e in rest} == {"test"}
    for before, after in itertools.pairwise(chain):
        assert after.prev_hash == before.hash
    first = rest[0]
    fields = first.chain_fields()
    assert fields["key_id"] == "test" and fields["sealed_at"] == first.sealed_at.isoformat()
    assert first.hash == auditchain.link_hash(rekeyed.hash, fields, KEY[1].encode())
    assert first.hash != sha256_hex(rekeyed.hash + canonical_json(fields))
    # The payload enters the chain only as its digest.
    assert fields["payload_sha256"] == sha256_hex(canonical_json({"i": 0}))
    assert "payload" not in fields
    more = record(system, 2)
    assert services.audit_seal() == 2
    assert [e.seq for e in AuditEvent.objects.filter(pk__in=[m.pk for m in more])] == [7, 8]
    report = services.audit_verify()
    assert report.ok and report.checked == 8 and report.last_seq == 8


def test_events_chained_before_keys_still_verify(system: Any) -> None:
    """A chain sealed unkeyed (as before migration 0009) is continued, not re-sealed."""
    legacy = record(system, 3)
    prev = GENESIS_HASH
    with connection.cursor() as cursor:
        for seq, event in enumerate(legacy, 1):
            event.seq = seq
            link = sha256_hex(prev + canonical_json(event.chain_fields()))
            cursor.execute(
                "UPDATE workflows_auditevent SET seq = %s, prev_hash = %s, hash = %s,"
                " sealed_at = now() WHERE id = %s",
                [seq, prev, link, event.pk],
            )
            prev = link
    record(system, 2)
    assert services.audit_seal() == 3
    chain = sealed()
    assert [(e.seq, e.key_id, e.verb) for e in chain[2:]] == [
        (3, "", "test.event"),
        (4, "", "audit.rekeyed"),
        (5, "test", "test.event"),
        (6, "test", "test.event"),
    ]
    assert chain[3].prev_hash == prev
    assert services.audit_verify().checked == 6


def test_a_rotation_writes_a_rekeyed_event_sealed_with_the_old_key(
    system: Any, settings: Any
) -> None:
    record(system, 2)
    services.audit_seal()
    settings.HITL_AUDIT_KEYS = [("next", "the-next-audit-key-000"), KEY]
    record(system, 2)
    assert services.audit_seal() == 3
    chain = sealed()
    assert [(e.verb, e.key_id) for e in chain[3:]] == [
        ("audit.rekeyed", "test"),
        ("test.event", "next"),
        ("test.event", "next"),
    ]
    assert chain[3].payload == {"from": "test", "to": "next"}
    assert services.audit_verify().checked == 6
    # The old key must stay listed to verify what it sealed.
    settings.HITL_AUDIT_KEYS = [("next", "the-next-audit-key-000")]
    report = services.audit_verify()
    assert (report.ok, report.kind, report.seq) == (False, "altered", 2)
    assert "HITL_AUDIT_KEYS does not list" in report.problem


def test_the_sealer_refuses_to_rotate_away_from_a_key_it_no_longer_has(
    system: Any, settings: Any
) -> None:
    record(system, 1)
    services.audit_seal()
    settings.HITL_AUDIT_KEYS = [("next", "the-next-audit-key-000")]
    record(system, 1)
    with pytest.raises(ImproperlyConfigured, match="'test', which HITL_AUDIT_KEYS no longer"):
        services.audit_seal()
    assert services.audit_backlog() == 1  # nothing half-sealed, no rekeyed event left behind


def test_sealing_in_batches_keeps_the_chain(system: Any) -> None:
    record(system, 7)
    assert services.audit_seal(batch_size=3) == 8
    assert services.audit_verify().checked == 8
    # One call is one seal: every batch carries its time, the checkpoint's.
    assert len({e.sealed_at for e in sealed()}) == 1


def test_a_sealed_event_cannot_be_resealed(system: Any) -> None:
    record(system, 1)
    services.audit_seal()
    with pytest.raises(DatabaseError, match="UPDATE refused"), transaction.atomic():
        AuditEvent.objects.update(seq=99)
    with pytest.raises(DatabaseError, match="UPDATE refused"), transaction.atomic():
        AuditEvent.objects.update(key_id="other")


def test_a_concurrent_sealer_holding_the_lock_makes_seal_a_no_op(system: Any) -> None:
    record(system, 2)
    other = connections.create_connection("default")  # another session: another sealer
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [0x6869746C, 0x7365616C])
        assert services.audit_seal() == 0
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [0x6869746C, 0x7365616C])
    finally:
        other.close()
    assert services.audit_seal() == 3


def test_each_seal_publishes_a_signed_checkpoint(
    system: Any, checkpoints: Path, caplog: Any
) -> None:
    assert services.audit_seal() == 0
    assert not checkpoints.exists()  # nothing sealed, nothing published
    record(system, 2)
    with caplog.at_level(logging.INFO, logger="hitl.audit.checkpoint"):
        services.audit_seal()
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "hitl.audit.checkpoint"]
    (line,) = checkpoints.read_text().splitlines()
    assert logged == line
    head = sealed()[-1]
    body = json.loads(line)
    assert (body["seq"], body["hash"], body["key_id"]) == (3, head.hash, "test")
    assert body["time"] == head.sealed_at.isoformat()
    latest = auditchain.checkpoint_latest(checkpoints)
    assert latest is not None and (latest.seq, latest.hash) == (3, head.hash)
    record(system, 1)
    services.audit_seal()
    assert [json.loads(x)["seq"] for x in checkpoints.read_text().splitlines()] == [3, 4]


def test_a_torn_last_checkpoint_line_is_skipped_and_a_forged_one_refused(
    system: Any, checkpoints: Path
) -> None:
    record(system, 1)
    services.audit_seal()
    good = checkpoints.read_text()
    checkpoints.write_text(good + '{"seq": 9, "ha')  # a crash mid-append
    latest = auditchain.checkpoint_latest(checkpoints)
    assert latest is not None and latest.seq == 2
    forged = json.loads(good)
    forged["seq"] = 1
    checkpoints.write_text(good + json.dumps(forged) + "\n")
    with pytest.raises(CheckpointError, match="forged signature"):
        auditchain.checkpoint_latest(checkpoints)
    forged["key_id"] = "nobody"
    checkpoints.write_text(json.dumps(forged) + "\n")
    with pytest.raises(CheckpointError, match="'nobody', which HITL_AUDIT_KEYS does not list"):
        auditchain.checkpoint_latest(checkpoints)
    checkpoints.write_text("not json\n")
    with pytest.raises(CheckpointError, match="not a checkpoint line"):
        auditchain.checkpoint_latest(checkpoints)
    checkpoints.write_text("\n")
    assert auditchain.checkpoint_latest(checkpoints) is None


def test_only_the_end_of_a_long_checkpoint_file_is_read(system: Any, checkpoints: Path) -> None:
    record(system, 1)
    services.audit_seal()
    line = checkpoints.read_text()
    checkpoints.write_text("old and unreadable\n" * 5000 + line * 400)  # well over 64 KiB
    latest = auditchain.checkpoint_latest(checkpoints)
    assert latest is not None and latest.seq == 2


def test_an_unreadable_checkpoint_file_cannot_be_trusted(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        auditchain.checkpoint_latest(tmp_path)  # a directory


def test_the_backlog_counts_unsealed_events(system: Any) -> None:
    assert services.audit_backlog() == 0
    record(system, 3)
    assert services.audit_backlog() == 3


def test_verify_walks_in_batches(system: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(sys.modules["workflows.services.audit_verify"], "VERIFY_BATCH", 2)
    record(system, 6)
    services.audit_seal()
    assert services.audit_verify().checked == 7
    assert services.audit_verify(since=4).checked == 3


@pytest.mark.parametrize(
    ("keys", "key", "debug", "expected"),
    [
        (
            "a:0123456789abcdef, b:fedcba9876543210:x",
            "",
            False,
            [
                ("a", "0123456789abcdef"),
                ("b", "fedcba9876543210:x"),
            ],
        ),
        ("", "0123456789abcdef", False, None),
        ("", "", True, [("insecure-dev", "insecure-development-audit-key-do-not-use")]),
    ],
)
def test_audit_keys_come_from_the_environment(
    keys: str, key: str, debug: bool, expected: Any
) -> None:
    parsed = parse_audit_keys(keys, key, debug)
    if expected is None:
        ((ident, secret),) = parsed
        assert ident.startswith("k") and len(ident) == 9 and secret == key
        assert parse_audit_keys("", "another-secret-of-16", False)[0][0] != ident
    else:
        assert parsed == expected


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("", "HITL_AUDIT_KEYS \\(or HITL_AUDIT_KEY\\) must be set when DEBUG is off"),
        ("a b:0123456789abcdef", "key id 'a b' must be"),
        (":0123456789abcdef", "key id '' must be"),
        ("a:0123456789abcdef,a:0123456789abcdeg", "'a' is listed twice"),
        ("a:short", "shorter than 16 characters"),
    ],
)
def test_bad_audit_keys_stop_the_settings(keys: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_audit_keys(keys, "", False)


def test_events_created_after_the_seal_before_them_pass_with_no_slack(
    system: Any, settings: Any
) -> None:
    record(system, 1)
    services.audit_seal()
    record(system, 1)
    services.audit_seal()
    settings.HITL_AUDIT_BACKDATE_SLACK = timedelta(0)
    assert services.audit_verify().ok


@pytest.mark.parametrize("key_id", ["", "test"])
def test_the_fast_link_writes_exactly_the_canonical_chain_fields(key_id: str) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    fields = {
        "seq": 12,
        "id": 34,
        "created_at": now,
        "actor_type": "user",
        "actor_id": "7",
        "actor_label": 'Zoë "the reviewer" \\ \n\u2028 \x01',
        "verb": "review.decided",
        "object_type": "review_task",
        "object_id": "9",
        "payload_sha256": "ab" * 32,
        "key_id": key_id,
        "sealed_at": now.replace(microsecond=0),
    }
    secret = b"test-only-audit-key" if key_id else None
    canonical = "f" * 64 + canonical_json(auditchain.chain_fields(**fields))
    expected = auditchain.link_hash("f" * 64, auditchain.chain_fields(**fields), secret)
    if secret is None:
        assert expected == sha256_hex(canonical)  # the unkeyed link is the old one
    assert auditchain.link("f" * 64, secret, *fields.values()) == expected
