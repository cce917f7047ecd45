"""Thin Celery tasks: ids in, one service call. Retries go through `due_at`, never self.retry."""

from __future__ import annotations

from celery import shared_task

from workflows import services
from workflows.services.steps import STEP_EXECUTE_TASK


# The services send this task by name, once the step's row has committed (on_commit).
@shared_task(name=STEP_EXECUTE_TASK, acks_late=True, reject_on_worker_lost=True)
def step_execute_task(step_run_id: int) -> None:
    # A missing or already-claimed step is a no-op inside the service.
    services.step_execute(step_run_id=step_run_id)


@shared_task(name="hitl.steps_sweep")
def steps_sweep_task() -> dict[str, int]:
    return services.steps_sweep()


@shared_task(name="hitl.audit_seal")
def audit_seal_task() -> int:
    return services.audit_seal()


@shared_task(name="hitl.ai_budget_sweep")
def ai_budget_sweep_task() -> int:
    return services.ai_budget_sweep()


@shared_task(name="hitl.review_sweep")
def review_sweep_task() -> dict[str, int]:
    # Lapsed claims, SLA warnings and breaches: all `due_at`-style columns, never countdowns.
    return services.review_sweep()
