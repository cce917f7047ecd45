"""The one canonical JSON form, used to hash definitions and audit events."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


def canonical_json(value: Any) -> str:
    # DjangoJSONEncoder writes decimals and datetimes as strings.
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stored_json_digest(value: Any) -> str:
    """The SHA-256 of `value` as a JSON column gives it back (dates and decimals as strings), so
    a digest taken before saving matches one taken of the loaded row."""
    return sha256_hex(canonical_json(json.loads(canonical_json(value))))
