"""Workflows and their versions (scope `workflows:read`), and starting runs (`runs:start`)."""

# No `from __future__ import annotations`: django-ninja reads these views' annotations at
# runtime, through the idempotency wrapper, whose module does not know these names.

from django.http import HttpRequest
from ninja import Path, Query, Router, Status

from hitl.api import pagination
from hitl.api.auth import Grant, grant
from hitl.api.errors import ApiError
from hitl.api.idempotency import idempotent_post
from hitl.api.runs import run_out
from hitl.api.schemas import (
    INT,
    SLUG_PATTERN,
    RunOut,
    RunStartIn,
    VersionDetailOut,
    VersionOut,
    VersionPage,
    WorkflowOut,
    WorkflowPage,
    responses,
)
from workflows.errors import NotAllowed
from workflows.models import Workflow
from workflows.selectors_runs import (
    keyset_page,
    workflow_get,
    workflow_versions,
    workflows_after,
    workflows_visible,
)
from workflows.services.api import run_start_as

router = Router(tags=["workflows"])

SlugPath = Path(..., pattern=SLUG_PATTERN)
Cursor = Query(None, max_length=1000)
Limit = Query(pagination.DEFAULT_LIMIT, ge=1, le=pagination.MAX_LIMIT)


def visible_workflow(g: Grant, slug: str) -> Workflow:
    try:
        return workflow_get(user=g.user, slug=slug, within=g.within)
    except NotAllowed as exc:
        # The same answer for a workflow that does not exist and one out of reach.
        raise ApiError(404, "not_found", str(exc)) from None


@router.get("", response=responses(WorkflowPage, 400), operation_id="workflows_list")
def workflows_list(
    request: HttpRequest, cursor: str | None = Cursor, limit: int = Limit
) -> WorkflowPage:
    """The workflows you have a role in, by slug."""
    g = grant(request, "workflows:read")
    after = pagination.plain_cursor("workflows", cursor, str)
    rows, last = keyset_page(
        workflows_after(workflows_visible(user=g.user, within=g.within), after),
        size=limit,
        cursor_of=lambda wf: wf.slug,
    )
    return WorkflowPage(
        items=[WorkflowOut.of(wf) for wf in rows],
        next_cursor=pagination.encode("workflows", last) if last else None,
    )


@router.get("/{slug}", response=responses(WorkflowOut, 404), operation_id="workflows_get")
def workflows_get(request: HttpRequest, slug: str = SlugPath) -> WorkflowOut:
    g = grant(request, "workflows:read")
    return WorkflowOut.of(visible_workflow(g, slug))


@router.get(
    "/{slug}/versions", response=responses(VersionPage, 400, 404), operation_id="versions_list"
)
def versions_list(
    request: HttpRequest, slug: str = SlugPath, cursor: str | None = Cursor, limit: int = Limit
) -> VersionPage:
    """A workflow's versions, newest first."""
    g = grant(request, "workflows:read")
    workflow = visible_workflow(g, slug)
    after = pagination.plain_cursor("versions", cursor, int)
    rows, last = keyset_page(
        workflow_versions(workflow=workflow, after=after),
        size=limit,
        cursor_of=lambda version: version.number,
    )
    return VersionPage(
        items=[VersionOut.of(version, workflow) for version in rows],
        next_cursor=pagination.encode("versions", last) if last else None,
    )


@router.get(
    "/{slug}/versions/{number}",
    response=responses(VersionDetailOut, 404),
    operation_id="versions_get",
)
def versions_get(
    request: HttpRequest, slug: str = SlugPath, number: int = Path(..., ge=1, le=INT)
) -> VersionDetailOut:
    """One version, with its definition and the text it was imported from."""
    g = grant(request, "workflows:read")
    workflow = visible_workflow(g, slug)
    version = workflow_versions(workflow=workflow).filter(number=number).first()
    if version is None:
        raise ApiError(404, "not_found", f"workflow {slug!r} has no version {number}")
    return VersionDetailOut(
        **VersionOut.of(version, workflow).model_dump(),
        definition=version.definition,
        source=version.source,
    )


@idempotent_post(
    router,
    "/{slug}/runs",
    response=responses(RunOut, 400, 404, 409, status=201),
    operation_id="runs_start",
    tags=["runs"],
)
def runs_start(request: HttpRequest, payload: RunStartIn, slug: str = SlugPath) -> Status:
    """Start a run on the active version (or `version`). Workflow admins only."""
    g = grant(request, "runs:start")
    workflow = visible_workflow(g, slug)
    run = run_start_as(
        user=g.user,
        workflow=workflow,
        input=payload.input,
        actor=g.actor,
        version=payload.version,
        callback_url=payload.callback_url,
        source="api",
    )
    return Status(201, run_out(g, run.pk))
