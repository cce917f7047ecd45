"""Every write and state change goes through these services (HackSoft style)."""

from workflows.services.audit import Actor, audit_record, audit_seal, audit_verify
from workflows.services.definitions import workflow_import
from workflows.services.runs import (
    run_cancel,
    run_resume,
    run_retry,
    run_start,
    runs_retry_failed,
)
from workflows.services.steps import (
    run_drive,
    step_execute,
    step_fail,
    step_retry,
    steps_sweep,
)

__all__ = [
    "Actor",
    "audit_record",
    "audit_seal",
    "audit_verify",
    "run_cancel",
    "run_drive",
    "run_resume",
    "run_retry",
    "run_start",
    "runs_retry_failed",
    "step_execute",
    "step_fail",
    "step_retry",
    "steps_sweep",
    "workflow_import",
]
