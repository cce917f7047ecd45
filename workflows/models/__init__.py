"""The system of record. One module per area; every write goes through `workflows.services`."""

from workflows.models.ai import LocalModel
from workflows.models.core import AuditEvent, Run, StepRun, Workflow, WorkflowVersion
from workflows.models.review import Decision, ReviewSkip, ReviewTask

__all__ = [
    "AuditEvent",
    "Decision",
    "LocalModel",
    "ReviewSkip",
    "ReviewTask",
    "Run",
    "StepRun",
    "Workflow",
    "WorkflowVersion",
]
