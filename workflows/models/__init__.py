"""The system of record. One module per area; every write goes through `workflows.services`."""

from workflows.models.core import AuditEvent, Run, StepRun, Workflow, WorkflowVersion

__all__ = ["AuditEvent", "Run", "StepRun", "Workflow", "WorkflowVersion"]
