"""Claims on review tasks: leases a reviewer takes, renews, releases or skips.

A claim lapses at `claim_expires_at` unless renewed, and renewals never keep it past
`HITL_REVIEW_MAX_CLAIM_TIME` from when it was taken: then the review sweeper gives the task
back to the queue. One reviewer holds at most `HITL_REVIEW_MAX_CLAIMS` live claims.

Locking order, everywhere: the run row, then the task row (see `decisions`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from workflows import notifications
from workflows.access import (
    access_task_decide,
    access_task_reassign,
    can_decide_task,
    is_workflow_admin,
    tasks_decidable_q,
)
from workflows.errors import Conflict, InvalidInput
from workflows.models import Decision, ReviewSkip, ReviewTask, Run, Workflow
from workflows.models.review import QUEUE_ORDER
from workflows.selectors_quorum import SEATED
from workflows.services.audit import Actor, audit_record

# pg_advisory_xact_lock namespace ("hitl" + "clai"): one reviewer's claims take turns, so
# two concurrent claims cannot both pass the cap.
_CLAIMS_LOCK = 0x636C6169


def review_claim(
    *, task: ReviewTask, user: Any, actor: Actor | None = None, now: datetime | None = None
) -> ReviewTask:
    """Claim a task (or renew one's own live claim). The claim is a lease of HITL_REVIEW_CLAIM.

    `actor` is how the audit trail names `user` (the API names the token too)."""
    now = now or timezone.now()
    access_task_decide(user=user, task=task)
    with transaction.atomic():
        if task.seat:
            # A quorum's rule (one reviewer, one seat) is kept under the run's lock, as every
            # transition of the group is.
            Run.objects.select_for_update().filter(pk=task.run_id).first()
        task = task_locked(task)
        claim_take(task, user, now, actor=actor)
    return task


def review_claim_next(
    *, user: Any, workflow: Workflow | None = None, now: datetime | None = None
) -> ReviewTask | None:
    """Claim the first task in the queue's order that `user` may take, or None.

    SKIP LOCKED lets concurrent callers pass over each other's candidates instead of queueing
    behind them, so two callers never get the same task and neither waits. A reviewer at the
    claims cap gets a Conflict saying which tasks they hold.
    """
    now = now or timezone.now()
    with transaction.atomic():
        candidates = (
            ReviewTask.objects.filter(tasks_decidable_q(user))
            .filter(
                Q(status=ReviewTask.Status.OPEN)
                | Q(status=ReviewTask.Status.CLAIMED, claim_expires_at__lte=now)
            )
            .filter(Q(assignee__isnull=True) | Q(assignee_id=user.pk))
            .exclude(pk__in=ReviewSkip.objects.filter(user_id=user.pk).values("task_id"))
            # Nor a seat of a quorum in which the reviewer already holds or decided one.
            .exclude(seat__gt=0, step_run_id__in=_seated_in(user))
        )
        if workflow is not None:
            candidates = candidates.filter(workflow=workflow)
        task = candidates.order_by(*QUEUE_ORDER).select_for_update(skip_locked=True).first()
        if task is None:
            return None
        _check_cap(user, now, claiming=task.pk)
        if task.seat:
            # Under the reviewer's claims lock: a seat they took meanwhile is seen here.
            check_seat(task, user)
        _claim(task, user, now)
    return task


def review_claims_held(*, user: Any, now: datetime | None = None) -> QuerySet[ReviewTask]:
    """The tasks `user` holds a live claim on."""
    now = now or timezone.now()
    return ReviewTask.objects.filter(
        status=ReviewTask.Status.CLAIMED, claimed_by_id=user.pk, claim_expires_at__gt=now
    )


def review_renew(*, task: ReviewTask, user: Any, now: datetime | None = None) -> ReviewTask:
    """Extend one's own live claim while still working on the task, up to the maximum."""
    now = now or timezone.now()
    with transaction.atomic():
        task = task_locked(task)
        check_live(task)
        check_holds(task, user, now)
        assert task.claimed_at is not None and task.claim_expires_at is not None
        if claim_at_maximum(task):
            raise Conflict(
                f"your claim on task {task.pk} cannot be renewed past"
                f" {task.claim_expires_at:%Y-%m-%d %H:%M} UTC (at most {_max_claim()} per"
                " claim): decide or release it"
            )
        task.claim_expires_at = max(task.claim_expires_at, _lease_end(task.claimed_at, now))
        task.save(update_fields=["claim_expires_at"])
    return task


def review_release(
    *, task: ReviewTask, user: Any, actor: Actor | None = None, now: datetime | None = None
) -> ReviewTask:
    """Give a claimed task back to the queue: one's own claim, or, for the workflow's admins,
    anyone's."""
    now = now or timezone.now()
    with transaction.atomic():
        task = task_locked(task)
        check_live(task)
        holder = task.claimed_by
        if task.claimed_by_id != user.pk and is_workflow_admin(user, task.workflow):
            if task.status != ReviewTask.Status.CLAIMED:
                raise Conflict(f"nobody holds a claim on task {task.pk}")
        else:
            check_holds(task, user, now, lapsed_ok=True)
        claim_drop(task)
        payload = {} if holder is None or holder.pk == user.pk else {"held_by": holder.pk}
        audit_record(
            actor=actor or Actor.for_user(user),
            verb="review.released",
            target=task,
            payload=payload,
        )
    return task


def review_skip(*, task: ReviewTask, user: Any, now: datetime | None = None) -> ReviewTask:
    """Give a task back and stop "next task" from offering it to this reviewer again."""
    now = now or timezone.now()
    with transaction.atomic():
        task = task_locked(task)
        check_live(task)
        check_holds(task, user, now, lapsed_ok=True)
        claim_drop(task)
        if task.assignee_id == user.pk:
            # A skipped assignment would otherwise sit with nobody able to take it.
            task.assignee = None
            task.save(update_fields=["assignee"])
        ReviewSkip.objects.get_or_create(task=task, user=user, defaults={"created_at": now})
        audit_record(actor=Actor.for_user(user), verb="review.skipped", target=task)
    return task


def review_reassign(
    *, task: ReviewTask, user: Any, to: Any, now: datetime | None = None
) -> ReviewTask:
    """Assign a live task to `to` (or back to the pool with None). Workflow admins only.

    A claim held by anyone else is dropped: the task is now `to`'s to claim.
    """
    now = now or timezone.now()
    access_task_reassign(user=user, task=task)
    if to is not None and not can_decide_task(to, task):
        raise InvalidInput(f"{to} may not decide task {task.pk}: choose one of its reviewers")
    with transaction.atomic():
        task = task_locked(task)
        check_live(task)
        previous = task.assignee_id
        if task.status == ReviewTask.Status.CLAIMED and (to is None or task.claimed_by_id != to.pk):
            claim_drop(task)
        task.assignee = to
        task.save(update_fields=["assignee"])
        audit_record(
            actor=Actor.for_user(user),
            verb="review.reassigned",
            target=task,
            payload={"from": previous, "to": to.pk if to else None},
        )
        if to is not None:
            notifications.notify_assigned(task)
    return task


# --- Shared with decisions and the sweepers ------------------------------------------------


def task_locked(task: ReviewTask) -> ReviewTask:
    return (
        ReviewTask.objects.select_for_update(of=("self",))
        .select_related("workflow", "claimed_by", "assignee")
        .get(pk=task.pk)
    )


def claim_take(task: ReviewTask, user: Any, now: datetime, *, actor: Actor | None = None) -> None:
    """Claim the locked, live-checked `task` for `user`, or renew their claim; every rule of
    taking a claim is checked here (held by another, assigned to another, the cap)."""
    check_live(task)
    if holds(task, user, now):
        _claim(task, user, now, actor)
        return
    if _held_by_other(task, user, now):
        raise Conflict(claimed_message(task))
    if task.assignee_id not in (None, user.pk) and not is_workflow_admin(user, task.workflow):
        raise Conflict(f"task {task.pk} is assigned to {task.assignee}")
    if task.seat:
        # The group's seats are locked before the reviewer's claims lock, which "next task"
        # takes while holding one seat: the other order could deadlock with it.
        list(seats_locked(task))
    _check_cap(user, now, claiming=task.pk)
    if task.seat:
        check_seat(task, user)
    _claim(task, user, now, actor)


def claim_drop(task: ReviewTask) -> None:
    task.status = ReviewTask.Status.OPEN
    task.claimed_by = None
    task.claimed_at = None
    task.claim_expires_at = None
    task.save(update_fields=["status", "claimed_by", "claimed_at", "claim_expires_at"])


def claim_at_maximum(task: ReviewTask) -> bool:
    """Whether the task's claim ends because it reached the maximum claim time."""
    if task.claimed_at is None or task.claim_expires_at is None:
        return False
    return task.claim_expires_at >= task.claimed_at + settings.HITL_REVIEW_MAX_CLAIM_TIME


def holds(task: ReviewTask, user: Any, now: datetime) -> bool:
    return (
        task.status == ReviewTask.Status.CLAIMED
        and task.claimed_by_id == user.pk
        and task.claim_expires_at is not None
        and task.claim_expires_at > now
    )


def check_live(task: ReviewTask) -> None:
    if task.status == ReviewTask.Status.DECIDED:
        decision = Decision.objects.filter(task=task).select_related("reviewer").first()
        by = f" by {decision.reviewer}" if decision else ""
        raise Conflict(f"task {task.pk} has already been decided{by}")
    if task.status == ReviewTask.Status.ESCALATED:
        successor = ReviewTask.objects.filter(escalated_from=task).values_list("pk", flat=True)
        where = f": task {successor[0]} carries on" if successor else ""
        raise Conflict(f"task {task.pk} has been escalated{where}")
    if task.status == ReviewTask.Status.CANCELLED:
        cancelled_run = Run.objects.filter(pk=task.run_id, status=Run.Status.CANCELLED)
        if task.seat and not cancelled_run.exists():
            raise Conflict(f"task {task.pk} was closed: its quorum settled without this seat")
        raise Conflict(f"task {task.pk} was cancelled with its run")


def seats_locked(task: ReviewTask) -> QuerySet[ReviewTask]:
    """The seats of `task`'s quorum, locked in seat order (the caller holds the run's lock)."""
    return (
        ReviewTask.objects.select_for_update(of=("self",))
        .filter(step_run_id=task.step_run_id, seat__gt=0)
        .order_by("seat")
    )


def check_seat(task: ReviewTask, user: Any) -> None:
    """Refuse a second seat of one quorum to one reviewer: its answer would count twice.

    A lapsed claim still names its reviewer until it is swept or taken over, and counts (the
    database constraint `reviewtask_one_seat_per_reviewer` says the same)."""
    other = (
        ReviewTask.objects.filter(
            step_run_id=task.step_run_id, seat__gt=0, claimed_by_id=user.pk, status__in=SEATED
        )
        .exclude(pk=task.pk)
        .first()
    )
    if other is None:
        return
    did = "hold" if other.status == ReviewTask.Status.CLAIMED else "decided"
    raise Conflict(
        f"you {did} seat {other.seat} of this review (task {other.pk}): each seat needs"
        " another reviewer"
    )


def _seated_in(user: Any) -> QuerySet[ReviewTask, Any]:
    """The gates in whose quorum `user` holds or decided a seat (a subquery)."""
    seated = ReviewTask.objects.filter(seat__gt=0, claimed_by_id=user.pk, status__in=SEATED)
    return seated.values("step_run_id")


def check_holds(task: ReviewTask, user: Any, now: datetime, *, lapsed_ok: bool = False) -> None:
    """Raise Conflict unless `user` holds the claim (a lapsed one too, with `lapsed_ok`)."""
    if task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != user.pk:
        if _held_by_other(task, user, now):
            raise Conflict(claimed_message(task))
        raise Conflict(f"you have not claimed task {task.pk}: claim it first")
    assert task.claim_expires_at is not None
    if not lapsed_ok and task.claim_expires_at <= now:
        raise Conflict(
            f"your claim on task {task.pk} expired at {task.claim_expires_at:%Y-%m-%d %H:%M} UTC;"
            " claim it again"
        )


def claimed_message(task: ReviewTask) -> str:
    until = task.claim_expires_at
    when = f" until {until:%Y-%m-%d %H:%M} UTC" if until else ""
    return f"task {task.pk} is claimed by {task.claimed_by}{when}"


def _claim(task: ReviewTask, user: Any, now: datetime, actor: Actor | None = None) -> None:
    renewing = holds(task, user, now)
    task.status = ReviewTask.Status.CLAIMED
    task.claimed_by = user
    if not renewing:
        # Time spent runs from the claim that leads to the decision, not from a renewal.
        task.claimed_at = now
    assert task.claimed_at is not None
    task.claim_expires_at = max(task.claim_expires_at or now, _lease_end(task.claimed_at, now))
    task.save(update_fields=["status", "claimed_by", "claimed_at", "claim_expires_at"])
    if not renewing:
        audit_record(
            actor=actor or Actor.for_user(user),
            verb="review.claimed",
            target=task,
            payload={"until": task.claim_expires_at.isoformat()},
        )


def _lease_end(claimed_at: datetime, now: datetime) -> datetime:
    return min(now + settings.HITL_REVIEW_CLAIM, claimed_at + settings.HITL_REVIEW_MAX_CLAIM_TIME)


def _max_claim() -> str:
    minutes = int(settings.HITL_REVIEW_MAX_CLAIM_TIME.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _held_by_other(task: ReviewTask, user: Any, now: datetime) -> bool:
    return (
        task.status == ReviewTask.Status.CLAIMED
        and task.claimed_by_id != user.pk
        and task.claim_expires_at is not None
        and task.claim_expires_at > now
    )


def _check_cap(user: Any, now: datetime, *, claiming: int | None = None) -> None:
    """Refuse a new claim to a reviewer who already holds the maximum number of live claims.

    One round trip: the reviewer's lock, then the count, two statements in one message. Each
    statement has its own snapshot, so the count sees every claim committed before the lock
    was granted, and two claims by one reviewer cannot both pass the cap.
    """
    cap = settings.HITL_REVIEW_MAX_CLAIMS
    with connection.cursor() as cursor:
        cursor.execute(_HELD_SQL, [_CLAIMS_LOCK, user.pk, user.pk, now, claiming or 0])
        cursor.nextset()
        (held,) = cursor.fetchone()
    if held < cap:
        return
    ids = (
        review_claims_held(user=user, now=now)
        .exclude(pk=claiming or 0)
        .order_by(*QUEUE_ORDER)
        .values_list("pk", flat=True)[:cap]
    )
    tasks = ", ".join(f"#{pk}" for pk in ids)
    raise Conflict(
        f"you already hold {cap} claims ({tasks}): decide or release one of them"
        " before you take another"
    )


_HELD_SQL = """
SELECT pg_advisory_xact_lock(%s, %s);
SELECT count(*) FROM workflows_reviewtask
WHERE status = 'claimed' AND claimed_by_id = %s AND claim_expires_at > %s AND id <> %s
"""
