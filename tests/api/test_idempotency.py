"""Idempotency-Key on POSTs: replay, reuse with another body, in flight, concurrency, expiry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from hitl.api.idempotency import idempotency_sweep
from hitl.api.models import IdempotencyRecord
from tests.api.conftest import Api, error_of
from tests.helpers import database_state, drive
from workflows import services
from workflows.models import Run, Workflow

START = "/workflows/expenses/runs"


@pytest.fixture
def api(api_for: Callable[..., Api], owner: User, wait_workflow: Workflow) -> Api:
    return api_for(owner)


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_first_answer(api: Api) -> None:
    first = api.post(START, {"input": {"amount": 3}}, key="k-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    again = api.post(START, {"input": {"amount": 3}}, key="k-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Run.objects.count() == 1
    # Another key is another request.
    assert api.post(START, {"input": {"amount": 3}}, key="k-2").status_code == 201
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_422(api: Api) -> None:
    api.post(START, {"input": {"amount": 3}}, key="k")
    before = database_state()
    response = api.post(START, {"input": {"amount": 4}}, key="k")
    assert response.status_code == 422
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert database_state() == before


@pytest.mark.django_db
def test_keys_are_scoped_to_the_token_and_the_path(
    api: Api, api_for: Callable[..., Api], owner: User, system: services.Actor
) -> None:
    other_token = api_for(owner)
    assert api.post(START, {"input": {"amount": 3}}, key="k").status_code == 201
    assert other_token.post(START, {"input": {"amount": 3}}, key="k").status_code == 201
    assert Run.objects.count() == 2
    one, two = Run.objects.order_by("pk")
    assert api.post(f"/runs/{one.pk}/cancel", key="k").status_code == 200
    assert api.post(f"/runs/{two.pk}/cancel", key="k").status_code == 200
    assert set(Run.objects.values_list("status", flat=True)) == {Run.Status.CANCELLED}


@pytest.mark.django_db
def test_refusals_are_replayed_too(api: Api) -> None:
    first = api.post(START, {"input": {"amount": "lots"}}, key="k")
    assert first.status_code == 400
    again = api.post(START, {"input": {"amount": "lots"}}, key="k")
    assert again.status_code == 400 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


@pytest.mark.django_db
def test_validation_errors_come_before_the_key_and_are_not_kept(api: Api) -> None:
    assert api.post(START, {"inptu": {"amount": 3}}, key="k").status_code == 422
    assert not IdempotencyRecord.objects.exists()
    assert api.post(START, {"input": {"amount": 3}}, key="k").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", " ", "é", "a b", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_400(api: Api, key: str) -> None:
    before = database_state()
    response = api.post(START, {"input": {"amount": 3}}, key=key)
    assert response.status_code == 400 and error_of(response)["code"] == "bad_idempotency_key"
    assert database_state() == before


@pytest.mark.django_db
def test_a_server_error_keeps_nothing_and_the_retry_runs(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> Run:
        services.run_start(
            workflow=kwargs["workflow"], input=kwargs["input"], actor=kwargs["actor"]
        )
        raise RuntimeError("the process broke after writing")

    monkeypatch.setattr("hitl.api.workflows.run_start_as", broken)
    response = api.post(START, {"input": {"amount": 3}}, key="k")
    assert response.status_code == 500 and error_of(response)["code"] == "internal_error"
    # The run the broken request wrote went with its transaction, and so did the record.
    assert not Run.objects.exists() and not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    assert api.post(START, {"input": {"amount": 3}}, key="k").status_code == 201


@pytest.mark.django_db
def test_records_expire_and_are_swept(api: Api, settings: Any) -> None:
    api.post(START, {"input": {"amount": 3}}, key="old")
    api.post(START, {"input": {"amount": 3}}, key="new")
    now = timezone.now()
    IdempotencyRecord.objects.filter(key="old").update(expires_at=now - timedelta(seconds=1))
    # Expired but not yet swept: the key runs again, and is kept anew.
    assert api.post(START, {"input": {"amount": 5}}, key="old").status_code == 201
    assert Run.objects.count() == 3
    IdempotencyRecord.objects.filter(key="old").update(expires_at=now - timedelta(seconds=1))
    assert idempotency_sweep(now=now) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.created_at == settings.HITL_API_IDEMPOTENCY_TTL


# --- Concurrency, on real transactions -----------------------------------------------------


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:
            result.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def wait_until_blocked_on_a_lock(deadline: float = 30.0) -> None:
    """Until some other session waits for a lock (pg_locks is read live, not snapshotted)."""
    stop = time.monotonic() + deadline
    with connection.cursor() as cursor:
        while time.monotonic() < stop:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("no request ever blocked")


@pytest.mark.django_db(transaction=True)
def test_a_repeat_while_the_first_is_in_flight_is_a_409(
    api: Api, wait_workflow: Workflow, system: services.Actor
) -> None:
    run = drive(services.run_start(workflow=wait_workflow, input={"amount": 1}, actor=system))
    path = f"/runs/{run.pk}/cancel"
    with transaction.atomic():
        # Hold the run's row: the first cancel blocks inside its service, key taken.
        Run.objects.select_for_update().get(pk=run.pk)
        first, first_result = in_thread(lambda: api.post(path, {"reason": "a"}, key="k"))
        wait_until_blocked_on_a_lock()
        second, second_result = in_thread(lambda: api.post(path, {"reason": "a"}, key="k"))
        second.join(timeout=60)
        (repeat,) = second_result
        assert repeat.status_code == 409, repeat.content
        assert error_of(repeat)["code"] == "idempotency_in_flight"
        assert repeat["Retry-After"] == "1"
    first.join(timeout=60)
    (original,) = first_result
    assert original.status_code == 200 and original.json()["status"] == "cancelled"
    replay = api.post(path, {"reason": "a"}, key="k")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert replay.content == original.content
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_start_one_run(api: Api) -> None:
    count = 8
    barrier = threading.Barrier(count)

    def send() -> Any:
        barrier.wait()
        return api.post(START, {"input": {"amount": 7}}, key="same")

    started = [in_thread(send) for _ in range(count)]
    for thread, _ in started:
        thread.join(timeout=60)
    responses = [result[0] for _, result in started]
    assert all(not isinstance(r, Exception) for r in responses), responses
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert len([r for r in created if "Idempotent-Replayed" not in r]) == 1
    assert len({r.content for r in created}) == 1
    assert Run.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
    connection.close()
