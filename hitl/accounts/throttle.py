"""Login throttling with django-axes: which address a login comes from, and the lockout page.

Failed logins are counted per username and address together (settings, "Login throttling").
Both functions are named in the settings (AXES_CLIENT_IP_CALLABLE, AXES_LOCKOUT_CALLABLE).
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime

from axes.conf import settings
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def client_ip(request: HttpRequest) -> str | None:
    """The address failed logins are counted against.

    REMOTE_ADDR, unless HITL_TRUSTED_PROXY_COUNT says N reverse proxies stand in front: each
    appends the address it was reached from to X-Forwarded-For, so the client is the Nth entry
    from the right. Whatever lies further left was written by the client and is never read.
    A header with fewer entries than that did not come through every proxy: REMOTE_ADDR.
    """
    remote = request.META.get("REMOTE_ADDR")
    count = settings.HITL_TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    forwarded = [part.strip() for part in header.split(",") if part.strip()]
    if len(forwarded) < count:
        return remote
    try:
        return str(ipaddress.ip_address(forwarded[-count]))
    except ValueError:
        return remote


def request_time(request: HttpRequest) -> datetime:
    """The time axes stamped on this request, which its lockout arithmetic uses."""
    return getattr(request, "axes_attempt_time", None) or timezone.now()


def locked_until(request: HttpRequest, username: str | None) -> datetime:
    """When this username may log in from this address again.

    The lockout lasts the cool-off from the failure that reached the limit; failures refused
    during it are not recorded (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT is off), so the
    time does not move.
    """
    cool_off = get_cool_off(request) or settings.AXES_COOLOFF_TIME
    last = AccessAttempt.objects.filter(
        username=username, ip_address=getattr(request, "axes_ip_address", None)
    ).aggregate(last=Max("attempt_time"))["last"]
    return (last or request_time(request)) + cool_off


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, object] | None = None,
) -> HttpResponse:
    """The page a locked-out login gets: 429, when to try again, and a Retry-After header."""
    username = get_client_username(request, credentials)
    retry_at = locked_until(request, username)
    seconds = max(1, math.ceil((retry_at - request_time(request)).total_seconds()))
    response = render(
        request,
        "registration/locked_out.html",
        {
            "username": username or "",
            "failure_limit": get_failure_limit(request, credentials),
            "retry_at": retry_at,
            "minutes": math.ceil(seconds / 60),
        },
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
    response["Retry-After"] = str(seconds)
    return response
