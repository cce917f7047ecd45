"""The services' side of `StepHooks`: what step kinds may ask of them, handed in, not imported."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from workflows.ai.classifier import Example
from workflows.ai.seam import LocalModelRef, LocalModelStore, TrainingSet
from workflows.models import LocalModel, Run, StepRun, Workflow
from workflows.services.fewshot import review_examples
from workflows.services.review.tasks import gate_record, review_tasks_cancel
from workflows.steps.base import ReviewExample


class DatabaseLocalModels:
    """Local models as stored by `local_model_train`: their training set, never a pickle."""

    def find(self, name: str, version: int | None) -> LocalModelRef | None:
        rows = LocalModel.objects.filter(name=name)
        if version is not None:
            rows = rows.filter(version=version)
        row = rows.order_by("-version").values("version", "fingerprint").first()
        if row is None:
            return None
        return LocalModelRef(name=name, version=row["version"], fingerprint=row["fingerprint"])

    def training_set(self, ref: LocalModelRef) -> TrainingSet:
        row = LocalModel.objects.get(name=ref.name, version=ref.version)
        return TrainingSet(
            examples=[Example(text=e["text"], label=e["label"]) for e in row.examples],
            seed=row.seed,
            params=row.params,
        )


LOCAL_MODELS: LocalModelStore = DatabaseLocalModels()


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def spent_today(workflow_id: int, now: datetime) -> Decimal:
    """Money spent by the workflow's steps that finished on `now`'s day (UTC)."""
    since = day_start(now)
    total = StepRun.objects.filter(
        run__workflow_id=workflow_id,
        finished_at__gte=since,
        finished_at__lt=since + timedelta(days=1),
    ).aggregate(total=Sum("cost_usd"))["total"]
    return total or Decimal("0")


class ServiceHooks:
    """Implements `workflows.steps.base.StepHooks` over the services."""

    local_models = LOCAL_MODELS

    def daily_cap(self, workflow_id: int) -> Decimal | None:
        return (
            Workflow.objects.filter(pk=workflow_id)
            .values_list("daily_cost_cap_usd", flat=True)
            .first()
        )

    def spent_today(self, workflow_id: int, now: datetime) -> Decimal:
        return spent_today(workflow_id, now)

    def review_examples(
        self, *, workflow_id: int, step_id: str, data: Any, k: int
    ) -> list[ReviewExample]:
        return review_examples(workflow_id=workflow_id, step_id=step_id, data=data, k=k)

    def gate_record(self, *, run: Run, step_run: StepRun, waiting: bool, now: datetime) -> None:
        gate_record(run=run, step_run=step_run, waiting=waiting, now=now)

    def review_tasks_cancel(self, *, step_run: StepRun, now: datetime) -> int:
        return review_tasks_cancel(step_run=step_run, now=now)


HOOKS = ServiceHooks()
