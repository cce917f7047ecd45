"""One way to raise an alert: an ERROR line with structured fields, an email to the people
who can act, and a counter, de-duplicated so a stuck condition does not mail every sweep.

Who is told: the workflow's admins, or the superusers for an alert about no one workflow.
An alert is one row per condition (kind, workflow, key). Raising it again within
HITL_ALERT_DEDUP_SECONDS of the last email only counts it and logs a WARNING; the next email
after the window says how many raises it stood for. The row is written, and the email sent
(on commit), in the caller's transaction: a rolled-back change raises nothing.

Raised today by: a failed audit verification (`audit_verify_failed`), a callback delivery out
of attempts (`delivery_failed`), a step parked as failed at its attempts cap
(`step_parked`), and a step sweep that finds beat was silent too long (`beat_stalled`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workflows import instruments, notifications
from workflows.models import Alert, JobMark, Workflow

logger = logging.getLogger("hitl.alerts")


def alert_raise(
    *,
    kind: str,
    message: str,
    workflow: Workflow | None = None,
    details: dict[str, Any] | None = None,
    key: str = "",
    subject: str = "",
    advice: str = "",
    now: datetime | None = None,
) -> bool:
    """Record and report an alert; True when this raise sent the email (not de-duplicated).

    `message` is the log line and the email's first paragraph; `subject` the email's subject
    (default: the kind and workflow); `advice` what to do, appended to the email; `key`
    separates conditions of one kind and workflow that must each be told (default: none).
    """
    now = now or timezone.now()
    details = details or {}
    with transaction.atomic():
        Alert.objects.bulk_create(
            [Alert(kind=kind, workflow=workflow, key=key, message=message, first_raised_at=now)],
            ignore_conflicts=True,
        )
        alert = Alert.objects.select_for_update().get(kind=kind, workflow=workflow, key=key)
        last = alert.notified_at
        notify = last is None or not timedelta(0) <= now - last < settings.HITL_ALERT_DEDUP
        stood_for = alert.suppressed
        alert.raised += 1
        alert.last_raised_at = now
        alert.message = message
        alert.details = details
        if notify:
            alert.notified_at = now
            alert.suppressed = 0
        else:
            alert.suppressed += 1
        alert.save()
        fields = {
            "alert_kind": kind,
            "alert_id": alert.pk,
            "workflow": workflow.slug if workflow else None,
            "alert_details": details,
            "alert_notified": notify,
        }
        # Counted with the log line, at the raise (like it, even if the caller rolls back).
        instruments.ALERTS.labels(kind).inc()
        if not notify:
            logger.warning(
                "%s (alert %s raised again; emailed at %s, %s raises since)",
                message,
                kind,
                last.isoformat() if last else "-",
                alert.suppressed,
                extra=fields,
            )
            return False
        logger.error("%s", message, extra=fields)
        where = f" of {workflow.slug}" if workflow else ""
        text = message + (f"\n\n{advice}" if advice else "")
        if stood_for:
            text += f"\n\nRaised {stood_for} more times since the last email about it."
        notifications.notify_alert(workflow, f"[hitl] {subject or f'Alert {kind}{where}'}", text)
    return True


def beat_gap_check(*, name: str = "steps_sweep", now: datetime | None = None) -> timedelta | None:
    """Note that the periodic job `name` runs now; alert when its last run was longer ago
    than HITL_HEALTH_BEAT_STALE_SECONDS (beat was stopped or stuck). Returns the gap alerted.

    This notices a stall when beat comes back: `/readyz` and the `hitl_beat_age_seconds`
    gauge see it while it lasts.
    """
    now = now or timezone.now()
    window = timedelta(seconds=settings.HITL_HEALTH_BEAT_STALE_SECONDS)
    with transaction.atomic():
        JobMark.objects.bulk_create([JobMark(name=name, last_at=now)], ignore_conflicts=True)
        mark = JobMark.objects.select_for_update().get(name=name)
        gap = now - mark.last_at
        if gap < timedelta(0):
            return None  # an older run committing late: keep the newest mark
        mark.last_at = now
        mark.save(update_fields=["last_at"])
        if gap <= window:
            return None
        alert_raise(
            kind="beat_stalled",
            message=(
                f"beat was silent for {gap.total_seconds():.0f} s: {name} last ran at"
                f" {(now - gap).isoformat()} (window {window.total_seconds():g} s)"
            ),
            details={"job": name, "gap_seconds": gap.total_seconds()},
            subject="Beat was stalled",
            advice="Scheduled sweeps, seals and verifications did not run meanwhile; check the"
            " beat process and its logs. They have resumed.",
            now=now,
        )
    return gap
