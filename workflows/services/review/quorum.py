"""k-of-m review: settling a gate's quorum after each seat's decision, or on its SLA.

A gate with `quorum: {required: k, of: m}` opens m seats (`ReviewTask.seat` 1..m, grouped by
the gate's StepRun). Each seat is decided as any task is (`decisions.review_decide`), and
then, in the same transaction and under the run's row lock, the group settles here:

- k answers agree (approvals, which give the AI's answer, and edits, compared as canonical
  JSON): the gate passes with that output and the open seats are cancelled;
- any rejection, any escalation, or answers that can no longer reach k agreeing: one
  escalation task opens for the group (its decision is the gate's, as without a quorum),
  with every answer kept in `review.escalated`, and the open seats are cancelled;
- otherwise the gate keeps waiting for the other seats.

Locking order: the run row, the deciding seat, then every seat of the group (in seat order).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from workflows.models import AuditEvent, Decision, Event, ReviewTask, Run
from workflows.selectors_quorum import Answer, quorum_answers
from workflows.services.audit import Actor, audit_event
from workflows.services.callbacks import task_event
from workflows.services.review.claims import seats_locked
from workflows.services.review.tasks import SYSTEM, review_task_escalate
from workflows.services.runs import run_resume

# Why a group's escalation task exists when its answers decided it (rather than a reviewer's
# escalation, "escalated", or its SLA, "sla_breach").
SPLIT = "quorum_split"


def quorum_verdict(answers: list[Answer], *, required: int, open_seats: int) -> str | Answer:
    """ "escalated" (a seat escalated), "split" (a rejection, or k agreeing answers are out
    of reach), "wait", or the first answer of the k that agree."""
    if any(a.action == Decision.Action.ESCALATE for a in answers):
        return "escalated"
    if any(not a.answers for a in answers):
        return "split"
    counts = Counter(a.key for a in answers)
    best, agreeing = counts.most_common(1)[0] if counts else ("", 0)
    if agreeing >= required:
        return next(a for a in answers if a.key == best)
    return "split" if agreeing + open_seats < required else "wait"


def quorum_settle(
    *,
    task: ReviewTask,
    run: Run,
    decision: Decision,
    actor: Actor,
    now: datetime,
    events: list[AuditEvent],
) -> None:
    """Settle `task`'s group after its seat was decided (saved, with its `review.decided` in
    `events`, which are written here); see the module's docstring."""
    quorum = task.step_run.meta["quorum"]
    seats = list(seats_locked(task))
    ai = task.guarded.output if task.guarded else None
    answers = quorum_answers(task.step_run_id, ai)
    open_seats = [s for s in seats if s.status in ReviewTask.LIVE]
    verdict = quorum_verdict(answers, required=quorum["required"], open_seats=len(open_seats))
    if verdict == "wait":
        AuditEvent.objects.bulk_create(events)
        return
    if isinstance(verdict, Answer):
        _cancel(open_seats, run, "quorum_agreed", now, events)
        AuditEvent.objects.bulk_create(events)
        task_event(
            task=task, event=Event.TASK_DECIDED, now=now, decision=decision, output=verdict.output
        )
        agreed = [a.decision for a in answers if a.key == verdict.key]
        _resume(task, run, decision, verdict.output, actor, now, quorum, agreed)
        return
    escalated = verdict == "escalated"
    _escalate(
        task,
        run,
        answers,
        reason="escalated" if escalated else SPLIT,
        # A split is the rule's doing, not the last reviewer's.
        actor=actor if escalated else SYSTEM,
        now=now,
        events=events,
        decision=decision,
    )


def quorum_escalate_overdue(*, task: ReviewTask, run: Run, now: datetime) -> bool:
    """Escalate an overdue seat's whole group (the SLA sweep; run and `task` locked), unless
    a seat is held: as without a quorum, a breach never takes a live claim away."""
    seats = list(seats_locked(task))
    if any(s.claim_live(now) for s in seats):
        return False
    task.status = ReviewTask.Status.ESCALATED
    task.closed_at = now
    task.claimed_by = None
    task.claimed_at = None
    task.claim_expires_at = None
    task.save(update_fields=["status", "closed_at", "claimed_by", "claimed_at", "claim_expires_at"])
    ai = task.guarded.output if task.guarded else None
    events: list[AuditEvent] = []
    answers = quorum_answers(task.step_run_id, ai)
    _escalate(task, run, answers, reason="sla_breach", actor=SYSTEM, now=now, events=events)
    return True


def _escalate(
    task: ReviewTask,
    run: Run,
    answers: list[Answer],
    *,
    reason: str,
    actor: Actor,
    now: datetime,
    events: list[AuditEvent],
    decision: Decision | None = None,
) -> None:
    others = [s for s in seats_locked(task) if s.status in ReviewTask.LIVE and s.pk != task.pk]
    # The seats close before the escalation opens: one live track per gate.
    _cancel(others, run, "quorum_escalated", now, events)
    review_task_escalate(
        task=task,
        run=run,
        reason=reason,
        actor=actor,
        now=now,
        events=events,
        decision=decision,
        answers=[a.as_json() for a in answers],
    )
    AuditEvent.objects.bulk_create(events)


def _cancel(
    seats: list[ReviewTask], run: Run, reason: str, now: datetime, events: list[AuditEvent]
) -> None:
    for seat in seats:
        seat.status = ReviewTask.Status.CANCELLED
        seat.closed_at = now
        seat.claim_expires_at = None
        seat.save(update_fields=["status", "closed_at", "claim_expires_at"])
        events.append(
            audit_event(
                actor=SYSTEM,
                verb="review.cancelled",
                target=seat,
                payload={"run": run.pk, "reason": reason},
            )
        )


def _resume(
    task: ReviewTask,
    run: Run,
    decision: Decision,
    output: Any,
    actor: Actor,
    now: datetime,
    quorum: dict[str, int],
    agreed: list[int],
) -> None:
    guarded = task.guarded
    run_resume(
        run=run,
        step_id=task.step_run.step_id,
        actor=actor,
        output=output,
        outcome="approved",
        # The score the gate judged, kept with the final output for calibration.
        confidence=guarded.confidence if guarded else None,
        meta={
            "review": {
                "task": task.pk,
                "decision": decision.pk,
                # The settling decision's: it gave the agreed output (edits equal to the AI's
                # answer are refused, so an edit here is a change).
                "action": decision.action,
                "reviewer": actor.label,
                "decided_at": now.isoformat(),
                "quorum": {**quorum, "agreed": agreed},
            }
        },
        now=now,
    )
