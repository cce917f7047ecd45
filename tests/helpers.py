from __future__ import annotations

from datetime import datetime

from workflows import services
from workflows.models import Run, StepRun


def drive(run: Run, *, now: datetime | None = None, limit: int = 50) -> Run:
    """Execute a run's due steps in-process until none is left (unit tests, no worker)."""
    for _ in range(limit):
        step = StepRun.objects.filter(run=run, status=StepRun.Status.READY).first()
        if step is None:
            break
        services.step_execute(step_run_id=step.pk, now=now)
    run.refresh_from_db()
    return run
