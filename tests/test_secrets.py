"""Signing secrets: Standard Webhooks format, encrypted at rest, rotatable keys."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.fernet import Fernet

from workflows import secrets


def test_a_new_secret_is_in_the_standard_webhooks_format() -> None:
    secret = secrets.new_signing_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secrets.new_signing_secret() != secret


def test_a_secret_round_trips_and_is_not_stored_in_clear() -> None:
    token = secrets.encrypt("whsec_abc")
    assert "whsec_abc" not in token
    assert secrets.decrypt(token) == "whsec_abc"


def test_keys_rotate_without_downtime(settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.HITL_SECRETS_KEYS = [old]
    token = secrets.encrypt("whsec_abc")
    settings.HITL_SECRETS_KEYS = [new, old]  # the new key first: it encrypts, both decrypt
    assert secrets.decrypt(token) == "whsec_abc"
    rotated = secrets.reencrypt(token)
    settings.HITL_SECRETS_KEYS = [new]
    assert secrets.decrypt(rotated) == "whsec_abc"
    with pytest.raises(secrets.SecretUnreadable, match="was a key dropped"):
        secrets.decrypt(token)
