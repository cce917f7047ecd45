"""Signing secrets at rest: encrypted with keys from the environment, never stored in clear.

Webhook sources verify, and callback endpoints sign, with a shared secret in the Standard
Webhooks format (`whsec_` + base64). It cannot be hashed like a password, since it is needed
in clear to compute signatures, so the database holds it encrypted with Fernet (AES-128-CBC
with HMAC-SHA256, from `cryptography`) under `HITL_SECRETS_KEYS`: the first key encrypts,
every key decrypts, so keys rotate without downtime.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys decrypts (a key was dropped too soon)."""


def new_signing_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet() -> MultiFernet:
    keys = settings.HITL_SECRETS_KEYS
    if not keys:
        raise SecretUnreadable("HITL_SECRETS_KEYS is empty: no key to encrypt secrets with")
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with HITL_SECRETS_KEYS: was a key dropped "
            "before its secrets were re-encrypted?"
        ) from None


def reencrypt(token: str) -> str:
    """The same secret encrypted under the first key (after a rotation)."""
    return _fernet().rotate(token.encode()).decode()


class EncryptedSecretField(models.TextField):
    """A text column holding a Fernet token; Python sees the secret in clear.

    Only ever assign secrets to it: the clear text exists in memory, never in the database.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else encrypt(str(value))
