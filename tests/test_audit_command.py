"""`manage.py audit verify|seal`, and the daily incremental verification with its alert."""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from hitl.celery import _beat_schedule
from tests.factories import UserFactory
from workflows import services
from workflows.models import AuditVerification
from workflows.tasks import audit_verify_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _setup(settings: Any, tmp_path: Path) -> None:
    settings.HITL_AUDIT_KEYS = [("test", "test-only-audit-key")]
    settings.HITL_AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")


def record(system: Any, n: int) -> None:
    for i in range(n):
        services.audit_record(actor=system, verb="test.event", object_type="thing", object_id=i)


def audit(*args: str) -> str:
    out = StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


def tamper(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE workflows_auditevent DISABLE TRIGGER ALL")
        cursor.execute(sql)
        cursor.execute("ALTER TABLE workflows_auditevent ENABLE TRIGGER ALL")


def test_seal_then_verify(system: Any) -> None:
    record(system, 4)
    assert audit("seal") == "sealed 5 events\n"
    assert audit("verify") == "audit chain ok: 5 events verified (up to seq 5)\n"
    assert audit("verify", "--since", "3") == "audit chain ok: 2 events verified (up to seq 5)\n"


def test_verify_exits_1_naming_the_first_broken_link(system: Any) -> None:
    record(system, 4)
    audit("seal")
    tamper("UPDATE workflows_auditevent SET actor_label = 'someone else' WHERE seq = 3")
    tamper("DELETE FROM workflows_auditevent WHERE seq = 5")
    with pytest.raises(CommandError) as failed:
        audit("verify")
    assert failed.value.returncode == 1
    assert str(failed.value) == (
        "audit chain broken at seq 3 (altered): its fields no longer give its hash"
        " (or the key differs)"
    )


def test_verify_checks_a_checkpoint_file_given_to_it(
    system: Any, settings: Any, tmp_path: Path
) -> None:
    record(system, 2)
    audit("seal")
    kept = tmp_path / "copied-elsewhere.jsonl"
    kept.write_text(Path(settings.HITL_AUDIT_CHECKPOINT_FILE).read_text())
    settings.HITL_AUDIT_CHECKPOINT_FILE = None
    tamper("DELETE FROM workflows_auditevent WHERE seq = 3")
    assert audit("verify").startswith("audit chain ok: 2 events")  # nothing to compare with
    with pytest.raises(CommandError, match=r"seq 3 \(truncated\): the chain ends at seq 2"):
        audit("verify", "--checkpoint", str(kept))


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--checkpoint", "missing.jsonl"], None, "no checkpoint file at"),
        (["--checkpoint", "{path}"], "garbage\n", "cannot be trusted: not a checkpoint line"),
        (["--since", "-1"], None, "--since must be 0 or more"),
    ],
)
def test_verify_exits_2_when_it_cannot_verify(
    tmp_path: Path, args: list[str], content: str | None, message: str
) -> None:
    path = tmp_path / "given.jsonl"
    if content is not None:
        path.write_text(content)
    args = [a.format(path=path) if a != "missing.jsonl" else str(tmp_path / a) for a in args]
    with pytest.raises(CommandError, match=message) as failed:
        audit("verify", *args)
    assert failed.value.returncode == 2


def test_verify_since_an_event_that_is_gone_is_truncated(system: Any) -> None:
    with pytest.raises(CommandError, match=r"seq 7 \(truncated\): event 7 no longer exists"):
        audit("verify", "--since", "7")


def test_the_daily_verification_is_incremental_and_recorded(system: Any) -> None:
    assert "verify-audit" in _beat_schedule()
    record(system, 3)
    services.audit_seal()
    assert audit_verify_task() is True
    first = AuditVerification.objects.get()
    assert (first.first_seq, first.last_seq, first.checked, first.ok) == (0, 4, 4, True)
    record(system, 2)
    services.audit_seal()
    assert audit_verify_task() is True
    second = AuditVerification.objects.first()
    assert second is not None
    assert (second.first_seq, second.last_seq, second.checked) == (4, 6, 2)


def test_a_failed_verification_logs_an_error_and_emails_the_superusers(
    system: Any, caplog: Any, django_capture_on_commit_callbacks: Any
) -> None:
    UserFactory(username="root", email="root@example.com", is_superuser=True)
    UserFactory(username="staff", email="staff@example.com")
    record(system, 3)
    services.audit_seal()
    audit_verify_task()
    # Rewritten after it was verified: the next run starts from there and says so.
    tamper("UPDATE workflows_auditevent SET hash = repeat('a', 64) WHERE seq = 4")
    with (
        caplog.at_level(logging.ERROR),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert audit_verify_task() is False
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == (
        "audit chain broken at seq 4 (altered): event 4 changed since it was verified"
    )
    (message,) = mail.outbox
    assert message.to == ["root@example.com"]
    assert "event 4 changed since it was verified" in message.body
    failed = AuditVerification.objects.first()
    assert failed is not None and not failed.ok and "altered" in failed.problem
    # The next run starts again from the last good verification, and fails again.
    assert audit_verify_task() is False


def test_an_untrustworthy_checkpoint_fails_the_daily_verification(
    system: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    record(system, 1)
    services.audit_seal()
    path = Path(settings.HITL_AUDIT_CHECKPOINT_FILE)
    line = json.loads(path.read_text())
    line["seq"] = 1
    path.write_text(json.dumps(line) + "\n")
    with django_capture_on_commit_callbacks(execute=True):
        assert audit_verify_task() is False
    failed = AuditVerification.objects.get()
    assert "(checkpoint): checkpoint seq 1 has a forged signature" in failed.problem


def test_with_no_superuser_to_email_the_failure_is_still_logged(
    system: Any, caplog: Any, django_capture_on_commit_callbacks: Any
) -> None:
    UserFactory(username="staff", email="staff@example.com")
    record(system, 1)
    services.audit_seal()
    tamper("DELETE FROM workflows_auditevent WHERE seq = 1")
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        assert audit_verify_task() is False
    messages = [r.getMessage() for r in caplog.records]
    assert "no superuser to notify: audit chain broken at seq 2 (deleted)" in messages[-1]
    assert mail.outbox == []
