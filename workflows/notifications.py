"""Email about review tasks, failed callbacks and a broken audit trail, sent through Django's
email backend once the change commits.

Recipients and text are worked out inside the caller's transaction; the send happens in an
on-commit callback, so a rolled-back change sends nothing and a failed send (logged) never
undoes a decision that already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import transaction

from workflows.models import Endpoint, ReviewTask, Workflow

logger = logging.getLogger(__name__)


def task_url(task: ReviewTask) -> str:
    # The path comes from the settings: the engine does not know the web faces' URLs.
    return settings.HITL_BASE_URL.rstrip("/") + settings.HITL_REVIEW_TASK_PATH.format(id=task.pk)


def notify_sla_warning(task: ReviewTask) -> None:
    """Whoever holds the task, or its audience if nobody does."""
    recipients = _emails([task.claimed_by]) if task.claimed_by_id else audience_emails(task)
    due = task.due_at.isoformat() if task.due_at else "soon"
    _send_on_commit(
        recipients,
        f"[hitl] Task {task.pk} ({task.workflow.slug}) is due at {due}",
        f"Review task {task.pk} ({task.reason}) is due at {due}.",
        task,
    )


def notify_sla_breached(task: ReviewTask) -> None:
    """The workflow's admins, and the reviewer who still holds the task."""
    users: list[Any] = [*task.workflow.admins.all(), task.claimed_by]
    _send_on_commit(
        _emails(users),
        f"[hitl] Task {task.pk} ({task.workflow.slug}) is overdue",
        f"Review task {task.pk} ({task.reason}) passed its due time without a decision.",
        task,
    )


def notify_escalated(task: ReviewTask) -> None:
    """The escalation level: the escalation group, or the workflow's admins without one."""
    source = task.escalated_from
    why = f" ({task.reason})" if task.reason else ""
    _send_on_commit(
        audience_emails(task),
        f"[hitl] Escalated: task {task.pk} ({task.workflow.slug})",
        f"Task {source.pk if source else '?'} was escalated{why}; task {task.pk} needs a decision.",
        task,
    )


def notify_assigned(task: ReviewTask) -> None:
    _send_on_commit(
        _emails([task.assignee]),
        f"[hitl] Task {task.pk} ({task.workflow.slug}) is assigned to you",
        f"Review task {task.pk} ({task.reason}) was assigned to you.",
        task,
    )


def notify_endpoint_disabled(endpoint: Endpoint) -> None:
    """The workflow's admins: an endpoint stopped receiving callbacks."""
    workflow = endpoint.workflow
    _send_admins_on_commit(
        workflow,
        f"[hitl] Callback endpoint {endpoint.pk} of {workflow.slug} was disabled",
        f"Endpoint {endpoint.pk} ({endpoint.url_shown()}) was disabled:"
        f" {endpoint.disabled_reason}.\nIts pending deliveries were cancelled; enable it and"
        " redeliver them from its delivery log.\n",
    )


def notify_alert(workflow: Workflow | None, subject: str, text: str) -> None:
    """An alert (`workflows.services.alerts`): the workflow's admins, or the superusers."""
    if workflow is not None:
        _send_admins_on_commit(workflow, subject, text)
        return
    recipients = _emails(get_user_model().objects.filter(is_superuser=True))
    if not recipients:
        logger.warning("no superuser to notify: %s", text.partition("\n")[0])
        return
    send_on_commit(recipients, subject, text)


def audience_emails(task: ReviewTask) -> list[str]:
    workflow: Workflow = task.workflow
    if task.audience == ReviewTask.Audience.REVIEWERS:
        group = workflow.reviewer_group
    else:
        group = workflow.escalation_group
    if group is None:
        # Nobody else to tell: the workflow's admins see and decide every task.
        return _emails(workflow.admins.all())
    return _emails(get_user_model().objects.filter(groups=group))


def _emails(users: Iterable[Any]) -> list[str]:
    return sorted({u.email for u in users if u is not None and u.is_active and u.email})


def _send_on_commit(recipients: list[str], subject: str, body: str, task: ReviewTask) -> None:
    if not recipients:
        logger.info("no one to notify about task %s: %s", task.pk, subject)
        return
    send_on_commit(recipients, subject, f"{body}\n\n{task_url(task)}\n")


def _send_admins_on_commit(workflow: Workflow, subject: str, text: str) -> None:
    recipients = _emails(workflow.admins.all())
    if not recipients:
        logger.warning("no admin of %s to notify: %s", workflow.slug, subject)
        return
    send_on_commit(recipients, subject, text)


def send_on_commit(recipients: list[str], subject: str, text: str) -> None:
    """Send `text` to each recipient once the caller's transaction commits."""

    def send() -> None:
        # One message per recipient: reviewers never see each other's addresses.
        messages = [EmailMessage(subject, text, to=[address]) for address in recipients]
        try:
            get_connection().send_messages(messages)
        except Exception:
            logger.exception("could not send %r", subject)

    transaction.on_commit(send)
