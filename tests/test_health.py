"""`/healthz` and `/readyz`: every check up and down, on the real database and Redis.

Staleness is tested by moving `now`, never by waiting.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.signals import after_task_publish
from django.db import connections
from django.db.utils import load_backend
from django.test import Client

from hitl import health
from hitl.celery import QUEUES

NOW = 1_900_000_000.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client_redis() -> Iterator[redis.Redis]:
    """The broker's Redis with no liveness records in it, before and after."""
    client = health.broker()

    def clean() -> None:
        for key in client.scan_iter(match="hitl:health:*"):
            client.delete(key)

    clean()
    yield client
    clean()
    client.close()


@pytest.fixture
def unreachable_database() -> Iterator[Any]:
    """A real connection to a port nobody listens on, with a password that must not leak."""
    settings_dict = {
        **connections["default"].settings_dict,
        "HOST": "127.0.0.1",
        "PORT": str(closed_port()),
        "PASSWORD": "s3cret-db-password",
    }
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "unreachable")
    yield wrapper
    wrapper.close()


def all_up(client: redis.Redis, now: float) -> None:
    health.record_worker(client, "w1@host", ["default", "callbacks"], now)
    health.record_worker(client, "ai@host", ["ai"], now)
    health.record_beat(client, now)


def states(results: dict[str, health.Check]) -> dict[str, str]:
    return {name: check.as_json()["state"] for name, check in results.items()}


# --- /healthz ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_answers_without_login_and_without_touching_the_database(
    client: Client, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


# --- /readyz, each check ---------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_is_200_when_every_check_is_up(client: Client, client_redis: redis.Redis) -> None:
    all_up(client_redis, time.time())
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "redis", "workers", "beat"}
    assert {check["state"] for check in body["checks"].values()} == {"up"}
    assert "ai: 1" in body["checks"]["workers"]["detail"]


@pytest.mark.django_db
def test_database_down_is_named_without_its_password_or_host(
    client_redis: redis.Redis, unreachable_database: Any
) -> None:
    all_up(client_redis, NOW)
    ready, results = health.readiness(now=NOW, conn=unreachable_database)
    assert not ready
    assert states(results) == {"database": "down", "redis": "up", "workers": "up", "beat": "up"}
    assert results["database"].detail == "OperationalError"
    text = json.dumps({name: check.as_json() for name, check in results.items()})
    assert "s3cret" not in text
    assert unreachable_database.settings_dict["PORT"] not in text


@pytest.mark.django_db
def test_redis_down_is_503_and_takes_the_checks_that_read_it_down_too(
    client: Client, settings: Any
) -> None:
    port = closed_port()
    settings.CELERY_BROKER_URL = f"redis://:s3cret-redis@127.0.0.1:{port}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["state"] == "up"
    assert checks["redis"] == {"state": "down", "detail": "ConnectionError"}
    assert checks["workers"] == {"state": "down", "detail": "Redis is down"}
    assert checks["beat"] == {"state": "down", "detail": "Redis is down"}
    assert b"s3cret" not in response.content
    assert str(port).encode() not in response.content


@pytest.mark.django_db
def test_a_malformed_broker_url_is_a_503_never_a_500(client: Client, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "nonsense://:s3cret@host/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == {"state": "down", "detail": "ValueError"}
    assert b"s3cret" not in response.content


def test_no_worker_heartbeat_names_every_queue(client_redis: redis.Redis) -> None:
    check = health.check_workers(client_redis, QUEUES, NOW)
    assert not check.up
    assert "for default, ai, callbacks" in check.detail


def test_a_queue_without_a_worker_keeps_readiness_down(client_redis: redis.Redis) -> None:
    health.record_worker(client_redis, "w1@host", ["default", "callbacks"], NOW)
    check = health.check_workers(client_redis, QUEUES, NOW)
    assert not check.up
    assert "for ai " in check.detail
    health.record_worker(client_redis, "ai@host", ["ai"], NOW)
    assert health.check_workers(client_redis, QUEUES, NOW).up


def test_a_worker_heartbeat_goes_stale_after_its_window_and_expires(
    client_redis: redis.Redis, settings: Any
) -> None:
    settings.HITL_HEALTH_WORKER_STALE_SECONDS = 30
    health.record_worker(client_redis, "w@host", QUEUES, NOW)
    assert health.check_workers(client_redis, QUEUES, NOW + 30).up
    assert not health.check_workers(client_redis, QUEUES, NOW + 31).up
    # A heartbeat from the future (a skewed clock) does not count either.
    assert not health.check_workers(client_redis, QUEUES, NOW - 5).up
    assert 0 < client_redis.ttl(health.WORKER_KEY + "w@host") <= 30
    health.forget_worker(client_redis, "w@host")
    assert client_redis.get(health.WORKER_KEY + "w@host") is None


def test_a_corrupt_heartbeat_is_a_down_check_not_an_error(
    client_redis: redis.Redis,
) -> None:
    client_redis.set(health.WORKER_KEY + "odd@host", b"not json")
    ready, results = health.readiness(now=NOW, only=["workers"])
    assert not ready
    assert results["workers"].detail == "JSONDecodeError"


def test_beat_is_down_until_it_sends_the_sweep_and_again_once_stale(
    client_redis: redis.Redis, settings: Any
) -> None:
    settings.HITL_HEALTH_BEAT_STALE_SECONDS = 60
    assert health.check_beat(client_redis, NOW).detail == "beat has not sent the step sweep yet"
    health.record_beat(client_redis, NOW)
    assert health.check_beat(client_redis, NOW + 60).up
    stale = health.check_beat(client_redis, NOW + 61)
    assert not stale.up
    assert "61 s ago (window 60 s)" in stale.detail


def test_publishing_the_step_sweep_records_beat_and_other_tasks_do_not(
    client_redis: redis.Redis,
) -> None:
    after_task_publish.send(sender="hitl.step_execute", body=None)
    assert client_redis.get(health.BEAT_KEY) is None
    before = time.time()
    after_task_publish.send(sender=health.BEAT_TASK, body=None)
    assert float(client_redis.get(health.BEAT_KEY) or 0) >= before


# --- python -m hitl.health (the container health checks) --------------------------------------


def test_the_command_exits_by_the_named_checks(
    client_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert health.main(["redis"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "redis": {"state": "up", "detail": "PING answered"}
    }
    assert health.main(["beat"]) == 1
    assert json.loads(capsys.readouterr().out)["beat"]["state"] == "down"
    health.record_beat(client_redis, time.time())
    assert health.main(["beat"]) == 0
    capsys.readouterr()
    assert health.main(["redis", "bogus"]) == 2
    assert "unknown check(s): bogus" in capsys.readouterr().out
