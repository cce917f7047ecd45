"""The one alert service: log line, email, counter, de-duplication; and what raises it.

The clock is passed as `now`; the de-duplication window is moved past by moving `now`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone
from prometheus_client import REGISTRY

from tests.factories import UserFactory
from workflows import services
from workflows.models import Alert, JobMark, Run, StepRun, Workflow
from workflows.tasks import steps_sweep_task

T0 = datetime(2031, 5, 6, 7, 0, tzinfo=UTC)


def alerts_counted(kind: str) -> float:
    return REGISTRY.get_sample_value("hitl_alerts_total", {"kind": kind}) or 0.0


@pytest.fixture
def watched(make_workflow: Any) -> Workflow:
    workflow = make_workflow(
        {"slug": "watched", "name": "W", "steps": [{"id": "w", "kind": "wait"}]}
    )
    workflow.admins.add(UserFactory(username="admin", email="admin@example.com"))
    return workflow


def test_an_alert_logs_emails_the_admins_counts_and_is_deduplicated_within_the_window(
    watched: Workflow, settings: Any, caplog: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.HITL_ALERT_DEDUP = timedelta(minutes=30)
    UserFactory(username="root", email="root@example.com", is_superuser=True)
    before = alerts_counted("thing_broke")

    def raise_at(at: datetime) -> bool:
        with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
            return services.alert_raise(
                kind="thing_broke",
                message="the thing broke",
                workflow=watched,
                details={"thing": 7},
                advice="Fix the thing.",
                now=at,
            )

    assert raise_at(T0) is True
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == "the thing broke"
    assert (error.alert_kind, error.workflow, error.alert_details) == (
        "thing_broke",
        "watched",
        {"thing": 7},
    )
    [email] = mail.outbox
    assert email.to == ["admin@example.com"]  # the workflow's admins, not the superusers
    assert email.subject == "[hitl] Alert thing_broke of watched"
    assert "the thing broke" in email.body and "Fix the thing." in email.body

    caplog.clear()
    # Twice more within the window: counted and logged as warnings, not mailed.
    assert raise_at(T0 + timedelta(minutes=10)) is False
    assert raise_at(T0 + timedelta(minutes=29)) is False
    assert len(mail.outbox) == 1
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "raised again" in caplog.records[-1].getMessage()
    # Past the window: mailed again, saying how many raises the silence stood for.
    assert raise_at(T0 + timedelta(minutes=40)) is True
    assert len(mail.outbox) == 2
    assert "Raised 2 more times since the last email" in mail.outbox[1].body

    alert = Alert.objects.get(kind="thing_broke")
    assert (alert.raised, alert.suppressed, alert.notified_at) == (
        4,
        0,
        T0 + timedelta(minutes=40),
    )
    assert alerts_counted("thing_broke") - before == 4


def test_an_alert_about_no_workflow_goes_to_the_superusers_and_keys_separate_conditions(
    watched: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    UserFactory(username="root", email="root@example.com", is_superuser=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.alert_raise(kind="k", message="one", key="a", now=T0)
        assert services.alert_raise(kind="k", message="two", key="b", now=T0)
        assert not services.alert_raise(kind="k", message="one again", key="a", now=T0)
    assert [m.to for m in mail.outbox] == [["root@example.com"], ["root@example.com"]]
    assert Alert.objects.filter(kind="k", workflow=None).count() == 2


def test_a_rolled_back_raise_leaves_no_row_and_sends_nothing(
    watched: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import transaction

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.alert_raise(kind="k", message="m", workflow=watched, now=T0)
        raise RuntimeError
    assert not Alert.objects.exists() and mail.outbox == []


def test_a_step_parked_at_its_attempts_cap_raises_an_alert_to_its_admins(
    make_workflow: Any, system: Any, caplog: Any, django_capture_on_commit_callbacks: Any
) -> None:
    workflow = make_workflow(
        {
            "slug": "parks",
            "name": "P",
            "steps": [{"id": "t", "kind": "transform", "config": {"output": {"v": "1"}}}],
        }
    )
    workflow.admins.add(UserFactory(username="admin", email="admin@example.com"))
    now = timezone.now()
    run = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    StepRun.objects.filter(run=run).update(
        status="running", attempts=5, max_attempts=5, lease_expires_at=now
    )
    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        assert services.steps_sweep(now=now)["parked"] == 1
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    alert = Alert.objects.get(kind="step_parked")
    assert alert.workflow == workflow and alert.details["run"] == run.pk
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "hitl.alerts"]
    assert f"parked step t of run {run.pk}" in error.getMessage()
    [email] = mail.outbox
    assert email.to == ["admin@example.com"] and "worker lost 5 times" in email.body


def test_the_step_sweep_alerts_when_beat_was_silent_too_long(
    db: None, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.HITL_HEALTH_BEAT_STALE_SECONDS = 60.0
    UserFactory(username="root", email="root@example.com", is_superuser=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.beat_gap_check(now=T0) is None  # the first run: nothing to compare
        assert services.beat_gap_check(now=T0 + timedelta(seconds=60)) is None
        gap = services.beat_gap_check(now=T0 + timedelta(seconds=60 + 600))
        # A late run with an older clock does not move the mark back.
        assert services.beat_gap_check(now=T0) is None
    assert gap == timedelta(seconds=600)
    assert JobMark.objects.get(name="steps_sweep").last_at == T0 + timedelta(seconds=660)
    alert = Alert.objects.get(kind="beat_stalled")
    assert alert.workflow is None and alert.details["gap_seconds"] == 600
    [email] = mail.outbox
    assert email.to == ["root@example.com"] and "silent for 600 s" in email.body


def test_the_beat_sent_step_sweep_task_checks_the_gap(db: None) -> None:
    steps_sweep_task()
    assert JobMark.objects.filter(name="steps_sweep").exists()
