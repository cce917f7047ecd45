"""`Client`: hitl's REST API (`/api/v1/`) with typed answers.

Every POST gets an `Idempotency-Key` (a fresh UUID unless the caller gives one), so the
client's own retries, and a caller's retry with the same key, act once. Lists are iterators
that follow `next_cursor` page by page, fetching the next page only when it is reached.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx

from hitl_client._http import Retrying, Sleep, json_of
from hitl_client.errors import RunTimeout
from hitl_client.models import (
    Action,
    Run,
    RunStatus,
    RunSummary,
    Task,
    TaskStatus,
    TaskSummary,
    Workflow,
)

# The longest `?wait=` the server takes (hitl.api.waits.MAX_WAIT_SECONDS).
MAX_WAIT = 30.0
# A wait that came back early with an unfinished run (the server could not wait: it was
# busy, say) is followed by this pause before the next one, so the loop never spins.
EARLY_PAUSE = 1.0

T = TypeVar("T")


class Client:
    """hitl's API, authenticated with an API token (`hitl_…`, made at /accounts/tokens/).

    `transport` is httpx's (a proxy, a test's); `sleep` and `clock` are the waits' seams.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_retries: int = 3,
        max_retry_after: float = 60.0,
        sleep: Sleep | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._clock = clock
        self._http = Retrying(
            base_url=f"{self.base_url}/api/v1",
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
            timeout=timeout,
            transport=transport,
            max_retries=max_retries,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- requests -----------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None, **options: Any) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        return json_of(self._http.send("GET", path, params=params, **options))

    def _post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        # One key for every attempt of this call: that is what makes the retries safe.
        key = idempotency_key or str(uuid.uuid4())
        options: dict[str, Any] = {} if body is None else {"json": body}
        response = self._http.send(
            "POST", path, headers=lambda: {"idempotency-key": key}, **options
        )
        return json_of(response)

    def _pages(self, path: str, params: dict[str, Any], item: Callable[[Any], T]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            page = self._get(path, {**params, "cursor": cursor})
            for data in page["items"]:
                yield item(data)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    # --- workflows ----------------------------------------------------------------------

    def list_workflows(self, *, page_size: int = 50) -> Iterator[Workflow]:
        """The workflows the token's user has a role in, by slug."""
        return self._pages("/workflows", {"limit": page_size}, Workflow.from_json)

    def get_workflow(self, slug: str) -> Workflow:
        return Workflow.from_json(self._get(f"/workflows/{slug}"))

    # --- runs ---------------------------------------------------------------------------

    def start_run(
        self,
        workflow: str,
        input: Any,
        *,
        version: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run of `workflow` (a slug) on its active version, or on `version`.

        `callback_url` sends the run's events to that endpoint: it must be exactly the URL of
        one of the workflow's webhook endpoints, which an admin configures (else a 400).
        Pass your own `idempotency_key` (an order number, say) to make a retry of the whole
        call, even from another process, start one run: hitl keeps keys for 24 hours.
        """
        body: dict[str, Any] = {"input": input}
        if version is not None:
            body["version"] = version
        if callback_url is not None:
            body["callback_url"] = callback_url
        return Run.from_json(
            self._post(f"/workflows/{workflow}/runs", body, idempotency_key=idempotency_key)
        )

    def get_run(self, run_id: int, *, wait: float = 0) -> Run:
        """A run with its steps. With `wait` (at most 30 s), hitl answers as soon as the run
        has finished, or when the time is up, whatever its status."""
        if not 0 <= wait <= MAX_WAIT:
            raise ValueError(f"wait is 0 to {MAX_WAIT:g} seconds; use wait_for_run for longer")
        params = {"wait": _number(wait)} if wait else None
        # The read may take the whole wait, and then the usual time to answer.
        return Run.from_json(self._get(f"/runs/{run_id}", params, timeout=self.timeout + wait))

    def wait_for_run(self, run_id: int, timeout: float = 300.0) -> Run:
        """The run once it has finished (completed, failed or cancelled), waiting on the
        server (`?wait=`, 30 s at a time) for up to `timeout` seconds; RunTimeout after."""
        clock = self._clock or time.monotonic
        deadline = clock() + timeout
        while True:
            remaining = deadline - clock()
            wait = max(0.0, min(MAX_WAIT, remaining))
            asked = clock()
            run = self.get_run(run_id, wait=wait)
            if run.finished:
                return run
            remaining = deadline - clock()
            if remaining <= 0:
                raise RunTimeout(run, timeout)
            if clock() - asked < wait:
                self._http.sleep(min(EARLY_PAUSE, remaining))

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | None = None,
        outcome: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 50,
    ) -> Iterator[RunSummary]:
        """The runs the token may read, newest first. `outcome` is "approved", "rejected" or
        "none" (not settled yet); `created_after` is inclusive, `created_before` exclusive."""
        params = {
            "workflow": workflow,
            "status": status,
            "outcome": outcome,
            "created_after": _iso(created_after),
            "created_before": _iso(created_before),
            "limit": page_size,
        }
        return self._pages("/runs", params, RunSummary.from_json)

    def cancel_run(
        self, run_id: int, *, reason: str = "", idempotency_key: str | None = None
    ) -> Run:
        """Cancel a run that has not finished (a workflow admin's token)."""
        return Run.from_json(
            self._post(
                f"/runs/{run_id}/cancel", {"reason": reason}, idempotency_key=idempotency_key
            )
        )

    def resume_run(
        self,
        run_id: int,
        *,
        output: Any = None,
        outcome: str = "",
        step: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Complete the `wait` step the run waits at (or `step`) with `output` and
        `outcome`, and carry on. A gate is decided through its task instead."""
        body: dict[str, Any] = {"output": output, "outcome": outcome}
        if step is not None:
            body["step"] = step
        return Run.from_json(
            self._post(f"/runs/{run_id}/resume", body, idempotency_key=idempotency_key)
        )

    # --- review tasks -------------------------------------------------------------------

    def list_tasks(
        self,
        *,
        workflow: str | None = None,
        status: TaskStatus | None = None,
        min_priority: int | None = None,
        reason: str | None = None,
        mine: bool = False,
        actionable: bool = False,
        page_size: int = 50,
    ) -> Iterator[TaskSummary]:
        """The review queue in its order (priority, SLA, age); open and claimed tasks unless
        `status` says otherwise. `actionable`: only those the token's user may decide."""
        params = {
            "workflow": workflow,
            "status": status,
            "min_priority": min_priority,
            "reason": reason,
            "mine": "true" if mine else None,
            "actionable": "true" if actionable else None,
            "limit": page_size,
        }
        return self._pages("/tasks", params, TaskSummary.from_json)

    def get_task(self, task_id: int) -> Task:
        return Task.from_json(self._get(f"/tasks/{task_id}"))

    def claim_task(self, task_id: int, *, idempotency_key: str | None = None) -> Task:
        """Claim a task for a while (or renew your own claim)."""
        return Task.from_json(
            self._post(f"/tasks/{task_id}/claim", idempotency_key=idempotency_key)
        )

    def release_task(self, task_id: int, *, idempotency_key: str | None = None) -> Task:
        return Task.from_json(
            self._post(f"/tasks/{task_id}/release", idempotency_key=idempotency_key)
        )

    def decide_task(
        self,
        task_id: int,
        action: Action,
        *,
        reason: str = "",
        output: Any = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Approve, reject, edit or escalate. Reject, edit and escalate need a `reason`;
        edit needs the whole edited `output`."""
        body: dict[str, Any] = {"action": action, "reason": reason}
        if output is not None:
            body["output"] = output
        return Task.from_json(
            self._post(f"/tasks/{task_id}/decide", body, idempotency_key=idempotency_key)
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _number(seconds: float) -> str:
    return f"{seconds:g}" if seconds == int(seconds) else f"{seconds:.3f}"
