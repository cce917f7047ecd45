"""Sweepers on a controlled clock: lapsed claims, SLA warnings, breaches and escalation,
and the email that goes with them (after commit, never at a decision's expense)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse

from tests.review.conftest import T0, minutes
from workflows import services
from workflows.models import AuditEvent, Decision, ReviewTask, Run, Workflow
from workflows.tasks import review_sweep_task

pytestmark = pytest.mark.django_db

# The task fixture's SLA is 60 minutes, its warning at 45, its claims last 15.
WARN, DUE = T0 + minutes(45), T0 + minutes(60)


class FailingBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Any) -> int:
        raise ConnectionRefusedError("smtp is down")


def sweep(now: Any, capture: Any) -> dict[str, int]:
    with capture(execute=True):
        return services.review_sweep(now=now)


def verbs(task: ReviewTask) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="review_task", object_id=str(task.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


def test_the_sweeper_frees_lapsed_claims(
    task: ReviewTask, reviewer: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    services.review_claim(task=task, user=reviewer, now=T0)
    lapse = T0 + settings.HITL_REVIEW_CLAIM
    assert sweep(lapse - minutes(1), django_capture_on_commit_callbacks)["claims_expired"] == 0
    assert sweep(lapse, django_capture_on_commit_callbacks)["claims_expired"] == 1
    task.refresh_from_db()
    assert (task.status, task.claimed_by, task.claim_expires_at) == ("open", None, None)
    assert "review.claim_expired" in verbs(task)


def test_a_warning_is_recorded_and_sent_once_before_due(
    task: ReviewTask,
    reviewer: User,
    second_reviewer: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    assert sweep(WARN - minutes(1), django_capture_on_commit_callbacks)["warned"] == 0
    assert sweep(WARN, django_capture_on_commit_callbacks)["warned"] == 1
    task.refresh_from_db()
    assert task.warned_at == WARN
    assert "review.sla_warning" in verbs(task)
    # Nobody holds it: the reviewer group hears about it, one message each.
    assert sorted(m.to[0] for m in mail.outbox) == [
        "reviewer@example.com",
        "second@example.com",
    ]
    message = mail.outbox[0]
    assert f"Task {task.pk} (triage) is due at" in message.subject
    # The engine links to the task page the desk really serves (it knows no URLs itself).
    assert f"https://hitl.example.com{reverse('review:task', args=[task.pk])}" in message.body
    assert sweep(WARN + minutes(5), django_capture_on_commit_callbacks)["warned"] == 0
    assert len(mail.outbox) == 2


def test_a_warning_for_a_claimed_task_goes_to_its_holder(
    task: ReviewTask, reviewer: User, second_reviewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    services.review_claim(task=task, user=reviewer, now=WARN - minutes(5))
    sweep(WARN, django_capture_on_commit_callbacks)
    assert [m.to for m in mail.outbox] == [["reviewer@example.com"]]


def test_a_breach_escalates_an_open_task_to_the_escalation_group(
    task: ReviewTask,
    owner: User,
    reviewer: User,
    escalator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    assert sweep(DUE - minutes(1), django_capture_on_commit_callbacks)["escalated"] == 0
    mail.outbox.clear()
    result = sweep(DUE, django_capture_on_commit_callbacks)
    assert (result["breached"], result["escalated"]) == (1, 1)
    task.refresh_from_db()
    assert (task.status, task.breached_at, task.closed_at) == ("escalated", DUE, DUE)
    successor = ReviewTask.objects.get(escalated_from=task)
    assert (successor.audience, successor.reason, successor.status) == (
        "escalation",
        "sla_breach",
        "open",
    )
    assert successor.due_at == DUE + minutes(60)
    assert verbs(task)[-2:] == ["review.sla_breached", "review.escalated"]
    recipients = {m.to[0]: m.subject for m in mail.outbox}
    assert "overdue" in recipients["owner@example.com"]
    assert f"Escalated: task {successor.pk}" in recipients["escalator@example.com"]
    assert "reviewer@example.com" not in recipients
    # The run keeps waiting, now on the escalation group.
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING
    assert services.review_claim_next(user=reviewer, now=DUE) is None
    assert services.review_claim_next(user=escalator, now=DUE) == successor


def test_without_an_escalation_group_a_breach_goes_to_the_admins(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    owner: User,
    reviewer: User,
    escalator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_gate_workflow(escalation=False)
    task = ReviewTask.objects.get(run=start(workflow))
    sweep(DUE, django_capture_on_commit_callbacks)
    successor = ReviewTask.objects.get(escalated_from=task)
    escalated = [m for m in mail.outbox if m.subject.startswith("[hitl] Escalated")]
    assert [m.to for m in escalated] == [["owner@example.com"]]
    assert services.review_claim_next(user=reviewer, now=DUE) is None
    assert services.review_claim_next(user=escalator, now=DUE) is None
    assert services.review_claim_next(user=owner, now=DUE) == successor


def test_a_breach_does_not_take_away_an_active_claim(
    task: ReviewTask,
    owner: User,
    reviewer: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    services.review_claim(task=task, user=reviewer, now=DUE - minutes(5))
    result = sweep(DUE, django_capture_on_commit_callbacks)
    assert (result["breached"], result["escalated"]) == (1, 0)
    task.refresh_from_db()
    assert (task.status, task.claimed_by, task.breached_at) == ("claimed", reviewer, DUE)
    # The holder and the admins are told; the reviewer may still decide.
    overdue = sorted(m.to[0] for m in mail.outbox if "overdue" in m.subject)
    assert overdue == ["owner@example.com", "reviewer@example.com"]
    assert sweep(DUE + minutes(1), django_capture_on_commit_callbacks)["breached"] == 0
    services.review_renew(task=task, user=reviewer, now=DUE + minutes(5))
    decision = services.review_decide(
        task=task, user=reviewer, action="approve", now=DUE + minutes(6)
    )
    assert decision.task.status == ReviewTask.Status.DECIDED


def test_an_overdue_task_whose_claim_lapses_is_escalated_then(
    task: ReviewTask, reviewer: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    services.review_claim(task=task, user=reviewer, now=DUE - minutes(5))
    sweep(DUE, django_capture_on_commit_callbacks)
    lapse = DUE - minutes(5) + settings.HITL_REVIEW_CLAIM
    result = sweep(lapse, django_capture_on_commit_callbacks)
    assert (result["claims_expired"], result["escalated"]) == (1, 1)
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED


def test_a_released_overdue_task_is_escalated_by_the_next_sweep(
    task: ReviewTask, reviewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    services.review_claim(task=task, user=reviewer, now=DUE - minutes(5))
    sweep(DUE, django_capture_on_commit_callbacks)
    services.review_release(task=task, user=reviewer, now=DUE + minutes(1))
    assert sweep(DUE + minutes(2), django_capture_on_commit_callbacks)["escalated"] == 1


def test_an_escalated_task_that_breaches_is_reported_not_escalated_again(
    task: ReviewTask, owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    sweep(DUE, django_capture_on_commit_callbacks)
    successor = ReviewTask.objects.get(escalated_from=task)
    mail.outbox.clear()
    result = sweep(DUE + minutes(60), django_capture_on_commit_callbacks)
    assert (result["breached"], result["escalated"]) == (1, 0)
    successor.refresh_from_db()
    assert (successor.status, successor.breached_at) == ("open", DUE + minutes(60))
    assert [m.to for m in mail.outbox] == [["owner@example.com"]]
    assert ReviewTask.objects.filter(run=task.run).count() == 2


def test_a_task_without_an_sla_is_never_warned_or_escalated(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    django_capture_on_commit_callbacks: Any,
) -> None:
    task = ReviewTask.objects.get(run=start(make_gate_workflow({"threshold": 0.8})))
    result = sweep(T0 + minutes(60 * 24 * 30), django_capture_on_commit_callbacks)
    assert result == {"claims_expired": 0, "warned": 0, "breached": 0, "escalated": 0}
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN


def test_notifications_wait_for_the_commit(
    task: ReviewTask, reviewer: User, escalator: User, django_capture_on_commit_callbacks: Any
) -> None:
    services.review_claim(task=task, user=reviewer, now=T0)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.review_decide(task=task, user=reviewer, action="escalate", reason="policy", now=T0)
    assert mail.outbox == []
    assert callbacks
    for callback in callbacks:
        callback()
    assert [m.to for m in mail.outbox] == [["escalator@example.com"]]


def test_a_failing_email_backend_never_rolls_back_a_decision(
    task: ReviewTask,
    reviewer: User,
    escalator: User,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    services.review_claim(task=task, user=reviewer, now=T0)
    with (
        caplog.at_level(logging.ERROR, logger="workflows.notifications"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        decision = services.review_decide(
            task=task, user=reviewer, action="escalate", reason="policy", now=T0
        )
    assert Decision.objects.filter(pk=decision.pk).exists()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED
    assert ReviewTask.objects.filter(escalated_from=task).exists()
    assert "could not send" in caplog.text
    assert "smtp is down" in caplog.text


def test_the_beat_task_runs_the_review_sweep(task: ReviewTask, settings: Any) -> None:
    from hitl.celery import _beat_schedule

    entry = next(e for e in _beat_schedule().values() if e["task"] == "hitl.review_sweep")
    assert entry["schedule"] == settings.HITL_SWEEP_INTERVAL
    assert review_sweep_task.name == "hitl.review_sweep"
    assert set(review_sweep_task()) == {"claims_expired", "warned", "breached", "escalated"}
