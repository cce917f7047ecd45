"""`GET /runs/{id}?wait=N`: early return when the run finishes, no transaction held between
polls, and the per-process cap (429)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from hitl.api import waits
from tests.api.conftest import Api, error_of
from tests.helpers import drive
from workflows import services
from workflows.models import Run, Workflow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _quick_polls(settings: Any) -> None:
    settings.HITL_API_WAIT_POLL_SECONDS = 0.02


@pytest.fixture
def api(api_for: Callable[..., Api], owner: User, wait_workflow: Workflow) -> Api:
    return api_for(owner)


@pytest.fixture
def waiting(wait_workflow: Workflow, system: services.Actor) -> Run:
    return drive(services.run_start(workflow=wait_workflow, input={"amount": 2}, actor=system))


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def until(condition: Callable[[], bool], deadline: float = 30.0) -> None:
    stop = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > stop:
            raise AssertionError("the condition never held")
        time.sleep(0.005)


def idle_in_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
        )
        return int(cursor.fetchone()[0])


def test_the_wait_returns_as_soon_as_the_run_finishes(
    api: Api, waiting: Run, system: services.Actor
) -> None:
    thread, result = in_thread(lambda: api.get(f"/runs/{waiting.pk}", {"wait": "30"}))
    until(lambda: waits.active_waits() == 1)
    # While it polls, the waiter holds no transaction open.
    for _ in range(5):
        assert idle_in_transaction() == 0
        time.sleep(0.02)
    # Another thread (this one) drives the run to its end.
    services.run_resume(run=waiting, step_id="hold", actor=system, outcome="ok")
    drive(waiting)
    # Answered well before the 30 s were up.
    thread.join(timeout=20)
    assert not thread.is_alive()
    (response,) = result
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["output"] == {"booked": 2}
    assert waits.active_waits() == 0
    connection.close()


def test_when_the_time_is_up_the_run_is_answered_as_it_is(api: Api, waiting: Run) -> None:
    response = api.get(f"/runs/{waiting.pk}", {"wait": "0.1"})
    assert response.status_code == 200 and response.json()["status"] == "waiting"
    assert waits.active_waits() == 0
    connection.close()


def test_waits_beyond_the_cap_get_a_429(
    api: Api, waiting: Run, settings: Any, wait_workflow: Workflow, system: services.Actor
) -> None:
    settings.HITL_API_MAX_WAITS = 1
    thread, result = in_thread(lambda: api.get(f"/runs/{waiting.pk}", {"wait": "30"}))
    until(lambda: waits.active_waits() == 1)
    refused = api.get(f"/runs/{waiting.pk}", {"wait": "5"})
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "too_many_waits"
    assert refused["Retry-After"] == "1"
    # No wait, or nothing to wait for, takes no slot.
    assert api.get(f"/runs/{waiting.pk}").status_code == 200
    done = services.run_start(workflow=wait_workflow, input={"amount": 1}, actor=system)
    services.run_cancel(run=done, actor=system)
    assert api.get(f"/runs/{done.pk}", {"wait": "5"}).status_code == 200
    # A run out of reach is a 404 before any wait.
    assert api.get("/runs/999999", {"wait": "5"}).status_code == 404
    services.run_cancel(run=waiting, actor=system)
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert result[0].json()["status"] == "cancelled"
    assert waits.active_waits() == 0
    assert api.get(f"/runs/{waiting.pk}", {"wait": "5"}).status_code == 200
    connection.close()
