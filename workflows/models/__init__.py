"""The system of record. One module per area; every write goes through `workflows.services`."""

from workflows.models.ai import GateRecalibration, LocalModel, LocalModelRetrain
from workflows.models.callbacks import Delivery, Endpoint, Event
from workflows.models.core import (
    AuditEvent,
    AuditVerification,
    Run,
    StepRun,
    Workflow,
    WorkflowVersion,
)
from workflows.models.ops import Alert, JobMark
from workflows.models.review import Decision, ReviewSkip, ReviewTask
from workflows.models.webhooks import InboundMessage, WebhookSecret, WebhookSource

__all__ = [
    "Alert",
    "AuditEvent",
    "AuditVerification",
    "Decision",
    "Delivery",
    "Endpoint",
    "Event",
    "GateRecalibration",
    "InboundMessage",
    "JobMark",
    "LocalModel",
    "LocalModelRetrain",
    "ReviewSkip",
    "ReviewTask",
    "Run",
    "StepRun",
    "WebhookSecret",
    "WebhookSource",
    "Workflow",
    "WorkflowVersion",
]
