"""Deciding review tasks: approve, reject, edit-and-approve, escalate, once.

Locking order, everywhere: the run row, then the task row. Deciding locks the run (as
recording, resuming and cancelling do), so two decisions on one task serialise and the
second finds the task decided. Anything that inserts a task also holds the run first: the
insert's foreign-key check would otherwise wait on a decision holding the run while the
decision waits on the task.

A decision is validated before anything is written, and everything it writes (the claim it
may take, the decision, the task, the resumed run) commits together or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema
from django.db import transaction
from django.utils import timezone

from workflows.access import access_task_decide
from workflows.canonical import stored_json_digest
from workflows.errors import InvalidInput
from workflows.models import AuditEvent, Decision, Event, ReviewTask, Run
from workflows.models.review import REVIEW_ACTIONS
from workflows.selectors import task_shown
from workflows.services.audit import Actor, audit_event
from workflows.services.callbacks import task_event
from workflows.services.review.claims import check_holds, check_live, claim_take
from workflows.services.review.quorum import quorum_settle
from workflows.services.review.tasks import review_task_escalate
from workflows.services.runs import run_resume
from workflows.storable import json_problem
from workflows.versions import step_output_schema

# An edited output is stored as JSON and shown on the desk: bounded, so a pasted document
# or a deeply nested value is refused with a message instead of exhausting anything.
MAX_EDIT_DEPTH = 32
MAX_EDIT_CHARS = 100_000


def review_decide(
    *,
    task: ReviewTask,
    user: Any,
    action: str,
    reason: str = "",
    output: Any = None,
    claim: bool = False,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Decision:
    """Decide a task one holds a live claim on: approve, reject, edit (and approve), escalate.

    With `claim`, a task nobody else holds is claimed in the same transaction first, so a
    decision that fails leaves no claim behind. Approve, edit and reject complete the gate
    through `run_resume` with the final output (the AI's, the edit, or none for a
    rejection); the guarded step is never changed. Escalate hands the task to the escalation
    level and the run keeps waiting. `actor` is how the audit trail names `user` (the API
    names the token too).
    """
    now = now or timezone.now()
    declared = REVIEW_ACTIONS.get(action)
    if declared is None:
        allowed = ", ".join(REVIEW_ACTIONS)
        raise InvalidInput(f"unknown action {action!r}: choose one of {allowed}")
    reason = _clean_text(reason or "", "the reason").strip()
    if declared.needs_reason and not reason:
        raise InvalidInput(f"a reason is required to {declared.label.lower()}")
    if len(reason) > Decision.MAX_REASON:
        raise InvalidInput(f"the reason is too long (at most {Decision.MAX_REASON} characters)")
    if action != Decision.Action.EDIT and output is not None:
        raise InvalidInput("only edit takes an output; approve keeps the AI's answer")
    if action == Decision.Action.EDIT:
        _check_json(output)
    access_task_decide(user=user, task=task)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=task.run_id)
        task = (
            ReviewTask.objects.select_for_update(of=("self",))
            .select_related("workflow", "step_run", "guarded", "claimed_by", "assignee")
            .get(pk=task.pk)
        )
        check_live(task)
        if action == Decision.Action.ESCALATE and task.audience == ReviewTask.Audience.ESCALATION:
            raise InvalidInput(
                f"task {task.pk} is already escalated and escalation is one level deep:"
                " approve, edit or reject it"
            )
        edited = _edited_output(task, run, output) if action == Decision.Action.EDIT else None
        if claim and not task.held_by(user.pk, now):
            claim_take(task, user, now, actor=actor)
        check_holds(task, user, now)
        assert task.claimed_at is not None
        decision = Decision.objects.create(
            task=task,
            reviewer=user,
            action=action,
            edited_output=edited,
            reason=reason,
            shown=task_shown(task),
            claimed_at=task.claimed_at,
            decided_at=now,
            time_spent=now - task.claimed_at,
        )
        actor = actor or Actor.for_user(user)
        escalating = action == Decision.Action.ESCALATE
        task.status = ReviewTask.Status.ESCALATED if escalating else ReviewTask.Status.DECIDED
        task.closed_at = now
        task.claim_expires_at = None
        task.save(update_fields=["status", "closed_at", "claim_expires_at"])
        events = [
            audit_event(
                actor=actor, verb="review.decided", target=task, payload=_decided(run, decision)
            )
        ]
        if task.seat:
            # A seat of a quorum: its group settles the gate, or escalates, together.
            quorum_settle(
                task=task, run=run, decision=decision, actor=actor, now=now, events=events
            )
            return decision
        if escalating:
            # The escalation's own events go with this one, in one statement.
            review_task_escalate(
                task=task,
                run=run,
                reason="escalated",
                actor=actor,
                now=now,
                events=events,
                decision=decision,
            )
        AuditEvent.objects.bulk_create(events)
        if escalating:
            return decision
        outcome, output = _final(task, decision)
        task_event(task=task, event=Event.TASK_DECIDED, now=now, decision=decision, output=output)
        _resume(task, run, decision, outcome, output, actor, now)
    return decision


def _decided(run: Run, decision: Decision) -> dict[str, Any]:
    """The review.decided payload: the decision itself, not only a pointer to its row, so the
    verifier can prove the row unchanged (services/audit_verify.py)."""
    payload = {
        "run": run.pk,
        "decision": decision.pk,
        "reviewer": decision.reviewer_id,
        "action": decision.action,
        "reason": decision.reason,
        "edited_output": decision.edited_output,
        "shown_sha256": stored_json_digest(decision.shown),
    }
    # The gate's final output, when this decision settles it. An escalation does not, and
    # neither does a quorum seat's answer: its group settles the gate, or escalates.
    if decision.action != Decision.Action.ESCALATE and not decision.task.seat:
        payload["output"] = _final(decision.task, decision)[1]
    return payload


def _edited_output(task: ReviewTask, run: Run, output: Any) -> Any:
    if output is None:
        raise InvalidInput("edit needs the edited output")
    guarded = task.guarded
    schema = step_output_schema(run.version_id, guarded.step_id) if guarded else None
    if schema is None:
        if not isinstance(output, dict):
            raise InvalidInput("the edited output must be a JSON object")
    else:
        errors = sorted(
            jsonschema.Draft202012Validator(schema).iter_errors(output),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            problems = "; ".join(
                f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in errors
            )
            raise InvalidInput(f"the edited output does not match the output schema: {problems}")
    if guarded is not None and output == guarded.output:
        raise InvalidInput("the edited output is the AI's answer unchanged: approve it instead")
    return output


def _check_json(value: Any) -> None:
    problem = json_problem(value, max_depth=MAX_EDIT_DEPTH, max_chars=MAX_EDIT_CHARS)
    if problem:
        raise InvalidInput(f"the edited output cannot be stored: {problem}")


def _clean_text(text: str, what: str) -> str:
    # PostgreSQL's text and jsonb cannot hold NUL; a browser never sends one on its own.
    if "\x00" in text:
        raise InvalidInput(f"{what} contains a NUL character (\\x00), which cannot be stored")
    return text


def _final(task: ReviewTask, decision: Decision) -> tuple[str, Any]:
    """The gate's outcome and final output after a decision: the AI's answer, the edit, or
    none for a rejection."""
    if decision.action == Decision.Action.REJECT:
        return "rejected", None
    if decision.action == Decision.Action.EDIT:
        return "approved", decision.edited_output
    return "approved", task.guarded.output if task.guarded else None


def _resume(
    task: ReviewTask,
    run: Run,
    decision: Decision,
    outcome: str,
    output: Any,
    actor: Actor,
    now: datetime,
) -> None:
    guarded = task.guarded
    run_resume(
        run=run,
        step_id=task.step_run.step_id,
        actor=actor,
        output=output,
        outcome=outcome,
        # The score the gate judged, kept with the final output for calibration.
        confidence=guarded.confidence if guarded else None,
        meta={
            "review": {
                "task": task.pk,
                "decision": decision.pk,
                "action": decision.action,
                "reviewer": actor.label,
                "decided_at": now.isoformat(),
            }
        },
        now=now,
    )
