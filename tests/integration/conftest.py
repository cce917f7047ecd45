from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from tests.integration.worker import WORKER_ENV, Worker, worker_database_url
from workflows import services

pytestmark = pytest.mark.integration


# Package scope: the worker stops when the integration tests are done, so it never races
# tests elsewhere that commit runs and drive them in-process.
@pytest.fixture(scope="package")
def _worker_process(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    url = worker_database_url(connection.settings_dict["NAME"])
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = Worker(url, log)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def worker(_worker_process: Worker, transactional_db: None, settings: Any) -> Iterator[Worker]:
    """The shared worker, running; tests that kill it get a fresh one afterwards."""
    settings.HITL_STEP_LEASE = __import__("datetime").timedelta(
        seconds=float(WORKER_ENV["HITL_STEP_LEASE_SECONDS"])
    )
    settings.HITL_REENQUEUE_AFTER = __import__("datetime").timedelta(seconds=1)
    settings.HITL_OUTBOUND_ALLOW = WORKER_ENV["HITL_OUTBOUND_ALLOW"].split(",")
    _worker_process.ensure_running()
    yield _worker_process
    _worker_process.ensure_running()


@pytest.fixture
def broker() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CELERY_BROKER_URL)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """Poll `predicate`, running the sweeper as beat would, until it holds or time runs out."""

    def wait(predicate: Callable[[], bool], *, timeout: float = 30, sweep: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if sweep:
                services.steps_sweep()
                services.deliveries_sweep()
            time.sleep(0.2)
        raise AssertionError(f"condition not met within {timeout}s")

    return wait


@pytest.fixture
def effects(tmp_path: Path) -> Path:
    """A file the `probe` kind appends one line to per execution."""
    path = tmp_path / "effects.log"
    path.touch()
    path.chmod(0o666)
    return path
