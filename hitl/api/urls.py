"""/api/v1/ (the API) and /api/docs (its interactive documentation)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from csp.decorators import csp_update
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from hitl.api.errors import json_error
from hitl.api.v1 import api


# The one page under a wider Content Security Policy (settings): Swagger UI's stylesheet draws
# its icons as data: URIs. Its scripts and styles are files, as everywhere else.
@csp_update({"img-src": ["data:"]})
def docs(request: HttpRequest) -> HttpResponse:
    return api.docs.render_page(request, api)


def _shaped(view: Callable[..., Any]) -> Callable[..., Any]:
    """django-ninja answers a method an endpoint does not have with a bare 405: give it
    the API's error body."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            return json_error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here",
                headers={"Allow": response.get("Allow", "")},
            )
        return response

    return wrapper


def _v1() -> tuple[list[Any], str, str]:
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback = _shaped(pattern.callback)
    return patterns, app_name, namespace


urlpatterns = [
    path("v1/", _v1()),
    path("docs", docs, name="api-docs"),
]
