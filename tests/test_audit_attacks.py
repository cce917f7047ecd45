"""Attacks on the audit trail, made as the database owner would make them: with the table's
triggers off. Each must be caught by `audit_verify`, naming the first broken link's kind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from workflows import auditchain, services
from workflows.auditchain import ChainBehindCheckpoint
from workflows.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _setup(settings: Any, tmp_path: Path) -> None:
    settings.HITL_AUDIT_KEYS = [("test", "test-only-audit-key")]
    settings.HITL_AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")


@contextmanager
def owner() -> Iterator[Any]:
    """The table's owner turns its triggers off, edits, and turns them back on."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE workflows_auditevent DISABLE TRIGGER ALL")
        try:
            yield cursor
        finally:
            cursor.execute("ALTER TABLE workflows_auditevent ENABLE TRIGGER ALL")


def sealed_chain(system: Any, n: int = 5) -> list[AuditEvent]:
    for i in range(n):
        services.audit_record(
            actor=system, verb="test.event", object_type="thing", object_id=i, payload={"i": i}
        )
    services.audit_seal()
    assert services.audit_verify().ok
    return list(AuditEvent.objects.order_by("seq"))


def broken(kind: str, seq: int | None) -> Any:
    report = services.audit_verify()
    assert not report.ok, report
    assert (report.kind, report.seq) == (kind, seq), report
    return report


def test_deleting_the_last_events_is_caught_by_the_checkpoint(system: Any) -> None:
    sealed_chain(system)  # seq 1 (rekeyed) to 6, checkpoint at 6
    with owner() as cursor:
        cursor.execute("DELETE FROM workflows_auditevent WHERE seq >= 5")
    report = broken("truncated", 5)
    assert "ends at seq 4" in report.problem and "saw seq 6" in report.problem
    # The sealer will not chain new events onto the cut chain (which would hide it behind a
    # new checkpoint).
    services.audit_record(actor=system, verb="test.later", object_type="thing", object_id=9)
    with pytest.raises(ChainBehindCheckpoint, match="event 6 is gone"):
        services.audit_seal()
    assert services.audit_backlog() == 1


def test_deleting_an_event_in_the_middle_is_a_gap(system: Any) -> None:
    sealed_chain(system)
    with owner() as cursor:
        cursor.execute("DELETE FROM workflows_auditevent WHERE seq = 3")
    report = broken("deleted", 4)
    assert report.problem == "events 3 to 3 are missing"


def test_rewriting_an_event_and_rehashing_after_it_without_the_key_is_caught(
    system: Any,
) -> None:
    chain = sealed_chain(system)
    with owner() as cursor:
        cursor.execute("UPDATE workflows_auditevent SET verb = 'forged' WHERE seq = 3")
        # Recompute every later link as an unkeyed chain would: plain SHA-256.
        prev = chain[1].hash
        for event in AuditEvent.objects.filter(seq__gte=3).order_by("seq"):
            link = auditchain.link_hash(prev, event.chain_fields(), None)
            cursor.execute(
                "UPDATE workflows_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                [prev, link, event.pk],
            )
            prev = link
    report = broken("altered", 3)
    assert "no longer give its hash" in report.problem


def test_passing_rewritten_events_off_as_unkeyed_is_caught(system: Any) -> None:
    chain = sealed_chain(system)
    with owner() as cursor:
        prev = chain[1].hash
        for event in AuditEvent.objects.filter(seq__gte=3).order_by("seq"):
            event.key_id = ""
            link = auditchain.link_hash(prev, event.chain_fields(), None)
            cursor.execute(
                "UPDATE workflows_auditevent SET key_id = '', prev_hash = %s, hash = %s"
                " WHERE id = %s",
                [prev, link, event.pk],
            )
            prev = link
    report = broken("altered", 3)
    assert report.problem == "sealed with key '', but the chain here uses key 'test'"


