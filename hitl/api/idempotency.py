"""`Idempotency-Key` on POSTs: a retried request gets the first answer, and its effects
happen once.

Scope: (token, method, path, key), kept `HITL_API_IDEMPOTENCY_TTL` (24 h).

- same key, same body: the first answer (status and body) is replayed, with
  `Idempotent-Replayed: true`;
- same key, another body: 422 (`idempotency_key_reused`);
- same key while the first request is still running: 409 (`idempotency_in_flight`).

How. The request runs in one transaction with its record: a transaction-level advisory lock
on the scope's hash says "in flight" (a second request that cannot take it answers 409 at
once rather than queueing), the unique constraint on the scope is the last word if two ever
got past it, and the existing record is read under a row lock. The record is inserted in
the transaction that makes the request's writes, so a process killed mid-request leaves
neither: the retry simply runs again. The alternative, committing an "in flight" marker
first, would leave a marker with no answer behind a crash, and needs a lease to recover.

Only answers the operation itself gave are kept (refusals included: a retry must not turn
a 409 into a 201 by luck); validation errors (422) and authentication failures come before
the operation and are not recorded, and a 500 rolls everything back, record included.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja.responses import NinjaJSONEncoder, Status
from pydantic import BaseModel

from hitl.accounts.models import ApiToken
from hitl.api.errors import CONTENT_TYPE, ApiError, error_response
from hitl.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY = 255
# Visible ASCII: a key is an opaque id (a UUID, typically), and anything else in a header
# is more likely a client bug than an id.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")

# The OpenAPI description of the header, added to every POST.
HEADER_PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": (
        "Makes the POST safe to retry: the same key and body within 24 h replays the first"
        " answer; another body is a 422; while the first is still running, a 409."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": "^[!-~]+$"},
}


def render(result: Any) -> HttpResponse:
    """An operation's result (a schema, or `Status(code, schema)`) as the JSON answer
    django-ninja would have sent: recorded answers are replayed byte for byte."""
    if isinstance(result, HttpResponse):
        return result
    status = 200
    if isinstance(result, Status):
        status, result = result.status_code, result.value
    data = result.model_dump() if isinstance(result, BaseModel) else result
    return HttpResponse(
        json.dumps(data, cls=NinjaJSONEncoder), status=status, content_type=CONTENT_TYPE
    )


def idempotent(view: Callable[..., Any]) -> Callable[..., HttpResponse]:
    """Run a POST operation once per Idempotency-Key (see the module's docstring)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        key = request.headers.get(HEADER)
        if key is None:
            return _run(view, request, args, kwargs)
        if not _KEY.fullmatch(key):
            raise ApiError(
                400,
                "bad_idempotency_key",
                f"an {HEADER} is 1 to {MAX_KEY} visible ASCII characters (a UUID, say)",
            )
        token: ApiToken = request.auth  # type: ignore[attr-defined]
        scope = (token.pk, request.method or "POST", request.path, key)
        digest = hashlib.sha256(request.body).hexdigest()
        with transaction.atomic():
            return _once(view, request, args, kwargs, scope, digest, timezone.now())

    return wrapper


def _once(
    view: Callable[..., Any],
    request: HttpRequest,
    args: Any,
    kwargs: Any,
    scope: tuple[int, str, str, str],
    digest: str,
    now: datetime,
) -> HttpResponse:
    token_id, method, path, key = scope
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_key(scope)])
        (locked,) = cursor.fetchone()
    if not locked:
        raise _in_flight()
    record = (
        IdempotencyRecord.objects.select_for_update()
        .filter(token_id=token_id, method=method, path=path, key=key)
        .first()
    )
    if record is not None and record.expires_at > now:
        if record.request_digest != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was used with another request body",
            )
        replay = HttpResponse(record.body, status=record.status_code, content_type=CONTENT_TYPE)
        replay["Idempotent-Replayed"] = "true"
        return replay
    if record is not None:
        record.delete()  # expired, not yet swept: the key is free again
    response = _run(view, request, args, kwargs)
    if response.status_code >= 500:
        # Nothing to keep: the caller's transaction rolls back with the error.
        return response
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                token_id=token_id,
                key=key,
                method=method,
                path=path,
                request_digest=digest,
                status_code=response.status_code,
                body=response.content.decode(),
                created_at=now,
                expires_at=now + settings.HITL_API_IDEMPOTENCY_TTL,
            )
    except IntegrityError:
        # Another request with the key committed between our lock and our insert: the
        # advisory lock makes this all but impossible, and the constraint harmless. Raising
        # rolls back this request's writes with it.
        raise _in_flight() from None
    return response


def _run(view: Callable[..., Any], request: HttpRequest, args: Any, kwargs: Any) -> HttpResponse:
    """The operation's answer, refusals included; its writes are undone when it refuses."""
    try:
        with transaction.atomic():
            return render(view(request, *args, **kwargs))
    except Exception as exc:
        response = error_response(exc)
        if response is None:
            raise
        return response


def _in_flight() -> ApiError:
    return ApiError(
        409,
        "idempotency_in_flight",
        f"a request with this {HEADER} is still being processed: retry shortly",
        headers={"Retry-After": "1"},
    )


def _lock_key(scope: tuple[int, str, str, str]) -> int:
    """A signed 64-bit advisory lock key for the scope. A collision only makes an unrelated
    request answer 409 once; the one-argument (bigint) lock space is apart from the
    two-argument one the engine's locks use."""
    digest = hashlib.sha256("\n".join(map(str, scope)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def idempotency_sweep(*, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete expired records, in batches (short transactions); returns how many."""
    now = now or timezone.now()
    deleted = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[
                :batch
            ]
        )
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]


def idempotent_post(router: Any, path: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`router.post`, made idempotent and with the header documented: every POST of the API
    is declared through this, so none can miss it."""
    extra = options.pop("openapi_extra", None) or {}
    extra = {**extra, "parameters": [*extra.get("parameters", []), HEADER_PARAMETER]}

    def decorate(view: Callable[..., Any]) -> Any:
        return router.post(path, openapi_extra=extra, **options)(idempotent(view))

    return decorate
