"""Thin Celery tasks: ids in, one service call. Retries go through `due_at`, never self.retry."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from workflows import services
from workflows.services.callbacks import DELIVERY_SEND_TASK
from workflows.services.steps import STEP_EXECUTE_TASK


# The services send this task by name, once the step's row has committed (on_commit).
@shared_task(name=STEP_EXECUTE_TASK, acks_late=True, reject_on_worker_lost=True)
def step_execute_task(step_run_id: int) -> None:
    # A missing or already-claimed step is a no-op inside the service.
    services.step_execute(step_run_id=step_run_id)


@shared_task(name="hitl.steps_sweep")
def steps_sweep_task() -> dict[str, int]:
    # The most frequent sweep notices when beat was silent for too long (an alert).
    services.beat_gap_check(name="steps_sweep")
    return services.steps_sweep()


@shared_task(name="hitl.audit_seal")
def audit_seal_task() -> int:
    return services.audit_seal()


@shared_task(name="hitl.audit_verify")
def audit_verify_task() -> bool:
    # Incremental from the last good verification; a failure is logged and emailed.
    return services.audit_verify_scheduled().ok


@shared_task(name="hitl.ai_budget_sweep")
def ai_budget_sweep_task() -> int:
    return services.ai_budget_sweep()


@shared_task(name="hitl.local_models_retrain")
def local_models_retrain_task() -> dict[str, str]:
    # Each model whose workflows saw HITL_LOCAL_MODEL_RETRAIN_EVERY new decisions.
    return services.local_models_retrain_due()


@shared_task(name="hitl.gates_calibrate")
def gates_calibrate_task() -> dict[str, str]:
    # Gates in `calibrate: {mode: auto}` with `every` new calibration-side reviews.
    return services.gates_calibrate_due()


@shared_task(name="hitl.review_sweep")
def review_sweep_task() -> dict[str, int]:
    # Lapsed claims, SLA warnings and breaches: all `due_at`-style columns, never countdowns.
    return services.review_sweep()


# Outbound HTTP: the task stops before its delivery's lease ends, so no two workers ever
# send the same delivery at once (a killed or stopped one is re-sent after the lease).
_LEASE = settings.HITL_DELIVERY_LEASE.total_seconds()
_SOFT_LIMIT = max(1, int(_LEASE * 0.8))
_HARD_LIMIT = max(_SOFT_LIMIT + 1, int(_LEASE * 0.9))


# Routed to the `callbacks` queue (hitl/celery.py); sent by name once the row commits.
@shared_task(
    name=DELIVERY_SEND_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=_SOFT_LIMIT,
    time_limit=_HARD_LIMIT,
)
def delivery_send_task(delivery_id: int) -> None:
    # A missing, finished or already-claimed delivery is a no-op inside the service.
    services.delivery_send(delivery_id=delivery_id)


@shared_task(name="hitl.deliveries_sweep")
def deliveries_sweep_task() -> dict[str, int]:
    return services.deliveries_sweep()
