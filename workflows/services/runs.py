"""Starting, resuming, cancelling and retrying runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema
from django.db import transaction
from django.utils import timezone

from workflows import engine
from workflows.errors import Conflict, InvalidInput
from workflows.models import Endpoint, Event, Run, StepRun, Workflow, WorkflowVersion
from workflows.services.audit import Actor, audit_record
from workflows.services.callbacks import run_event
from workflows.services.hooks import HOOKS
from workflows.services.steps import run_advance, step_create, step_retry
from workflows.steps import get_kind
from workflows.storable import json_problem
from workflows.versions import version_definition

# Deeper run input is refused: it would break what walks it later (schemas, pages, exports).
MAX_INPUT_DEPTH = 64


def run_input_errors(schema: dict[str, Any], data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"input {where}: {error.message}")
    return errors


def run_start(
    *,
    workflow: Workflow,
    input: Any,
    actor: Actor,
    source: str = "api",
    started_by: Any = None,
    version: WorkflowVersion | None = None,
    callback_url: str | None = None,
    now: datetime | None = None,
) -> Run:
    """Create a run on the workflow's active version and make its first step due.

    The run, its first StepRun and the audit event commit together; the step is enqueued
    on commit, so a rolled-back caller leaves nothing to run. `callback_url` names one of
    the workflow's active webhook endpoints, which then hears this run's events even if it
    is kept for the runs that name it (`Endpoint.named_runs_only`).
    """
    now = now or timezone.now()
    version = version or workflow.active_version
    if version is None or version.status != WorkflowVersion.Status.PUBLISHED:
        raise InvalidInput(f"workflow {workflow.slug!r} has no published version to run")
    if version.workflow_id != workflow.pk:
        raise InvalidInput("that version belongs to another workflow")
    problem = json_problem(input, max_depth=MAX_INPUT_DEPTH)
    if problem:
        raise InvalidInput(f"the input cannot be stored: {problem}")
    # Parsed once per process: a stored version never changes (workflows/versions.py).
    definition = version_definition(version.pk)
    errors = run_input_errors(definition.input_schema, input)
    if errors:
        raise InvalidInput("; ".join(errors))
    # No savepoint inside a caller's transaction (a webhook's, with its InboundMessage): every
    # refusal is raised above, so an error in here is a database error, which spoils the
    # caller's transaction anyway; the savepoint cost two round trips per run started so.
    endpoint = None if callback_url is None else _named_endpoint(workflow, callback_url)
    with transaction.atomic(savepoint=False):
        run = Run.objects.create(
            workflow=workflow,
            version=version,
            status=Run.Status.PENDING,
            input=input,
            source=source,
            started_by=started_by,
            callback_endpoint=endpoint,
            created_at=now,
            updated_at=now,
        )
        step_create(
            run=run, definition=definition, step_id=engine.first_step(definition).step_id, now=now
        )
        audit_record(
            actor=actor,
            verb="run.started",
            target=run,
            payload={
                "workflow": workflow.slug,
                "version": version.number,
                "source": source,
                **({"callback_endpoint": endpoint.pk} if endpoint else {}),
            },
        )
    return run


def _named_endpoint(workflow: Workflow, url: str) -> Endpoint:
    """The active webhook endpoint of `workflow` whose URL is exactly `url`.

    Naming never reaches an address an admin did not configure: the endpoint's secret signs
    what is sent and its SSRF check guards every attempt, as for any other delivery. Checked
    before the run's transaction, so a refusal leaves a caller's transaction usable; an
    endpoint disabled in between gets nothing, as deliveries go to active endpoints only.
    """
    endpoint = (
        Endpoint.objects.filter(workflow=workflow, kind=Endpoint.Kind.WEBHOOK, active=True, url=url)
        .order_by("pk")
        .first()
    )
    if endpoint is None:
        raise InvalidInput(
            f"callback_url must be one of workflow {workflow.slug!r}'s active webhook "
            "endpoints (an admin configures them)"
        )
    return endpoint


def run_resume(
    *,
    run: Run,
    step_id: str,
    actor: Actor,
    output: Any = None,
    outcome: str = "",
    confidence: float | None = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Run:
    """Complete a WAITING step with `output`/`outcome` and continue the run.

    The run goes on with the definition it started on, however long the wait.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        step_run = StepRun.objects.filter(
            run=run, step_id=step_id, status=StepRun.Status.WAITING
        ).first()
        if run.status != Run.Status.WAITING or step_run is None:
            raise Conflict(f"run {run.pk} is not waiting at step {step_id!r}")
        step_run.status = StepRun.Status.COMPLETED
        step_run.output = output
        step_run.outcome = outcome
        step_run.confidence = confidence
        step_run.meta = {**step_run.meta, **(meta or {})}
        step_run.finished_at = now
        step_run.save(
            update_fields=["status", "output", "outcome", "confidence", "meta", "finished_at"]
        )
        audit_record(
            actor=actor,
            verb="run.resumed",
            target=run,
            payload={"step": step_id, "outcome": outcome},
        )
        run_advance(run=run, step_run=step_run, now=now)
    return run


def run_cancel(*, run: Run, actor: Actor, reason: str = "", now: datetime | None = None) -> Run:
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status in Run.FINISHED:
            raise Conflict(f"run {run.pk} has already {run.status}")
        open_steps = list(
            StepRun.objects.select_for_update().filter(
                run=run,
                status__in=[StepRun.Status.READY, StepRun.Status.RUNNING, StepRun.Status.WAITING],
            )
        )
        for step_run in open_steps:
            get_kind(step_run.kind).on_cancel(step_run=step_run, now=now, hooks=HOOKS)
        StepRun.objects.filter(pk__in=[s.pk for s in open_steps]).update(
            status=StepRun.Status.CANCELLED, lease_expires_at=None, finished_at=now
        )
        run.status = Run.Status.CANCELLED
        run.error = reason
        run.finished_at = now
        run.updated_at = now
        run.save(update_fields=["status", "error", "finished_at", "updated_at"])
        audit_record(actor=actor, verb="run.cancelled", target=run, payload={"reason": reason})
        run_event(run=run, event=Event.RUN_CANCELLED, output=None, now=now)
    return run


def run_retry(*, run: Run, actor: Actor, now: datetime | None = None) -> Run:
    """Retry the failed step of a failed run."""
    step_run = StepRun.objects.filter(run=run, status=StepRun.Status.FAILED).first()
    if step_run is None:
        raise Conflict(f"run {run.pk} has no failed step to retry")
    step_retry(step_run=step_run, actor=actor, now=now)
    run.refresh_from_db()
    return run


def runs_retry_failed(
    *,
    since: datetime,
    actor: Actor,
    workflow: Workflow | None = None,
    now: datetime | None = None,
) -> int:
    """Retry every run that failed at or after `since`; returns how many were retried."""
    runs = Run.objects.filter(status=Run.Status.FAILED, finished_at__gte=since)
    if workflow is not None:
        runs = runs.filter(workflow=workflow)
    retried = 0
    for run in runs.order_by("finished_at", "pk").iterator():
        try:
            run_retry(run=run, actor=actor, now=now)
        except Conflict:
            continue  # retried or changed by someone else meanwhile
        retried += 1
    return retried
