"""`verify_callback`: a good callback is an `Event`; every bad one is the same exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from standardwebhooks import Webhook

from hitl_client import CallbackVerificationError, Event, verify_callback

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + "QUJD" * 8
EVENT = {
    "type": "run.completed",
    "timestamp": "2026-12-05T10:03:12+00:00",
    "data": {"run": {"id": 17, "status": "completed"}, "output": {"label": "billing"}},
}


def callback(
    body: bytes | None = None,
    *,
    secrets: tuple[str, ...] = (SECRET,),
    at: datetime | None = None,
    msg_id: str = "msg_2f7c",
) -> tuple[bytes, dict[str, str]]:
    """A callback as hitl sends one: the body and its three headers (names as on the wire)."""
    body = json.dumps(EVENT).encode() if body is None else body
    at = at or datetime.now(timezone.utc)
    return body, {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets),
        "Content-Type": "application/json",
    }


def test_a_good_callback_is_an_event() -> None:
    event = verify_callback(*callback(), SECRET)
    assert isinstance(event, Event)
    assert (event.id, event.type) == ("msg_2f7c", "run.completed")
    assert event.timestamp == datetime(2026, 12, 5, 10, 3, 12, tzinfo=timezone.utc)
    assert event.data["output"] == {"label": "billing"}
    assert event.raw == EVENT


def test_during_a_rotation_either_signature_verifies() -> None:
    body, headers = callback(secrets=(OLD_SECRET, SECRET))
    assert verify_callback(body, headers, SECRET).type == "run.completed"
    assert verify_callback(body, headers, OLD_SECRET).type == "run.completed"


def _without(name: str) -> Callable[[], tuple[bytes, dict[str, Any]]]:
    def make() -> tuple[bytes, dict[str, Any]]:
        body, headers = callback()
        del headers[name]
        return body, headers

    return make


def _tampered() -> tuple[bytes, dict[str, Any]]:
    body, headers = callback()
    return body.replace(b"billing", b"refunds"), headers


def _signed(body: bytes) -> Callable[[], tuple[bytes, dict[str, Any]]]:
    return lambda: callback(body)


def _header(name: str, value: str) -> Callable[[], tuple[bytes, dict[str, Any]]]:
    def make() -> tuple[bytes, dict[str, Any]]:
        body, headers = callback()
        headers[name] = value
        return body, headers

    return make


BAD: dict[str, Callable[[], tuple[bytes, dict[str, Any]]]] = {
    "another secret": lambda: callback(secrets=(OLD_SECRET,)),
    "tampered body": _tampered,
    "stale timestamp": lambda: callback(at=datetime.now(timezone.utc) - timedelta(minutes=10)),
    "future timestamp": lambda: callback(at=datetime.now(timezone.utc) + timedelta(minutes=10)),
    "no webhook-id": _without("Webhook-Id"),
    "no webhook-timestamp": _without("Webhook-Timestamp"),
    "no webhook-signature": _without("Webhook-Signature"),
    "timestamp not a number": _header("Webhook-Timestamp", "yesterday"),
    "timestamp out of range": _header("Webhook-Timestamp", "9" * 30),
    "signature not v1": _header("Webhook-Signature", "v2,abc"),
    "not JSON, signed": _signed(b"<xml/>"),
    "not UTF-8, signed": _signed(b'{"type": "\xff"}'),
    "a JSON list, signed": _signed(b"[1, 2]"),
    "no type, signed": _signed(json.dumps({"timestamp": EVENT["timestamp"], "data": {}}).encode()),
    "bad event time, signed": _signed(json.dumps({**EVENT, "timestamp": "soon"}).encode()),
    "data not an object, signed": _signed(json.dumps({**EVENT, "data": [1]}).encode()),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_every_bad_callback_raises_callback_verification_error_and_nothing_else(
    case: str,
) -> None:
    body, headers = BAD[case]()
    with pytest.raises(CallbackVerificationError):
        verify_callback(body, headers, SECRET)


@pytest.mark.parametrize("secret", ["whsec_not*base64!", "whsec_", ""])
def test_an_unusable_secret_is_the_same_exception(secret: str) -> None:
    with pytest.raises(CallbackVerificationError):
        verify_callback(*callback(), secret)
