"""The client's exceptions: one base, and one class per thing a caller handles differently.

- `ApiError`: hitl answered with a refusal (any 4xx/5xx). hitl's error body is always
  `{"error": {"code", "message", "details"}}`; `code` is stable and meant for programs.
- `NetworkError`: no answer at all, after the retries (refused connection, timeout).
- `RunTimeout`: `wait_for_run` ran out of time; the run goes on, the last state is kept.
- `CallbackVerificationError`: a callback that must not be trusted, whatever the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hitl_client.models import Run


class HitlError(Exception):
    """Everything this package raises on purpose."""


class ApiError(HitlError):
    """A refusal from hitl: the HTTP status and the error body's fields.

    `retry_after` is the answer's Retry-After in seconds, if it had one (429, 503, an
    Idempotency-Key still in flight): how long the server asked us to wait.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class NetworkError(HitlError):
    """No HTTP answer came back (after the client's retries): the cause is chained."""


class RunTimeout(HitlError, TimeoutError):
    """`wait_for_run` gave up before the run finished. The run itself is not cancelled."""

    def __init__(self, run: Run, timeout: float) -> None:
        super().__init__(
            f"run {run.id} is still {run.status} after {timeout:g} s (it goes on; wait again,"
            " or cancel it)"
        )
        self.run = run
        self.timeout = timeout


class CallbackVerificationError(HitlError):
    """A callback that failed verification: bad or missing signature headers, a signature
    no secret matches, a timestamp outside the tolerance, or a body that is not an event.
    Answer it with a 4xx and do not act on it."""
