"""Sending one request, with bounded retries: what `Client` and `WebhookSender` share.

A request is retried only when retrying cannot do it twice: every POST the client sends
carries an `Idempotency-Key` (the API) or a `webhook-id` (a webhook), the same on each
attempt, so hitl answers a retry with the first answer instead of acting again. Retried:
no answer at all (refused connection, timeout, a dropped connection), 429 and 502/503/504,
and 409 `idempotency_in_flight` (our own earlier attempt is still running). The wait is the
answer's `Retry-After` when it has one, else an exponential backoff; a `Retry-After` longer
than `max_retry_after` is not slept through but raised, for the caller to schedule.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

from hitl_client.errors import ApiError, NetworkError

__version__ = "0.1.0"
USER_AGENT = f"hitl-client/{__version__}"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Failures after which the request may not have reached the server, or its answer was lost.
RETRY_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

Sleep = Callable[[float], None]


class Retrying:
    """An `httpx.Client` and the retry policy around each of its requests."""

    def __init__(
        self,
        *,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float,
        transport: httpx.BaseTransport | None,
        max_retries: int,
        max_retry_after: float,
        sleep: Sleep | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.http = httpx.Client(
            base_url=base_url,
            headers={"user-agent": USER_AGENT, **(headers or {})},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        # Looked up at each call when not given, so the default is always the real one.
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        (self._sleep or time.sleep)(seconds)

    def close(self) -> None:
        self.http.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Callable[[], dict[str, str]] | None = None,
        **options: Any,
    ) -> httpx.Response:
        """The 2xx answer to the request, after retries; ApiError or NetworkError otherwise.

        `headers` is called before each attempt (a webhook signs each attempt afresh).
        """
        attempt = 0
        while True:
            try:
                response = self.http.request(
                    method, url, headers=headers() if headers else None, **options
                )
            except RETRY_EXCEPTIONS as exc:
                if attempt >= self.max_retries:
                    raise NetworkError(
                        f"{method} {url}: no answer after {attempt + 1} attempt(s): {exc!r}"
                    ) from exc
                delay = backoff(attempt)
            except httpx.HTTPError as exc:
                # A URL httpx cannot send to, a proxy refusing ...: retrying will not help.
                raise NetworkError(f"{method} {url}: {exc!r}") from exc
            else:
                if response.is_success:
                    return response
                error = api_error(response)
                if attempt >= self.max_retries or not retryable(error):
                    raise error
                delay = backoff(attempt) if error.retry_after is None else error.retry_after
                if delay > self.max_retry_after:
                    raise error
            self.sleep(delay)
            attempt += 1


def retryable(error: ApiError) -> bool:
    return error.status in RETRY_STATUSES or (
        error.status == 409 and error.code == "idempotency_in_flight"
    )


def backoff(attempt: int) -> float:
    """0.5 s, 1 s, 2 s ... at most 8 s."""
    return float(min(8.0, 0.5 * 2**attempt))


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date; None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def api_error(response: httpx.Response) -> ApiError:
    """The ApiError for a refusal: hitl's `{"error": {...}}` body, or, for an answer that is
    not one (a proxy's HTML page), the status with the start of the body as the message."""
    delay = retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
        error = body["error"]
        code, message = error["code"], error["message"]
        if not isinstance(code, str) or not isinstance(message, str):
            raise TypeError(code)
    except (ValueError, TypeError, KeyError):
        text = response.text[:300].strip() or response.reason_phrase
        return ApiError(
            response.status_code, f"http_{response.status_code}", text, retry_after=delay
        )
    return ApiError(response.status_code, code, message, error.get("details"), retry_after=delay)


def json_of(response: httpx.Response) -> Any:
    """The body of a 2xx answer as JSON; an ApiError (`unexpected_response`) if it is not."""
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            response.status_code,
            "unexpected_response",
            f"the answer is not JSON: {response.text[:200]!r}",
        ) from None
