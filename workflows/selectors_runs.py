"""Reads of workflows, their versions and runs, scoped to a user (the rules are in
`workflows.access`), for faces other than the desk such as the REST API.

`within`, when given, narrows a read further to a set of workflow ids (an API token limited
to some workflows): it never widens what the user's roles allow.

Lists come as ordered querysets, and pages of them are cut by keyset (`*_page`): a page
deep in the history costs what the first one does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Q, QuerySet

from workflows.access import access_run_view, runs_visible_q, workflows_visible_q
from workflows.errors import NotAllowed
from workflows.models import Decision, ReviewTask, Run, StepRun, Workflow, WorkflowVersion
from workflows.selectors_quorum import answers_visible

Within = Collection[int] | None
C = TypeVar("C")

_WORKFLOW_NOT_VISIBLE = "no such workflow, or you may not see it"


def keyset_page(
    rows: QuerySet[Any], *, size: int, cursor_of: Callable[[Any], C]
) -> tuple[list[Any], C | None]:
    """The first `size` rows of an ordered queryset (already filtered to after the previous
    page's cursor), and the cursor of the next page if there is one."""
    found = list(rows[: size + 1])
    more = len(found) > size
    found = found[:size]
    return found, (cursor_of(found[-1]) if more and found else None)


# --- Workflows -----------------------------------------------------------------------------


def workflows_visible(*, user: Any, within: Within = None) -> QuerySet[Workflow]:
    """The workflows `user` has a role in, by slug."""
    workflows = Workflow.objects.filter(workflows_visible_q(user))
    if within is not None:
        workflows = workflows.filter(pk__in=list(within))
    return workflows.select_related("active_version").order_by("slug")


def workflow_get(*, user: Any, slug: str, within: Within = None) -> Workflow:
    workflow = workflows_visible(user=user, within=within).filter(slug=slug).first()
    if workflow is None:
        raise NotAllowed(_WORKFLOW_NOT_VISIBLE)
    return workflow


def workflows_after(workflows: QuerySet[Workflow], slug: str | None) -> QuerySet[Workflow]:
    return workflows if slug is None else workflows.filter(slug__gt=slug)


def workflow_versions(*, workflow: Workflow, after: int | None = None) -> QuerySet[WorkflowVersion]:
    """A workflow's versions, newest first (after version number `after`, if given)."""
    versions = WorkflowVersion.objects.filter(workflow=workflow).order_by("-number")
    return versions if after is None else versions.filter(number__lt=after)


# --- Runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCursor:
    """Where a page of runs ends, in their order: newest first, then by id."""

    created_at: datetime
    id: int

    @classmethod
    def of(cls, run: Run) -> RunCursor:
        return cls(run.created_at, run.pk)


def run_list(
    *,
    user: Any,
    within: Within = None,
    workflow: Workflow | None = None,
    status: str | None = None,
    outcome: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    after: RunCursor | None = None,
) -> QuerySet[Run]:
    """The runs `user` may read, newest first; `created_after` is inclusive, `created_before`
    exclusive, so consecutive ranges never count a run twice."""
    runs = Run.objects.filter(runs_visible_q(user))
    if within is not None:
        runs = runs.filter(workflow_id__in=list(within))
    if workflow is not None:
        runs = runs.filter(workflow=workflow)
    if status:
        runs = runs.filter(status=status)
    if outcome is not None:
        runs = runs.filter(outcome=outcome)
    if created_after is not None:
        runs = runs.filter(created_at__gte=created_after)
    if created_before is not None:
        runs = runs.filter(created_at__lt=created_before)
    if after is not None:
        runs = runs.filter(
            Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, pk__lt=after.id)
        )
    return runs.select_related("workflow", "version", "started_by").order_by("-created_at", "-id")


@dataclass(frozen=True)
class ReviewSummary:
    """One review task of a run and its decision, if it has one."""

    task: ReviewTask
    decision: Decision | None


@dataclass(frozen=True)
class RunDetail:
    run: Run
    steps: list[StepRun]
    # The output of the run's last step once it has completed; None before.
    output: Any
    reviews: list[ReviewSummary]


def run_get(*, user: Any, run_id: int, within: Within = None) -> RunDetail:
    run = (
        Run.objects.select_related("workflow", "version", "started_by", "callback_endpoint")
        .filter(pk=run_id)
        .first()
    )
    if run is None or (within is not None and run.workflow_id not in within):
        raise NotAllowed("no such run, or you may not see it")
    access_run_view(user=user, run=run)
    steps = list(StepRun.objects.filter(run=run).order_by("position"))
    tasks = (
        ReviewTask.objects.filter(run=run)
        .select_related("step_run", "decision__reviewer")
        .order_by("created_at", "id")
    )
    visible: dict[int, bool] = {}

    def shown(task: ReviewTask) -> Decision | None:
        decision = getattr(task, "decision", None)
        if decision is None or not task.seat or decision.reviewer_id == user.pk:
            return decision
        # A quorum's answers stay hidden from a viewer yet to decide a seat of it, as on the desk.
        if task.step_run_id not in visible:
            visible[task.step_run_id] = answers_visible(task, user_id=user.pk)
        return decision if visible[task.step_run_id] else None

    reviews = [ReviewSummary(task, shown(task)) for task in tasks]
    return RunDetail(run=run, steps=steps, output=run_output(run, steps), reviews=reviews)


def run_output(run: Run, steps: list[StepRun]) -> Any:
    """A completed run's output: its last completed step's. Transitions only go forward, so
    the completed step furthest along the definition is the last one the run took."""
    if run.status != Run.Status.COMPLETED:
        return None
    completed = [s for s in steps if s.status == StepRun.Status.COMPLETED]
    return max(completed, key=lambda s: s.position).output if completed else None


def run_status(*, run_id: int) -> str | None:
    """A run's status alone, with no access check: for a caller polling a run it has
    already been allowed to read."""
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
