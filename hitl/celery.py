"""The Celery app: queues, routes and the beat schedule.

A Celery message is only a nudge; PostgreSQL is the system of record (docs/architecture.md).
"""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitl.settings")

app = Celery("hitl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("default"), Queue("ai"), Queue("callbacks")]
# Outbound HTTP waits on other people's servers: its own queue, so a slow receiver never
# holds up steps. The services send it by name (`send_task` applies these routes).
app.conf.task_routes = {"hitl.delivery_send": {"queue": "callbacks"}}


def _beat_schedule() -> dict[str, dict[str, object]]:
    from django.conf import settings

    return {
        "sweep-steps": {
            "task": "hitl.steps_sweep",
            "schedule": settings.HITL_SWEEP_INTERVAL,
        },
        "resume-budget-waits": {
            "task": "hitl.ai_budget_sweep",
            "schedule": 60.0,
        },
        "sweep-review": {
            "task": "hitl.review_sweep",
            "schedule": settings.HITL_SWEEP_INTERVAL,
        },
        "sweep-deliveries": {
            "task": "hitl.deliveries_sweep",
            "schedule": settings.HITL_SWEEP_INTERVAL,
        },
        "sweep-idempotency": {
            "task": "hitl.api_idempotency_sweep",
            "schedule": 3600.0,
        },
        "seal-audit": {
            "task": "hitl.audit_seal",
            "schedule": settings.HITL_AUDIT_SEAL_INTERVAL,
        },
        "verify-audit": {
            "task": "hitl.audit_verify",
            "schedule": settings.HITL_AUDIT_VERIFY_INTERVAL,
        },
    }


@app.on_after_configure.connect
def _configure(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    sender.conf.beat_schedule = _beat_schedule()
    sender.conf.task_soft_time_limit = settings.HITL_STEP_SOFT_TIME_LIMIT
    sender.conf.task_time_limit = settings.HITL_STEP_HARD_TIME_LIMIT


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs: object) -> None:
    # With connections reused across tasks (CELERY_DB_REUSE_MAX), this is what still drops a
    # connection an error left unusable, or one older than CONN_MAX_AGE, as Django does
    # around each request.
    from django.db import close_old_connections

    close_old_connections()


app.autodiscover_tasks(["workflows", "hitl.api"])
