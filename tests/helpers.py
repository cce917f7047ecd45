from __future__ import annotations

from datetime import datetime

from workflows import services
from workflows.models import Run


def drive(run: Run, *, now: datetime | None = None) -> Run:
    """Execute a run's due steps in-process (unit tests: no worker, same claim/record path)."""
    return services.run_drive(run=run, now=now)
