"""One error body for every refusal the API makes:

    {"error": {"code": "...", "message": "...", "details": ...}}

Services raise `ServiceError`s carrying their status code; the API raises `ApiError`; django-
ninja raises its own for authentication, validation and unparseable bodies. `error_response`
turns each into that body, and nothing a client sends may produce a 500: an unexpected
exception is logged and answered with the same shape.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.views import defaults
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import NinjaJSONEncoder

from workflows.errors import Conflict, InvalidInput, NotAllowed, ServiceError

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json; charset=utf-8"

# The code each status gets when the error does not name a more precise one.
CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
}
_SERVICE_CODES: dict[type[ServiceError], str] = {
    InvalidInput: "invalid_input",
    Conflict: "conflict",
    NotAllowed: "forbidden",
}


class ApiError(Exception):
    """A refusal by the API itself (a missing scope, a bad cursor, a key reused ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def json_error(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = HttpResponse(
        json.dumps({"error": error}, cls=NinjaJSONEncoder), status=status, content_type=CONTENT_TYPE
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="hitl"'
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(exc: Exception) -> HttpResponse | None:
    """The error answer for `exc`, or None when it is not a refusal (a bug: the caller
    decides whether to log it as one)."""
    if isinstance(exc, ApiError):
        return json_error(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, ServiceError):
        code = next(
            (c for cls, c in _SERVICE_CODES.items() if isinstance(exc, cls)),
            CODES.get(exc.status_code, "error"),
        )
        return json_error(exc.status_code, code, str(exc))
    if isinstance(exc, ValidationError):
        return json_error(
            422, "validation_error", "the request is not valid", _jsonable(exc.errors)
        )
    if isinstance(exc, AuthenticationError):
        return json_error(401, "unauthenticated", "missing or unknown bearer token")
    if isinstance(exc, HttpError):
        cause = exc.__cause__
        if isinstance(cause, ApiError):
            # The body parser's own refusal, which django-ninja wraps.
            return error_response(cause)
        if exc.status_code == 400 and isinstance(cause, Exception):
            return json_error(400, "malformed_json", "the request body is not valid JSON")
        return json_error(exc.status_code, CODES.get(exc.status_code, "error"), exc.message)
    if isinstance(exc, Http404):
        return json_error(404, "not_found", "not found")
    if isinstance(exc, RequestDataTooBig):
        return json_error(413, "too_large", "the request body is too large")
    return None


def _jsonable(value: Any) -> Any:
    """Validation details, with anything JSON cannot carry (a compiled pattern, an
    exception) turned into text."""
    return json.loads(json.dumps(value, default=str))


def _handle(request: HttpRequest, exc: Any) -> HttpResponse:
    response = error_response(exc)
    if response is None:
        logger.exception("API request %s %s failed", request.method, request.path, exc_info=exc)
        return json_error(500, "internal_error", "the server failed to answer; it was logged")
    return response


def install(api: NinjaAPI) -> None:
    """Route every exception the API can meet through `error_response`."""
    for exc_class in (Exception, Http404, HttpError, ValidationError):
        api.add_exception_handler(exc_class, _handle)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's 404 handler: the API's shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error(404, "not_found", f"no endpoint at {request.path}")
    return defaults.page_not_found(request, exception)
