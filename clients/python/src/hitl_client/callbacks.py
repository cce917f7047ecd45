"""`verify_callback`: check a signed callback from hitl before acting on it.

hitl signs each callback with the endpoint's secret (Standard Webhooks); after a secret
rotation it sends two signatures for a day, and either verifies. Whatever is wrong (headers
missing, no signature that matches, a timestamp more than five minutes off, a body that is
not an event) raises one exception, `CallbackVerificationError`: the receiver answers 4xx
and does nothing, and need not know the many ways `standardwebhooks` and `json` fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook

from hitl_client.errors import CallbackVerificationError
from hitl_client.models import Event, parse_time

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def verify_callback(body: bytes, headers: Mapping[str, str], secret: str) -> Event:
    """The event in a callback, once its signature and timestamp are verified.

    `body` is the request body exactly as received (bytes: re-encoded JSON would not verify);
    `headers` any mapping of the request's headers (names in any case).
    """
    found = {name.lower(): value for name, value in headers.items() if name.lower() in HEADERS}
    missing = [name for name in HEADERS if not found.get(name)]
    if missing:
        raise CallbackVerificationError(f"missing header(s): {', '.join(missing)}")
    try:
        webhook = Webhook(secret)
    except Exception as exc:
        raise CallbackVerificationError(f"the secret is not a whsec_ secret: {exc}") from None
    try:
        webhook.verify(body, found, json_parse=False)
    except Exception as exc:
        # WebhookVerificationError, and the TypeError/ValueError of input it cannot read.
        raise CallbackVerificationError(f"not verified: {exc}") from None
    return _event(found["webhook-id"], body)


def _event(webhook_id: str, body: bytes) -> Event:
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallbackVerificationError(f"the body is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CallbackVerificationError("the body is not a JSON object")
    try:
        kind, data_ = data["type"], data["data"]
        timestamp = parse_time(data["timestamp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CallbackVerificationError(f"the body is not an event: {exc!r}") from None
    if not isinstance(kind, str) or not isinstance(data_, dict):
        raise CallbackVerificationError("the body is not an event: type or data of a wrong type")
    return Event(id=webhook_id, type=kind, timestamp=timestamp, data=data_, raw=data)
