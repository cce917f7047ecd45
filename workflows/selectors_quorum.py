"""Reads of k-of-m review (a gate's `quorum`): its seats' answers, and what a viewer may see.

A seat's reviewer must not be anchored by the others: the answers of a group stay hidden from
a viewer until they have decided a seat of it themselves, or the group has settled (no seat
is live any more). The escalation task of a group shows every answer, side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from django.db.models import Q

from workflows.agreement import cohen_kappa, fleiss_kappa
from workflows.canonical import canonical_json
from workflows.models import Decision, ReviewTask, Workflow

# A seat whose claim or decision names its reviewer (the database allows one per reviewer).
SEATED = (ReviewTask.Status.CLAIMED, ReviewTask.Status.DECIDED, ReviewTask.Status.ESCALATED)


@dataclass(frozen=True)
class Answer:
    """One seat's decision: its output is the AI's answer for an approval, the edit for an
    edit, and None for a rejection or an escalation."""

    seat: int
    task: int
    decision: int
    reviewer: str
    action: str
    output: Any
    reason: str
    decided_at: datetime

    @property
    def answers(self) -> bool:
        """Whether this is an answer that can agree with others: an approval or an edit."""
        return self.action in (Decision.Action.APPROVE, Decision.Action.EDIT)

    @property
    def key(self) -> str:
        """What agreement compares: the output as canonical JSON, or the action without one."""
        return canonical_json(self.output) if self.answers else f"<{self.action}>"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "decided_at": self.decided_at.isoformat()}


@dataclass(frozen=True)
class QuorumView:
    """A task's place in its quorum. `seat` is 0 for the group's escalation task; `answers`
    is None while they are hidden from the viewer."""

    seat: int
    of: int
    required: int
    decided: int
    answers: list[Answer] | None


def quorum_of(task: ReviewTask) -> dict[str, int] | None:
    """The gate's quorum ({required, of}) if `task` is one of its seats or its escalation."""
    quorum = task.step_run.meta.get("quorum")
    return quorum if isinstance(quorum, dict) else None


def quorum_answers(step_run_id: int, answer: Any) -> list[Answer]:
    """The answers given on the seats of one gate, by seat; `answer` is the AI's."""
    decisions = (
        Decision.objects.filter(task__step_run_id=step_run_id, task__seat__gt=0)
        .select_related("task", "reviewer")
        .order_by("task__seat")
    )
    return [answer_of(d, answer) for d in decisions]


def answer_of(decision: Decision, answer: Any) -> Answer:
    output = None
    if decision.action == Decision.Action.APPROVE:
        output = answer
    elif decision.action == Decision.Action.EDIT:
        output = decision.edited_output
    return Answer(
        seat=decision.task.seat,
        task=decision.task_id,
        decision=decision.pk,
        reviewer=decision.reviewer.get_username(),
        action=decision.action,
        output=output,
        reason=decision.reason,
        decided_at=decision.decided_at,
    )


def quorum_view(task: ReviewTask, *, user_id: int | None) -> QuorumView | None:
    """Where `task` stands in its quorum, as `user_id` may see it (None without a quorum)."""
    quorum = quorum_of(task)
    if quorum is None:
        return None
    ai = task.guarded.output if task.guarded else None
    answers = quorum_answers(task.step_run_id, ai)
    visible = task.seat == 0 or answers_visible(task, user_id=user_id)
    return QuorumView(
        seat=task.seat,
        of=quorum["of"],
        required=quorum["required"],
        decided=len(answers),
        answers=answers if visible else None,
    )


def answers_visible(task: ReviewTask, *, user_id: int | None) -> bool:
    """Whether a viewer may see the other seats' answers: once they decided a seat of the
    group, or once no seat of it is live (the group settled, escalated or was cancelled)."""
    seats = ReviewTask.objects.filter(step_run_id=task.step_run_id, seat__gt=0)
    decided = Q(
        claimed_by_id=user_id,
        status__in=[ReviewTask.Status.DECIDED, ReviewTask.Status.ESCALATED],
    )
    return not seats.filter(status__in=ReviewTask.LIVE).exists() or seats.filter(decided).exists()


def quorum_shown(task: ReviewTask) -> dict[str, Any] | None:
    """What a decision keeps of the quorum it was taken in: a seat's place in it (never the
    other answers, which its reviewer was not shown), or, for the group's escalation, every
    answer."""
    quorum = quorum_of(task)
    if quorum is None:
        return None
    shown: dict[str, Any] = {"seat": task.seat, **quorum}
    if task.seat == 0:
        ai = task.guarded.output if task.guarded else None
        shown["answers"] = [a.as_json() for a in quorum_answers(task.step_run_id, ai)]
    return shown


@dataclass(frozen=True)
class Agreement:
    """How much a workflow's quorum reviewers agree beyond chance, over `items` gates."""

    workflow: str
    raters: int
    items: int
    # Fleiss' kappa over every item's first `raters` answers (by seat); None when there are
    # no items or chance explains every agreement.
    fleiss: float | None
    # With two raters, Cohen's kappa too, the lower seat as the first rater.
    cohen: float | None


def quorum_agreement(*, workflow: Workflow, raters: int = 2) -> Agreement:
    """Agreement among the answers of a workflow's quorum seats (for its admins and operators:
    the caller checks who may ask).

    Each gate with at least `raters` answers is an item, rated by its first `raters` seats
    that answered: an approval rates the AI's answer, an edit its output (both as canonical
    JSON), a rejection "reject"; an escalation is no rating. Groups that settled early (k
    approvals before every seat answered) have fewer answers, so with `raters` above k they
    are left out: the report counts the items it used.
    """
    if raters < 2:
        raise ValueError("agreement needs at least two raters per item")
    rows = (
        Decision.objects.filter(task__workflow=workflow, task__seat__gt=0)
        .exclude(action=Decision.Action.ESCALATE)
        .order_by("task__step_run_id", "task__seat")
        .values_list("task__step_run_id", "action", "edited_output", "task__guarded__output")
    )
    items: list[list[str]] = []
    for _, group in groupby(rows, key=lambda row: row[0]):
        ratings = [_rating(action, edited, ai) for _, action, edited, ai in group]
        if len(ratings) >= raters:
            items.append(ratings[:raters])
    return Agreement(
        workflow=workflow.slug,
        raters=raters,
        items=len(items),
        fleiss=fleiss_kappa(items) if items else None,
        cohen=cohen_kappa([(a, b) for a, b in items]) if items and raters == 2 else None,
    )


def _rating(action: str, edited: Any, ai: Any) -> str:
    if action == Decision.Action.APPROVE:
        return canonical_json(ai)
    if action == Decision.Action.EDIT:
        return canonical_json(edited)
    return f"<{action}>"
