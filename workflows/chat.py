"""Chat messages for Slack-compatible incoming webhooks, from an event's data; no I/O.

A chat endpoint gets `{"text": ...}` in Slack's mrkdwn, with a link to the task on the review
desk. Everything interpolated is escaped (`&`, `<`, `>`), so a reason or an error message can
never forge a link or a mention.
"""

from __future__ import annotations

from typing import Any

from workflows.models.callbacks import Event
from workflows.models.review import REVIEW_ACTIONS


def escape(value: object) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{escape(url)}|{escape(label)}>"


def chat_message(event: str, data: dict[str, Any], *, min_priority: int) -> dict[str, str] | None:
    """The message for `event`, or None when this event is not worth a chat message.

    New tasks below `min_priority` are skipped, and so are tasks opened by an escalation:
    the `task.escalated` message already points at them.
    """
    text = _text(event, data, min_priority)
    return None if text is None else {"text": text}


def _text(event: str, data: dict[str, Any], min_priority: int) -> str | None:
    workflow = f"*{escape(data['workflow']['slug'])}*"
    task = data.get("task")
    if task is not None:
        where = f"task #{task['id']} in {workflow}"
        if event == Event.TASK_CREATED:
            if task["escalated_from"] is not None or task["priority"] < min_priority:
                return None
            due = f", due {escape(task['due_at'])}" if task["due_at"] else ""
            return (
                f"New review {where} (priority {task['priority']}, {escape(task['reason'])}"
                f"{due}): {_link(task['url'], 'open the task')}"
            )
        if event == Event.TASK_SLA_BREACHED:
            return (
                f"Overdue: review {where} passed its due time ({escape(task['due_at'])})"
                f" without a decision: {_link(task['url'], 'open the task')}"
            )
        if event == Event.TASK_ESCALATED:
            successor = task["escalated_to"]
            return (
                f"Escalated: review {where} ({escape(successor['reason'])});"
                f" task #{successor['id']} needs a decision: {_link(successor['url'], 'open it')}"
            )
        if event == Event.TASK_DECIDED:
            decision = data["decision"]
            action = REVIEW_ACTIONS.get(decision["action"])
            done = action.done if action else decision["action"]
            return f"Decided: review {where} was {escape(done)} by {escape(decision['reviewer'])}"
        return None
    run = data["run"]
    if event == Event.RUN_COMPLETED:
        outcome = f" ({escape(run['outcome'])})" if run["outcome"] else ""
        return f"Run {run['id']} of {workflow} completed{outcome}."
    if event == Event.RUN_FAILED:
        return f"Run {run['id']} of {workflow} failed: {escape(run['error'])}"
    if event == Event.RUN_CANCELLED:
        reason = f": {escape(run['error'])}" if run["error"] else ""
        return f"Run {run['id']} of {workflow} was cancelled{reason}"
    return None
