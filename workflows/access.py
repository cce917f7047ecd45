"""Who may see and decide what. Services and selectors both ask here, so they never disagree.

- Superusers, and a workflow's admins, see and may decide every task of their workflows.
- Members of a workflow's reviewer group see its tasks and decide those for reviewers.
- Members of its escalation group see and decide its escalated tasks.
- Everyone else sees nothing.

`access_*` helpers return the object or raise NotAllowed; the `*_q` functions give the same
rules as a filter, for querysets.
"""

from __future__ import annotations

from typing import Any

from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, Value

from workflows.errors import NotAllowed
from workflows.models import ReviewTask, Run, Workflow

NOTHING = Q(pk__in=[])
_NOT_VISIBLE = "no such task, or you may not see it"


def _usable(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def _admin_workflows(user: Any) -> Any:
    return Workflow.objects.filter(admins=user).values("pk")


def _workflows_with(group_field: str, user: Any) -> Any:
    # Subqueries rather than joins: no duplicate rows, and SELECT ... FOR UPDATE stays simple.
    return Workflow.objects.filter(**{f"{group_field}__in": user.groups.values("pk")}).values("pk")


def tasks_visible_q(user: Any) -> Q:
    """The tasks `user` may see."""
    if not _usable(user):
        return NOTHING
    if user.is_superuser:
        return Q()
    return (
        Q(workflow_id__in=_admin_workflows(user))
        | Q(workflow_id__in=_workflows_with("reviewer_group", user))
        | Q(
            audience=ReviewTask.Audience.ESCALATION,
            workflow_id__in=_workflows_with("escalation_group", user),
        )
    )


def workflows_visible_q(user: Any) -> Q:
    """The workflows some of whose tasks `user` may see."""
    if not _usable(user):
        return NOTHING
    if user.is_superuser:
        return Q()
    return (
        Q(pk__in=_admin_workflows(user))
        | Q(pk__in=_workflows_with("reviewer_group", user))
        | Q(pk__in=_workflows_with("escalation_group", user))
    )


def tasks_decidable_q(user: Any) -> Q:
    """The tasks `user` may claim and decide (whatever their current status)."""
    if not _usable(user):
        return NOTHING
    if user.is_superuser:
        return Q()
    return (
        Q(workflow_id__in=_admin_workflows(user))
        | Q(
            audience=ReviewTask.Audience.REVIEWERS,
            workflow_id__in=_workflows_with("reviewer_group", user),
        )
        | Q(
            audience=ReviewTask.Audience.ESCALATION,
            workflow_id__in=_workflows_with("escalation_group", user),
        )
    )


def workflow_decides(user: Any) -> dict[str, Any]:
    """Annotations for a Workflow queryset: whether `user` may decide its reviewer-level
    (`decides_reviewers`) and escalation-level (`decides_escalation`) tasks.

    The same rules as `tasks_decidable_q`, per workflow rather than per task, so that a page
    of tasks learns what its viewer may decide from the few workflows it shows.
    """
    if not _usable(user):
        return {"decides_reviewers": Value(False), "decides_escalation": Value(False)}
    if user.is_superuser:
        return {"decides_reviewers": Value(True), "decides_escalation": Value(True)}
    groups = user.groups.values("pk")
    admin = Q(
        Exists(Workflow.admins.through.objects.filter(workflow_id=OuterRef("pk"), user_id=user.pk))
    )
    return {
        "decides_reviewers": ExpressionWrapper(
            admin | Q(reviewer_group__in=groups), output_field=BooleanField()
        ),
        "decides_escalation": ExpressionWrapper(
            admin | Q(escalation_group__in=groups), output_field=BooleanField()
        ),
    }


def is_workflow_admin(user: Any, workflow: Workflow) -> bool:
    if not _usable(user):
        return False
    return bool(user.is_superuser or workflow.admins.filter(pk=user.pk).exists())


def access_workflow_admin(*, user: Any, workflow: Workflow) -> Workflow:
    if not is_workflow_admin(user, workflow):
        raise NotAllowed(f"only the admins of workflow {workflow.slug!r} may do that")
    return workflow


def can_see_task(user: Any, task: ReviewTask) -> bool:
    return ReviewTask.objects.filter(tasks_visible_q(user), pk=task.pk).exists()


def can_decide_task(user: Any, task: ReviewTask) -> bool:
    return ReviewTask.objects.filter(tasks_decidable_q(user), pk=task.pk).exists()


def access_task_view(*, user: Any, task: ReviewTask) -> ReviewTask:
    # The same answer for a task that exists and one that does not: ids are not a probe.
    if not can_see_task(user, task):
        raise NotAllowed(_NOT_VISIBLE)
    return task


def access_task_decide(*, user: Any, task: ReviewTask) -> ReviewTask:
    if not can_decide_task(user, task):
        if can_see_task(user, task):
            raise NotAllowed(f"you may see task {task.pk} but not decide it")
        raise NotAllowed(_NOT_VISIBLE)
    return task


def access_task_reassign(*, user: Any, task: ReviewTask) -> ReviewTask:
    if not is_workflow_admin(user, task.workflow):
        if can_see_task(user, task):
            raise NotAllowed(f"only the workflow's admins may reassign task {task.pk}")
        raise NotAllowed(_NOT_VISIBLE)
    return task


# --- Runs ----------------------------------------------------------------------------------
# A run is read by whoever has a role in its workflow (admins, reviewers, the escalation
# group) and by superusers; it is started, cancelled or resumed by the workflow's admins.

_RUN_NOT_VISIBLE = "no such run, or you may not see it"


def runs_visible_q(user: Any) -> Q:
    """The runs `user` may read."""
    if not _usable(user):
        return NOTHING
    if user.is_superuser:
        return Q()
    return Q(workflow_id__in=Workflow.objects.filter(workflows_visible_q(user)).values("pk"))


def can_see_run(user: Any, run: Run) -> bool:
    return Run.objects.filter(runs_visible_q(user), pk=run.pk).exists()


def access_run_view(*, user: Any, run: Run) -> Run:
    # The same answer for a run that exists and one that does not: ids are not a probe.
    if not can_see_run(user, run):
        raise NotAllowed(_RUN_NOT_VISIBLE)
    return run


def access_runs_manage(*, user: Any, workflow: Workflow) -> Workflow:
    """Starting, cancelling and resuming a workflow's runs: its admins (and superusers)."""
    if not is_workflow_admin(user, workflow):
        raise NotAllowed(
            f"only the admins of workflow {workflow.slug!r} may start, cancel or resume its runs"
        )
    return workflow
