"""Redaction for retention: a sealed event's payload is blanked and marked, the chain still
verifies (it holds the payload's digest, not the payload), and the redaction is an event.

The application's role cannot rewrite a payload; it may call the one database function that
does only this (`hitl_audit_redact`). Anything else done to a payload is still caught.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, connections
from django.db.utils import DatabaseError

from tests.helpers import require_runtime_role
from tests.test_audit_attacks import _setup, owner, sealed_chain  # noqa: F401 (_setup: autouse)
from workflows import services
from workflows.errors import InvalidInput
from workflows.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "runtime"])

require_runtime_role()


def test_a_redacted_payload_is_blanked_marked_audited_and_the_chain_verifies(
    system: Any,
) -> None:
    events = sealed_chain(system)
    target = events[2]
    assert target.payload == {"i": 1}

    redacted = services.audit_redact(event_ids=[target.pk], actor=system, reason="GDPR erasure")

    assert redacted == 1
    target.refresh_from_db()
    assert target.payload == {"redacted": True} and target.redacted_at is not None
    [event] = AuditEvent.objects.filter(verb="audit.redacted")
    assert event.payload == {"events": [target.pk], "reason": "GDPR erasure"}
    services.audit_seal()
    report = services.audit_verify()
    assert report.ok, report
    # Redacting again changes nothing and writes no second event.
    assert services.audit_redact(event_ids=[target.pk], actor=system, reason="again") == 0
    assert AuditEvent.objects.filter(verb="audit.redacted").count() == 1


def test_a_redacted_decision_event_keeps_its_ids_and_the_decision_check_holds(
    system: Any,
) -> None:
    services.audit_record(
        actor=system,
        verb="review.decided",
        object_type="review_task",
        object_id=7,
        payload={"run": 3, "decision": 9, "reason": "personal data", "action": "approve"},
    )
    services.audit_seal()
    target = AuditEvent.objects.get(verb="review.decided")
    services.audit_redact(event_ids=[target.pk], actor=system, reason="erasure")
    target.refresh_from_db()
    assert target.payload == {"redacted": True, "run": 3, "decision": 9}


def test_the_runtime_role_redacts_only_through_the_function(system: Any) -> None:
    events = sealed_chain(system, n=2)
    with connections["runtime"].cursor() as cursor:
        cursor.execute("SELECT hitl_audit_redact(%s)", [events[1].pk])
        assert cursor.fetchone() == (True,)
        with pytest.raises(DatabaseError, match="permission denied"):
            cursor.execute(
                "UPDATE workflows_auditevent SET payload = '{}' WHERE id = %s", [events[2].pk]
            )
    connections["runtime"].close()


def test_unsealed_events_and_redaction_records_are_not_redacted(system: Any) -> None:
    waiting = services.audit_record(actor=system, verb="test.event", payload={"x": 1})
    with connection.cursor() as cursor:
        cursor.execute("SELECT hitl_audit_redact(%s)", [waiting.pk])
        assert cursor.fetchone() == (False,)
    services.audit_seal()
    services.audit_redact(event_ids=[waiting.pk], actor=system, reason="r")
    services.audit_seal()
    record = AuditEvent.objects.get(verb="audit.redacted")
    with pytest.raises(InvalidInput, match="audit"):
        services.audit_redact(event_ids=[record.pk], actor=system, reason="r")
    with pytest.raises(InvalidInput, match="no audit event"):
        services.audit_redact(event_ids=[10**9], actor=system, reason="r")
    with pytest.raises(InvalidInput, match="reason"):
        services.audit_redact(event_ids=[waiting.pk], actor=system, reason=" ")


def test_a_payload_rewritten_under_the_redaction_mark_is_caught(system: Any) -> None:
    events = sealed_chain(system, n=3)
    services.audit_redact(event_ids=[events[1].pk], actor=system, reason="erasure")
    services.audit_seal()
    with owner() as cursor:
        cursor.execute(
            'UPDATE workflows_auditevent SET payload = \'{"redacted": true, "i": 5}\''
            " WHERE id = %s",
            [events[1].pk],
        )
    report = services.audit_verify()
    assert (report.ok, report.kind, report.seq) == (False, "altered", events[1].seq)


def test_a_redaction_mark_no_redaction_event_names_is_caught(system: Any) -> None:
    events = sealed_chain(system, n=3)
    with owner() as cursor:
        cursor.execute(
            "UPDATE workflows_auditevent SET payload = '{\"redacted\": true}',"
            " redacted_at = now() WHERE id = %s",
            [events[2].pk],
        )
    report = services.audit_verify()
    assert (report.ok, report.kind, report.seq) == (False, "altered", events[2].seq)
    assert "no audit.redacted event" in report.problem


def test_the_command_redacts_and_refuses_clearly(system: Any) -> None:
    from django.core.management import CommandError, call_command

    events = sealed_chain(system, n=2)
    out = __import__("io").StringIO()
    call_command("audit", "redact", "--event", str(events[1].pk), "--reason", "erasure", stdout=out)
    assert out.getvalue().strip() == "redacted 1 events"
    with pytest.raises(CommandError, match="no audit event 999999"):
        call_command("audit", "redact", "--event", "999999", "--reason", "erasure")
