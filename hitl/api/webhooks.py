"""POST /api/v1/webhooks/<source>/: a delivery signed in the Standard Webhooks format starts a run.

A plain Django view (the signature is the authentication: no session, no CSRF token). Every
refusal is a JSON 4xx in the API's error shape, `{"error": {"code", "message", "details"}}`,
and leaves nothing behind; the rules themselves are in `workflows.services.webhooks`.

Answers: 202 `{"run", "status", "duplicate": false}` for a new run; 200 with
`"duplicate": true` and the same run for a webhook-id this source has already accepted.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.urls import re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from workflows.services.webhooks import WebhookRejected, webhook_receive


def error_response(
    status: int, code: str, message: str, details: Any = None, **headers: str
) -> JsonResponse:
    response = JsonResponse(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The body, never more than `limit` bytes read: Content-Length is checked first."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length:
        raise WebhookRejected(411, "length_required", "send the body with a Content-Length")
    if not length.isdigit():
        raise WebhookRejected(400, "invalid_headers", "Content-Length is not a number")
    if int(length) > limit:
        raise WebhookRejected(
            413, "body_too_large", f"the body is over {limit} bytes", details={"limit": limit}
        )
    try:
        body = request.read(limit + 1)
    except (UnreadablePostError, OSError):
        raise WebhookRejected(400, "invalid_body", "the body could not be read") from None
    if len(body) != int(length):
        raise WebhookRejected(400, "invalid_body", "the body is shorter than its Content-Length")
    return body


@csrf_exempt
def receive(request: HttpRequest, source: str) -> JsonResponse:
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "use POST", Allow="POST")
    try:
        body = read_body(request, settings.HITL_WEBHOOK_MAX_BYTES)
        delivery = webhook_receive(
            source_slug=source, headers=request.headers, body=body, now=timezone.now()
        )
    except WebhookRejected as exc:
        extra = {} if exc.retry_after is None else {"Retry_After": str(exc.retry_after)}
        return error_response(exc.status_code, exc.code, exc.message, exc.details, **extra)
    return JsonResponse(
        {"run": delivery.run_id, "status": delivery.status, "duplicate": delivery.duplicate},
        status=200 if delivery.duplicate else 202,
    )


# Any segment, with or without the trailing slash: an unknown or odd source name gets the
# JSON 404 rather than an HTML page, and a POST without the slash is never redirected
# (APPEND_SLASH would drop its body).
urlpatterns = [re_path(r"^(?P<source>[^/]+)/?$", receive, name="webhook-receive")]
