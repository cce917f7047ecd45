from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from workflows import services
from workflows.canonical import canonical_json, sha256_hex
from workflows.models import AuditEvent
from workflows.services.audit import GENESIS_HASH

pytestmark = pytest.mark.django_db


def record(system: Any, n: int) -> list[AuditEvent]:
    return [
        services.audit_record(
            actor=system, verb="test.event", object_type="thing", object_id=i, payload={"i": i}
        )
        for i in range(n)
    ]


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


def test_the_sealer_chains_events_in_order_with_gap_free_seq(system: Any) -> None:
    events = record(system, 5)
    assert services.audit_seal() == 5
    sealed = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in sealed] == [1, 2, 3, 4, 5]
    assert [e.pk for e in sealed] == [e.pk for e in events]
    assert sealed[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(sealed):
        assert after.prev_hash == before.hash
    first = sealed[0]
    expected = sha256_hex(GENESIS_HASH + canonical_json(first.chain_fields()))
    assert first.hash == expected
    # The payload enters the chain only as its digest.
    assert first.chain_fields()["payload_sha256"] == sha256_hex(canonical_json({"i": 0}))
    assert "payload" not in first.chain_fields()
    more = record(system, 2)
    assert services.audit_seal() == 2
    assert [e.seq for e in AuditEvent.objects.filter(pk__in=[m.pk for m in more])] == [6, 7]
    assert services.audit_verify().ok
    assert services.audit_verify().checked == 7


def test_a_sealed_event_cannot_be_resealed(system: Any) -> None:
    record(system, 1)
    services.audit_seal()
    with pytest.raises(DatabaseError, match="UPDATE refused"), transaction.atomic():
        AuditEvent.objects.update(seq=99)


def test_verify_detects_a_broken_chain(system: Any) -> None:
    record(system, 3)
    services.audit_seal()
    # Someone with superuser rights disables the trigger and edits history.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE workflows_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE workflows_auditevent SET verb = 'forged' WHERE seq = 2")
        cursor.execute("ALTER TABLE workflows_auditevent ENABLE TRIGGER USER")
    report = services.audit_verify()
    assert not report.ok
    assert (report.seq, report.problem) == (2, "hash mismatch")


def test_sealing_in_batches_keeps_the_chain(system: Any) -> None:
    record(system, 7)
    assert services.audit_seal(batch_size=3) == 7
    assert services.audit_verify().checked == 7
