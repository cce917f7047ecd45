"""`/readyz` against a real worker and a real beat: their own liveness records make it pass."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from hitl import health
from tests.integration.worker import Worker

pytestmark = pytest.mark.integration


def worker_records() -> dict[str, dict[str, object]]:
    client = health.broker()
    try:
        keys = list(client.scan_iter(match=health.WORKER_KEY + "*"))
        return {
            key.decode().removeprefix(health.WORKER_KEY): json.loads(raw)
            for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True)
            if raw is not None
        }
    finally:
        client.close()


def test_the_workers_heartbeat_and_beat_make_readiness_pass_and_a_stop_undoes_it(
    worker: Worker, client: Client, tmp_path: Path, wait_until: Callable[..., None]
) -> None:
    redis = health.broker()
    for key in redis.scan_iter(match="hitl:health:*"):
        redis.delete(key)
    assert client.get("/readyz").status_code == 503

    # The running worker writes its heartbeat again within its interval.
    wait_until(lambda: health.readiness(only=["workers"])[0], timeout=15, sweep=False)
    (name, record), *others = worker_records().items()
    assert others == []
    assert name.startswith(f"test-{os.getpid()}@")
    assert record["queues"] == ["ai", "callbacks", "default"]
    assert client.get("/readyz").json()["checks"]["beat"]["state"] == "down"

    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hitl",
            "beat",
            "-l",
            "info",
            "--schedule",
            str(tmp_path / "celerybeat-schedule"),
        ],
        env={**worker.env, "HITL_SWEEP_INTERVAL": "1"},
        stdout=(tmp_path / "beat.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, sweep=False)
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(15)
    body = client.get("/readyz").json()
    assert {check["state"] for check in body["checks"].values()} == {"up"}, body

    # A worker stopped on purpose stops counting at once (the fixture starts a fresh one).
    worker.stop()
    assert worker_records() == {}
    assert client.get("/readyz").json()["checks"]["workers"]["state"] == "down"
    redis.close()