def test_a_changed_payload_is_caught_by_its_digest(system: Any) -> None:
    sealed_chain(system)
    with owner() as cursor:
        cursor.execute("UPDATE workflows_auditevent SET payload = '{\"i\": 99}' WHERE seq = 4")
    assert broken("altered", 4).problem == "its payload does not match its digest"


def test_a_backdated_insert_sealed_by_the_honest_sealer_is_caught(system: Any) -> None:
    chain = sealed_chain(system)
    long_ago = chain[-1].sealed_at - timedelta(days=3)
    with owner() as cursor:
        cursor.execute(
            "INSERT INTO workflows_auditevent (created_at, actor_type, actor_id, actor_label,"
            " verb, object_type, object_id, payload, payload_sha256, prev_hash, hash)"
            " VALUES (%s, 'user', '7', 'someone', 'review.decided', 'review_task', '1', '{}',"
            " %s, '', '')",
            [long_ago, auditchain.payload_digest({})],
        )
    services.audit_seal()  # the sealer cannot tell; the chain remembers when it sealed before
    report = broken("backdated", 7)
    assert "before the seal of" in report.problem


def test_reordering_two_events_is_caught(system: Any) -> None:
    sealed_chain(system)
    with owner() as cursor:
        cursor.execute("UPDATE workflows_auditevent SET seq = -1 WHERE seq = 3")
        cursor.execute("UPDATE workflows_auditevent SET seq = 3 WHERE seq = 4")
        cursor.execute("UPDATE workflows_auditevent SET seq = 4 WHERE seq = -1")
    report = broken("reordered", 3)
    assert report.problem == "it links after event 4, not after event 2"


def test_an_event_inserted_into_the_chain_is_caught(system: Any) -> None:
    chain = sealed_chain(system)
    with owner() as cursor:
        cursor.execute("UPDATE workflows_auditevent SET seq = seq + 100 WHERE seq >= 4")
        cursor.execute("UPDATE workflows_auditevent SET seq = seq - 99 WHERE seq >= 104")
        cursor.execute(
            "INSERT INTO workflows_auditevent (created_at, actor_type, actor_id, actor_label,"
            " verb, object_type, object_id, payload, payload_sha256, seq, prev_hash, hash,"
            " key_id, sealed_at) VALUES (%s, 'system', '', 'x', 'forged', 'thing', '1', '{}',"
            " %s, 4, %s, %s, 'test', %s)",
            [
                chain[2].created_at,
                auditchain.payload_digest({}),
                chain[2].hash,
                "f" * 64,
                chain[2].sealed_at,
            ],
        )
    report = broken("inserted", 4)
    assert report.problem == "the next event links past this one"


def test_an_event_linked_to_nothing_is_caught(system: Any) -> None:
    sealed_chain(system)
    with owner() as cursor:
        cursor.execute("UPDATE workflows_auditevent SET prev_hash = %s WHERE seq = 5", ["e" * 64])
    assert broken("inserted", 5).problem == "it links to no event of the chain"


def test_rewriting_the_whole_chain_is_caught_by_the_checkpoint(system: Any) -> None:
    """Even someone holding the key who rebuilds the chain from the start leaves a head that
    differs from the checkpoint the sealer published."""
    sealed_chain(system)
    with owner() as cursor:
        cursor.execute("UPDATE workflows_auditevent SET verb = 'forged' WHERE seq = 2")
        prev, secret = auditchain.GENESIS_HASH, b"test-only-audit-key"
        for event in AuditEvent.objects.order_by("seq"):
            link = auditchain.link_hash(
                prev, event.chain_fields(), secret if event.key_id else None
            )
            cursor.execute(
                "UPDATE workflows_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                [prev, link, event.pk],
            )
            prev = link
    report = broken("altered", 6)
    assert "differs from the checkpoint" in report.problem
    with pytest.raises(ChainBehindCheckpoint, match="no longer has the hash"):
        services.audit_seal()
