"""The audit chain's link hash, keys and checkpoints: no ORM, so the sealer, the verifier and
the benchmark hash exactly the same bytes.

A link is `HMAC-SHA256(key, prev_hash + canonical_json(chain fields))`. Events sealed before
the chain was keyed are linked with plain SHA-256 and have no key id; the sealer's
`audit.rekeyed` event (sealed with the old scheme, naming the old and new key ids) is where
verification switches to the new key, both for the first key and for every rotation.

A checkpoint is the chain's head (seq, hash, seal time, key id) published outside the table
by the sealer and signed with the current key: deleting the newest events, or rewriting the
chain from some point on, leaves a head that no longer matches the last checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _string  # json.dumps's own escaper
from pathlib import Path
from typing import Any

from django.conf import settings

GENESIS_HASH = "0" * 64
REKEYED = "audit.rekeyed"
UNKEYED = ""  # the key id of events linked with plain SHA-256
# Enough of the checkpoint file's end to hold its last lines (each is about 200 bytes).
_TAIL_BYTES = 64 * 1024


class CheckpointError(Exception):
    """A checkpoint that cannot be trusted: unreadable, or not signed by a known key."""


class ChainBehindCheckpoint(Exception):
    """The chain's head is not where the last checkpoint saw it: events were removed or
    rewritten. The sealer stops rather than chain new events onto a cut chain."""


def keys() -> dict[str, bytes]:
    return {ident: secret.encode() for ident, secret in settings.HITL_AUDIT_KEYS}


def current_key_id() -> str:
    return str(settings.HITL_AUDIT_KEYS[0][0])


def _dumps(value: Any) -> str:
    # canonical_json without DjangoJSONEncoder: chain fields and loaded payloads hold only
    # JSON types, for which the output is the same, and the C encoder is several times faster.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_digest(payload: Any) -> str:
    """The SHA-256 of a payload as loaded from the database (JSON types only)."""
    return hashlib.sha256(_dumps(payload).encode()).hexdigest()


def chain_fields(
    *,
    seq: int | None,
    id: int | None,
    created_at: datetime,
    actor_type: str,
    actor_id: str,
    actor_label: str,
    verb: str,
    object_type: str,
    object_id: str,
    payload_sha256: str,
    key_id: str,
    sealed_at: datetime | None,
) -> dict[str, Any]:
    """What a link covers besides the previous hash. Keyed links also cover their key id and
    seal time, so neither can be changed to pass a backdated or re-keyed event off."""
    fields: dict[str, Any] = {
        "seq": seq,
        "id": id,
        "created_at": created_at.isoformat(),
        "actor_type": actor_type,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "verb": verb,
        "object_type": object_type,
        "object_id": object_id,
        "payload_sha256": payload_sha256,
    }
    if key_id != UNKEYED:
        fields["key_id"] = key_id
        fields["sealed_at"] = sealed_at.isoformat() if sealed_at else None
    return fields


def link_hash(prev_hash: str, fields: dict[str, Any], secret: bytes | None) -> str:
    """A link as the definition reads: the hash of `prev_hash` and the canonical JSON of
    `fields`. `link` computes the same without the dict; tests hold the two together."""
    message = (prev_hash + _dumps(fields)).encode()
    if secret is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def link(
    prev_hash: str,
    secret: bytes | None,
    seq: int,
    id: int,
    created_at: datetime,
    actor_type: str,
    actor_id: str,
    actor_label: str,
    verb: str,
    object_type: str,
    object_id: str,
    payload_sha256: str,
    key_id: str,
    sealed_at: datetime | None,
) -> str:
    """`link_hash(prev_hash, chain_fields(...), secret)`, without building the dict: the
    sealer and the verifier make one per event. The text is exactly what `json.dumps` writes
    for the sorted fields (same string escaper), which tests/test_audit.py checks."""
    keyed = key_id != UNKEYED
    parts = [
        prev_hash,
        '{"actor_id":',
        _string(actor_id),
        ',"actor_label":',
        _string(actor_label),
        ',"actor_type":',
        _string(actor_type),
        ',"created_at":',
        _string(created_at.isoformat()),
        ',"id":',
        str(id),
    ]
    if keyed:
        parts += [',"key_id":', _string(key_id)]
    parts += [
        ',"object_id":',
        _string(object_id),
        ',"object_type":',
        _string(object_type),
        ',"payload_sha256":',
        _string(payload_sha256),
    ]
    if keyed:
        parts += [',"sealed_at":', _string(sealed_at.isoformat()) if sealed_at else "null"]
    parts += [',"seq":', str(seq), ',"verb":', _string(verb), "}"]
    message = "".join(parts).encode()
    if secret is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    time: datetime
    key_id: str


def checkpoint_line(checkpoint: Checkpoint) -> str:
    """The checkpoint as one signed JSON line, signed with its key."""
    body = {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "time": checkpoint.time.isoformat(),
        "key_id": checkpoint.key_id,
    }
    secret = keys()[checkpoint.key_id]
    body["sig"] = hmac.new(secret, _dumps(body).encode(), hashlib.sha256).hexdigest()
    return _dumps(body)


def checkpoint_parse(line: str) -> Checkpoint:
    """A checkpoint line whose signature checks out with a configured key."""
    try:
        body = json.loads(line)
        sig = body.pop("sig")
        checkpoint = Checkpoint(
            int(body["seq"]),
            str(body["hash"]),
            datetime.fromisoformat(body["time"]),
            str(body["key_id"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"not a checkpoint line: {line[:80]!r}") from exc
    secret = keys().get(checkpoint.key_id)
    if secret is None:
        raise CheckpointError(
            f"checkpoint seq {checkpoint.seq} is signed with key {checkpoint.key_id!r}, "
            "which HITL_AUDIT_KEYS does not list"
        )
    expected = hmac.new(secret, _dumps(body).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(str(sig), expected):
        raise CheckpointError(f"checkpoint seq {checkpoint.seq} has a forged signature")
    return checkpoint


def checkpoint_append(path: str | Path, checkpoint: Checkpoint) -> None:
    """Append the checkpoint's line to `path` and flush it to disk."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as out:
        out.write(checkpoint_line(checkpoint) + "\n")
        out.flush()
        os.fsync(out.fileno())


def checkpoint_latest(path: str | Path) -> Checkpoint | None:
    """The last checkpoint in the file, or None if it has none yet.

    Only a torn last line (a crash mid-append) is skipped; a complete line that does not
    verify raises, since it means someone wrote to the file.
    """
    target = Path(path)
    try:
        with target.open("rb") as src:
            size = src.seek(0, 2)
            src.seek(max(0, size - _TAIL_BYTES))
            tail = src.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"cannot read {target}: {exc}") from exc
    lines = tail.splitlines()
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first may be cut in two by the seek
    torn = bool(lines) and not tail.endswith("\n")
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].strip()
        if not line:
            continue
        if torn and index == len(lines) - 1:
            continue
        return checkpoint_parse(line)
    return None
