"""Liveness and readiness probes, and the liveness records of workers and beat they read.

`/healthz` is liveness: it answers while the process serves requests and touches nothing
else, so a database or Redis outage never gets healthy web processes restarted. `/readyz` is
readiness: the database answers, Redis answers, every queue has a worker that reported
recently, and beat is sending its schedule. Both are open to anyone, so neither says more than
a check's state and a short detail: never a URL, a host or an exception's message (those go to
the log).

Workers report through a consumer bootstep (hitl/celery.py) that writes a key with a TTL from
the worker's own event loop every HITL_HEALTH_HEARTBEAT_SECONDS: a worker whose loop is stuck
stops writing, which a thread or Celery's event heartbeats (off with --without-heartbeat,
and a broadcast nobody else needs) would not show as plainly. Beat reports when it has
published the step sweep (an `after_task_publish` signal in beat's own process), so a beat
that stopped is told apart from workers that stopped running what it sends.

    python -m hitl.health [database|redis|workers|beat ...]

prints the same report and exits 1 unless every named check (all by default) is up: the
container health checks use it.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

WORKER_KEY = "hitl:health:worker:"  # + the worker's hostname
BEAT_KEY = "hitl:health:beat"
# The beat-scheduled task whose publication proves beat alive (the most frequent sweep).
BEAT_TASK = "hitl.steps_sweep"
CHECKS = ("database", "redis", "workers", "beat")


@dataclass(frozen=True)
class Check:
    up: bool
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"state": "up" if self.up else "down", "detail": self.detail}


def broker() -> redis.Redis:
    """The broker's Redis, with timeouts short enough for a probe."""
    timeout = settings.HITL_HEALTH_TIMEOUT
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )


def record_worker(client: redis.Redis, hostname: str, queues: Iterable[str], now: float) -> None:
    """A worker's heartbeat: it expires when the worker has been silent for the window."""
    value = json.dumps({"at": now, "queues": sorted(queues)})
    ttl = math.ceil(settings.HITL_HEALTH_WORKER_STALE_SECONDS)
    client.set(WORKER_KEY + hostname, value, ex=ttl)


def forget_worker(client: redis.Redis, hostname: str) -> None:
    """A worker stopping on purpose stops counting at once, not a window later."""
    client.delete(WORKER_KEY + hostname)


def record_beat(client: redis.Redis, now: float) -> None:
    client.set(BEAT_KEY, repr(now))


def check_database(conn: Any = None) -> Check:
    with (conn or connection).cursor() as cursor:
        cursor.execute("SELECT 1")
    return Check(True, "SELECT 1 answered")


def check_redis(client: redis.Redis) -> Check:
    client.ping()
    return Check(True, "PING answered")


def check_workers(client: redis.Redis, queues: Iterable[str], now: float) -> Check:
    """Up when every queue has a worker whose heartbeat is within the staleness window.

    The key's TTL already drops silent workers; the timestamp inside makes the window exact
    (and lets the tests move the clock instead of waiting).
    """
    window = settings.HITL_HEALTH_WORKER_STALE_SECONDS
    served: dict[str, int] = {}
    keys = sorted(client.scan_iter(match=WORKER_KEY + "*", count=100))
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between SCAN and MGET
        beat = json.loads(raw)
        if 0 <= now - float(beat["at"]) <= window:
            for queue in beat["queues"]:
                served[queue] = served.get(queue, 0) + 1
    missing = [queue for queue in queues if queue not in served]
    counts = ", ".join(f"{queue}: {served.get(queue, 0)}" for queue in queues)
    if missing:
        return Check(
            False, f"no worker heard from within {window:g} s for {', '.join(missing)} ({counts})"
        )
    return Check(True, f"workers heard from within {window:g} s ({counts})")


def check_beat(client: redis.Redis, now: float) -> Check:
    window = settings.HITL_HEALTH_BEAT_STALE_SECONDS
    raw = client.get(BEAT_KEY)
    if raw is None:
        return Check(False, "beat has not sent the step sweep yet")
    age = now - float(raw)
    if not 0 <= age <= window:
        return Check(False, f"beat last sent the step sweep {age:.0f} s ago (window {window:g} s)")
    return Check(True, f"beat sent the step sweep {age:.0f} s ago (window {window:g} s)")


def _guarded(name: str, probe: Callable[[], Check]) -> Check:
    """A failing check is a `down` with the error's type; the message may name hosts or users."""
    try:
        return probe()
    except Exception as exc:
        logger.warning("readiness check %s failed", name, exc_info=True)
        return Check(False, f"{type(exc).__name__}")


def readiness(
    *, now: float | None = None, only: Iterable[str] = CHECKS, conn: Any = None
) -> tuple[bool, dict[str, Check]]:
    """Run the named checks; `now` (epoch seconds) is injectable for the staleness windows.

    Redis is pinged first: when it is down, the checks that read it are down with it, without
    waiting out a timeout each.
    """
    from hitl.celery import QUEUES

    now = time.time() if now is None else now
    wanted = [name for name in CHECKS if name in set(only)]
    results: dict[str, Check] = {}
    if "database" in wanted:
        results["database"] = _guarded("database", lambda: check_database(conn))
    on_redis: dict[str, Callable[[redis.Redis], Check]] = {
        "workers": lambda client: check_workers(client, QUEUES, now),
        "beat": lambda client: check_beat(client, now),
    }
    needed = [name for name in ("redis", *on_redis) if name in wanted]
    if not needed:
        return all(check.up for check in results.values()), results
    client = None
    try:
        client = broker()
        ping = _guarded("redis", lambda: check_redis(client))
    except Exception as exc:  # a malformed broker URL
        logger.warning("readiness: no Redis client", exc_info=True)
        ping = Check(False, type(exc).__name__)
    try:
        if "redis" in wanted:
            results["redis"] = ping
        for name in needed:
            if name in on_redis:
                probe = on_redis[name]
                results[name] = (
                    _guarded(name, lambda: probe(client))  # noqa: B023 (called at once)
                    if ping.up and client is not None
                    else Check(False, "Redis is down")
                )
    finally:
        if client is not None:
            client.close()
    return all(check.up for check in results.values()), results


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    ready, results = readiness()
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {name: check.as_json() for name, check in results.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in CHECKS]
    if unknown:
        print(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}")
        return 2
    ready, results = readiness(only=argv or CHECKS)
    print(json.dumps({name: check.as_json() for name, check in results.items()}))
    return 0 if ready else 1


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitl.settings")
    django.setup()
    sys.exit(main(sys.argv[1:]))
