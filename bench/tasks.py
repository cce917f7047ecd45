"""The baseline task: a raw Celery round trip that does nothing but say it ran."""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.conf import settings

DONE_KEY = "bench:noop:done"


@shared_task(name="bench.noop")
def noop(sent_at: float) -> None:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.rpush(DONE_KEY, f"{sent_at}:{time.time()}")
