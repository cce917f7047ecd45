"""`WebhookSender`: start runs by sending signed webhooks, as a business system would.

hitl's inbound webhooks follow Standard Webhooks: the body is signed with the source's
secret (`whsec_…`) over `{webhook-id}.{webhook-timestamp}.{body}`. The `webhook-id` is the
idempotency key: a retry must send the same id and the same bytes, and is answered with the
run the first delivery started. The timestamp must be within five minutes of hitl's clock,
so each attempt is signed afresh (a retry after a long `Retry-After` would be stale otherwise).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
from standardwebhooks import Webhook

from hitl_client._http import Retrying, Sleep, json_of
from hitl_client.models import WebhookAccepted


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookSender:
    """Sends deliveries to one webhook source's URL (`…/api/v1/webhooks/<source>/`)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_retries: int = 3,
        max_retry_after: float = 60.0,
        sleep: Sleep | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = url
        # Fails here, at once, on a secret that is not base64: not at the first send.
        self._webhook = Webhook(secret)
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._http = Retrying(
            timeout=timeout,
            transport=transport,
            max_retries=max_retries,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, payload: Any, *, webhook_id: str | None = None) -> WebhookAccepted:
        """Deliver `payload` (JSON-encoded; bytes are sent as they are) and return the run
        it started. To retry a delivery later, pass the `webhook_id` of the first one and the
        same payload: hitl answers with the same run (`duplicate=True`).

        Raises ApiError for a refusal (a bad signature, an input the workflow's schema
        refuses ...), NetworkError when hitl could not be reached after the retries.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        msg_id = webhook_id or new_webhook_id()

        def signed() -> dict[str, str]:
            at = self._now()
            return {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": self._webhook.sign(msg_id, at, body),
            }

        response = self._http.send("POST", self.url, headers=signed, content=body)
        return WebhookAccepted.from_json(json_of(response), webhook_id=msg_id)
