"""hitl's Python client: the REST API (`Client`), signed webhooks in (`WebhookSender`) and
signed callbacks out (`verify_callback`). Depends on httpx and standardwebhooks only."""

from hitl_client._http import __version__
from hitl_client.callbacks import verify_callback
from hitl_client.client import Client
from hitl_client.errors import (
    ApiError,
    CallbackVerificationError,
    HitlError,
    NetworkError,
    RunTimeout,
)
from hitl_client.models import (
    FINAL_STATUSES,
    Cost,
    Decision,
    Event,
    Review,
    Run,
    RunSummary,
    Step,
    Task,
    TaskSummary,
    WebhookAccepted,
    Workflow,
)
from hitl_client.webhooks import WebhookSender, new_webhook_id

__all__ = [
    "FINAL_STATUSES",
    "ApiError",
    "CallbackVerificationError",
    "Client",
    "Cost",
    "Decision",
    "Event",
    "HitlError",
    "NetworkError",
    "Review",
    "Run",
    "RunSummary",
    "RunTimeout",
    "Step",
    "Task",
    "TaskSummary",
    "WebhookAccepted",
    "WebhookSender",
    "Workflow",
    "__version__",
    "new_webhook_id",
    "verify_callback",
]
