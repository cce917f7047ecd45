"""`GET /api/v1/runs/{id}?wait=N`: answer when the run has finished, or after N seconds.

The wait polls the run's status with one small query every `HITL_API_WAIT_POLL_SECONDS`.
Between polls it holds no transaction and no lock (each poll is its own autocommit
statement), so a waiting client never holds back the worker that finishes the run; the
thread's connection is kept for the next poll unless it broke or aged out meanwhile.

A wait occupies a request thread, so each process takes at most `HITL_API_MAX_WAITS` at
once; beyond that the API answers 429 with `Retry-After` instead of queueing threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from hitl.api.errors import ApiError
from workflows.models import Run
from workflows.selectors_runs import run_status

MAX_WAIT_SECONDS = 30

_lock = threading.Lock()
_active = 0


def active_waits() -> int:
    """How many waits this process is serving now."""
    return _active


@contextmanager
def wait_slot() -> Iterator[None]:
    global _active
    with _lock:
        if _active >= settings.HITL_API_MAX_WAITS:
            raise ApiError(
                429,
                "too_many_waits",
                f"this server is already serving {settings.HITL_API_MAX_WAITS} waits:"
                " retry shortly, or poll without ?wait=",
                headers={"Retry-After": "1"},
            )
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1


def wait_for_run(run_id: int, seconds: float) -> None:
    """Return once run `run_id` has finished, or after `seconds`."""
    if seconds <= 0 or run_status(run_id=run_id) in Run.FINISHED:
        return
    if connection.in_atomic_block:
        # Inside a transaction (ATOMIC_REQUESTS, a test) a wait would hold it open for its
        # whole length, and a REPEATABLE READ snapshot would never see the run finish.
        return
    deadline = time.monotonic() + seconds
    with wait_slot():
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(settings.HITL_API_WAIT_POLL_SECONDS, remaining))
            # Drop a connection that broke (a restarted server) or outlived CONN_MAX_AGE
            # while we slept; the next query opens a fresh one.
            connection.close_if_unusable_or_obsolete()
            if run_status(run_id=run_id) in Run.FINISHED:
                return
