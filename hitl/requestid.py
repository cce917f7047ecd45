"""A request id on every request: taken from `X-Request-ID` when the caller (or a proxy in
front) sent a sensible one, made up otherwise; echoed on the response, and bound to the log
context (workflows/logs.py) so every line logged while serving the request carries it.

Each request also logs one line (`hitl.request`, INFO) with its method, path, status and
duration, which is the access log that carries the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from workflows import logs

HEADER = "X-Request-ID"
# Letters, digits and . _ - : up to 128; anything else (or nothing) gets a fresh id, so a
# caller cannot put newlines or markup into the logs.
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
logger = logging.getLogger("hitl.request")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(HEADER, "")
        request_id = given if VALID.match(given) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.monotonic()
        with logs.bound(request_id=request_id):
            response = self.get_response(request)
            logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
        response[HEADER] = request_id
        return response
