"""The Celery app: queues, routes and the beat schedule.

A Celery message is only a nudge; PostgreSQL is the system of record (docs/architecture.md).
"""

import os
import time
from typing import Any

from celery import Celery, bootsteps
from celery.signals import (
    after_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_shutdown,
    worker_ready,
)
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitl.settings")

app = Celery("hitl")
app.config_from_object("django.conf:settings", namespace="CELERY")
QUEUES = ("default", "ai", "callbacks")
app.conf.task_queues = [Queue(name) for name in QUEUES]
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
        "retrain-local-models": {
            "task": "hitl.local_models_retrain",
            "schedule": 300.0,
        },
        "calibrate-gates": {
            "task": "hitl.gates_calibrate",
            "schedule": 300.0,
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


@setup_logging.connect
def _django_logging(**kwargs: object) -> None:
    # Connected, so Celery leaves logging alone: Django's LOGGING (settings.py) already
    # configured it, with the JSON format and the ids (workflows/logs.py) in workers too.
    pass


@task_prerun.connect
def _log_context(task_id: str | None = None, **kwargs: object) -> None:
    # Every line a task logs names it; a step's run and step ids are added by step_execute.
    from workflows import logs

    logs.clear()
    logs.bind(task_id=task_id)


@task_postrun.connect
def _log_context_end(**kwargs: object) -> None:
    from workflows import logs

    logs.clear()


@worker_ready.connect
def _worker_metrics(**kwargs: object) -> None:
    # In the worker's main process, once its pool has started: one port per worker, serving
    # the counters every prefork child wrote to PROMETHEUS_MULTIPROC_DIR (docs/operations.md).
    from django.conf import settings

    if settings.HITL_WORKER_METRICS_PORT:
        from hitl.metrics import worker_metrics_serve

        worker_metrics_serve(settings.HITL_WORKER_METRICS_PORT, settings.HITL_WORKER_METRICS_ADDR)


@worker_process_shutdown.connect
def _worker_metrics_child_gone(pid: int | None = None, **kwargs: object) -> None:
    # A prefork child that exits leaves its counter files (they still count); only its live
    # gauges must be dropped, which prometheus_client does here.
    if pid and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Record this worker's liveness and queues in Redis, for `/readyz` (hitl/health.py).

    On the consumer's timer, which the worker's event loop runs: a loop that is stuck stops
    the heartbeat with it. A failed write is logged and retried at the next tick.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.client: Any = None

    def start(self, parent: Any) -> None:
        from django.conf import settings

        from hitl import health

        self.client = health.broker()
        self.beat(parent)
        self.tref = parent.timer.call_repeatedly(
            settings.HITL_HEALTH_HEARTBEAT_SECONDS, self.beat, (parent,)
        )

    def beat(self, parent: Any) -> None:
        from hitl import health

        queues = parent.app.amqp.queues.consume_from or parent.app.amqp.queues
        try:
            health.record_worker(self.client, parent.hostname, list(queues), time.time())
        except Exception:
            health.logger.warning("worker heartbeat not recorded", exc_info=True)

    def stop(self, parent: Any) -> None:
        from hitl import health

        if self.tref is not None:
            parent.timer.cancel(self.tref)
            self.tref = None
        if self.client is not None:
            try:
                health.forget_worker(self.client, parent.hostname)
            except Exception:
                health.logger.warning("worker heartbeat not removed", exc_info=True)

    shutdown = stop


app.steps["consumer"].add(WorkerHeartbeat)


@after_task_publish.connect
def _beat_alive(sender: str | None = None, **kwargs: object) -> None:
    # Only beat sends the step sweep (hitl/health.py); it fires in beat's process, after the
    # message reached the broker.
    if sender != "hitl.steps_sweep":
        return
    from hitl import health

    try:
        health.record_beat(health.broker(), time.time())
    except Exception:
        health.logger.warning("beat liveness not recorded", exc_info=True)


app.autodiscover_tasks(["workflows", "hitl.api"])
