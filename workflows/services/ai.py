"""Local model training, and resuming AI steps that waited for budget."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workflows.ai.limits import spent_today
from workflows.ai.local import Example, evaluate, split, train_classifier
from workflows.errors import InvalidInput
from workflows.models import AuditEvent, LocalModel, Run, StepRun, Workflow
from workflows.services.audit import Actor, audit_event
from workflows.services.steps import step_enqueue_on_commit


def local_model_train(
    *,
    name: str,
    examples: Sequence[Example],
    actor: Actor,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> LocalModel:
    """Train, evaluate on a held-out split, and store a new version of a local model.

    The stored version is the full training set (not a pickle): workers rebuild the same
    classifier deterministically on first use.
    """
    now = now or timezone.now()
    try:
        train, test = split(examples, seed=seed)
        metrics = evaluate(train_classifier(train, seed=seed, params=params), test)
        classifier = train_classifier(examples, seed=seed, params=params)
    except ValueError as exc:
        raise InvalidInput(f"cannot train {name!r}: {exc}") from None
    with transaction.atomic():
        # Serialise version numbering per name.
        latest = (
            LocalModel.objects.select_for_update()
            .filter(name=name)
            .aggregate(v=Max("version"))["v"]
            or 0
        )
        model = LocalModel.objects.create(
            name=name,
            version=latest + 1,
            examples=[{"text": e.text, "label": e.label} for e in examples],
            seed=seed,
            params=classifier.params,
            fingerprint=classifier.fingerprint,
            labels=list(classifier.labels),
            metrics=metrics,
            source=source or {},
            created_at=now,
        )
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=actor,
                    verb="local_model.trained",
                    object_type="local_model",
                    object_id=model.pk,
                    payload={
                        "name": name,
                        "version": model.version,
                        "fingerprint": model.fingerprint,
                        "examples": len(examples),
                        "metrics": metrics,
                    },
                    now=now,
                )
            ]
        )
    return model


def workflow_set_daily_cap(
    *, workflow: Workflow, cap_usd: Decimal | None, actor: Actor, now: datetime | None = None
) -> Workflow:
    """Change the daily cost cap; steps waiting for budget resume on the next sweep."""
    now = now or timezone.now()
    if cap_usd is not None and cap_usd < 0:
        raise InvalidInput("the daily cost cap cannot be negative")
    with transaction.atomic():
        workflow.daily_cost_cap_usd = cap_usd
        workflow.save(update_fields=["daily_cost_cap_usd"])
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=actor,
                    verb="workflow.cost_cap_changed",
                    object_type="workflow",
                    object_id=workflow.pk,
                    payload={"cap_usd": None if cap_usd is None else str(cap_usd)},
                    now=now,
                )
            ]
        )
    ai_budget_sweep(now=now)
    return workflow


def ai_budget_sweep(*, now: datetime | None = None) -> int:
    """Send AI steps that waited for budget back to READY where the workflow has headroom
    again: a new day, or a raised (or removed) cap. Returns how many resumed."""
    now = now or timezone.now()
    waiting = (
        StepRun.objects.filter(status=StepRun.Status.WAITING, meta__waiting_for="budget")
        .values_list("pk", "run__workflow_id", "run__workflow__daily_cost_cap_usd")
        .order_by("pk")
    )
    headroom: dict[int, bool] = {}
    resumed = 0
    for pk, workflow_id, cap in waiting:
        if workflow_id not in headroom:
            headroom[workflow_id] = cap is None or spent_today(workflow_id, now) < cap
        if headroom[workflow_id] and _requeue(pk, now):
            resumed += 1
    return resumed


def _requeue(step_run_pk: int, now: datetime) -> bool:
    with transaction.atomic():
        step_run = StepRun.objects.select_related("run").get(pk=step_run_pk)
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
        meta = {k: v for k, v in step_run.meta.items() if k not in ("waiting_for", "budget")}
        updated = StepRun.objects.filter(
            pk=step_run_pk, status=StepRun.Status.WAITING, meta__waiting_for="budget"
        ).update(status=StepRun.Status.READY, due_at=now, enqueued_at=now, meta=meta)
        if not updated or run.status != Run.Status.WAITING:
            return False
        run.status = Run.Status.RUNNING
        run.updated_at = now
        run.save(update_fields=["status", "updated_at"])
        step_run.refresh_from_db()
        step_enqueue_on_commit(step_run)
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    actor=Actor.system(),
                    verb="step.budget_resumed",
                    object_type="step_run",
                    object_id=step_run.pk,
                    payload={"run": run.pk, "step": step_run.step_id},
                    now=now,
                )
            ]
        )
    return True
