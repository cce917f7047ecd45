"""The human side of a gate: review tasks, their immutable decisions, and skips.

Models hold fields, constraints and status choices. Every write goes through
`workflows.services.review`; reads scoped to a user go through `workflows.selectors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from workflows.models.core import Run, StepRun, Workflow

# The queue's one order, shared by the listing and "next task" so that what a reviewer sees
# first is what they get: priority DESC, due_at ASC (a task without an SLA after every task
# with one), created_at ASC, id. Written as four ascending keys so that one expression index
# serves the order, and a keyset page is a single row comparison the index can bound.
NO_DUE = datetime(9999, 12, 31, tzinfo=UTC)
QUEUE_KEY = (
    F("priority") * -1,
    Coalesce("due_at", Value(NO_DUE, output_field=models.DateTimeField())),
    F("created_at"),
    F("id"),
)
QUEUE_ORDER = tuple(key.asc() for key in QUEUE_KEY)


class ReviewTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        DECIDED = "decided"
        # Handed on to the escalation level: a new task carries on, this one is closed.
        ESCALATED = "escalated"
        # The run was cancelled while the task was live.
        CANCELLED = "cancelled"

    class Audience(models.TextChoices):
        # Who the task is for; membership is read from the workflow when checked, so moving
        # a workflow to another group moves its open tasks with it.
        REVIEWERS = "reviewers"  # the workflow's reviewer group
        ESCALATION = "escalation"  # its escalation group, or its admins when it has none

    LIVE = (Status.OPEN, Status.CLAIMED)

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="review_tasks")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="review_tasks")
    # The gate's StepRun: the one that waits for the decision and receives the final output.
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="review_tasks")
    # The StepRun the gate guards (typically an AI step): what the reviewer judges. Never changed.
    guarded = models.ForeignKey(
        StepRun, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.REVIEWERS)
    # Why the task exists: the gate's reason (rule:<name>, no_confidence, below_threshold,
    # audit_sample), or "escalated" / "sla_breach" for a task created by escalation.
    reason = models.CharField(max_length=120)
    escalated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="escalated_to"
    )
    priority = models.IntegerField(default=0)
    # A gate with a quorum opens seats 1..m for its one step (the group is `step_run`); 0 is
    # the gate's only task, or an escalation task.
    seat = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Set by a workflow admin: only this user (or an admin) may claim the task.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The claim is a lease: it lapses at claim_expires_at unless renewed.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # The SLA, from the gate's `sla_minutes`; none without it. warn_at is when the warning is due.
    due_at = models.DateTimeField(null=True, blank=True)
    warn_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = list(QUEUE_ORDER)
        constraints = [
            # One live task per waiting gate (per seat, with a quorum): escalation closes one
            # task (or a quorum's every seat) before opening the next.
            models.UniqueConstraint(
                fields=["step_run", "seat"],
                condition=Q(status__in=["open", "claimed"]),
                name="reviewtask_one_live_per_seat",
            ),
            # One reviewer, one seat of a quorum: a seat's claim and its decision (which keeps
            # `claimed_by`) name its reviewer, and no two seats of one gate name the same one.
            models.UniqueConstraint(
                fields=["step_run", "claimed_by"],
                condition=Q(seat__gt=0, status__in=["claimed", "decided", "escalated"]),
                name="reviewtask_one_seat_per_reviewer",
            ),
            models.CheckConstraint(
                condition=~Q(status="claimed")
                | Q(
                    claimed_by__isnull=False,
                    claimed_at__isnull=False,
                    claim_expires_at__isnull=False,
                ),
                name="reviewtask_claim_has_lease",
            ),
            models.CheckConstraint(
                condition=~Q(status="open") | Q(claimed_by__isnull=True),
                name="reviewtask_open_is_unclaimed",
            ),
        ]
        indexes = [
            models.Index(
                *QUEUE_KEY,
                name="reviewtask_queue_key_idx",
                condition=Q(status__in=["open", "claimed"]),
            ),
            # Counts per status within the workflows a user may see.
            models.Index(fields=["workflow", "status"], name="reviewtask_wf_status_idx"),
            # The sweepers' questions: whose lease lapsed, what needs a warning, what is overdue.
            models.Index(
                fields=["claim_expires_at"],
                name="reviewtask_claim_idx",
                condition=Q(status="claimed"),
            ),
            models.Index(
                fields=["warn_at"],
                name="reviewtask_warn_idx",
                condition=Q(status__in=["open", "claimed"], warned_at__isnull=True),
            ),
            models.Index(
                fields=["due_at"],
                name="reviewtask_due_idx",
                condition=Q(status__in=["open", "claimed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"review task {self.pk} ({self.status})"

    def claim_live(self, now: datetime) -> bool:
        """Whether someone holds a claim on the task that has not lapsed."""
        return (
            self.status == self.Status.CLAIMED
            and self.claim_expires_at is not None
            and self.claim_expires_at > now
        )

    def held_by(self, user_id: int | None, now: datetime) -> bool:
        return self.claim_live(now) and self.claimed_by_id == user_id

    def held_by_other(self, user_id: int | None, now: datetime) -> bool:
        return self.claim_live(now) and self.claimed_by_id != user_id


@dataclass(frozen=True)
class ReviewAction:
    """One thing a reviewer can do with a task, declared once for the service, the desk's
    form, views, template and keyboard."""

    value: str
    label: str
    # Past tense, for "Task 12: edited and approved."
    done: str
    # Overriding the AI's answer needs a reason, for the record and for calibration.
    needs_reason: bool
    # The desk's keyboard shortcut.
    key: str
    # The button's look on the desk: primary, danger or plain.
    style: str = ""


class Decision(models.Model):
    """A reviewer's outcome for one task. Immutable: a PostgreSQL trigger refuses UPDATE."""

    class Action(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"
        EDIT = "edit"  # edit-and-approve
        ESCALATE = "escalate"

    # The longest reason a reviewer may give.
    MAX_REASON = 2000

    task = models.OneToOneField(ReviewTask, on_delete=models.CASCADE, related_name="decision")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_decisions"
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    # Only for edit-and-approve: the reviewer's output, which becomes the gate's output.
    edited_output = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    reason = models.TextField(blank=True)
    # What the reviewer was shown: the AI output, confidence, votes, samples and gate reason.
    shown = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    claimed_at = models.DateTimeField()
    decided_at = models.DateTimeField(default=timezone.now)
    # From claim to decision.
    time_spent = models.DurationField()

    class Meta:
        ordering = ["-decided_at", "-id"]
        # The metrics' window (workflows/metrics.py): decisions made since a moment.
        indexes = [models.Index(fields=["decided_at"], name="decision_decided_idx")]

    def __str__(self) -> str:
        return f"{self.action} on task {self.task_id}"


class ReviewSkip(models.Model):
    """A reviewer passed on a task: "next task" stops offering it to them."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "user"], name="reviewskip_once_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} skipped {self.task_id}"


# Every review action, in the order the desk shows them.
REVIEW_ACTIONS: dict[str, ReviewAction] = {
    action.value: action
    for action in (
        ReviewAction(Decision.Action.APPROVE, "Approve", "approved", False, "a", "primary"),
        ReviewAction(Decision.Action.REJECT, "Reject", "rejected", True, "r", "danger"),
        ReviewAction(Decision.Action.EDIT, "Edit & approve", "edited and approved", True, "e"),
        ReviewAction(Decision.Action.ESCALATE, "Escalate", "escalated", True, "x"),
    )
}
