"""Spend control: a per-provider rate limit shared by every worker (Redis).

The per-workflow daily cost cap is kept by the services (PostgreSQL) and reaches the AI step
through its context.
"""

from __future__ import annotations

import functools
import time

import redis
from django.conf import settings


class RateLimited(Exception):
    """The provider's shared call budget for this minute is spent; retry after `retry_after`."""

    def __init__(self, provider: str, retry_after: float):
        self.provider = provider
        self.retry_after = retry_after
        super().__init__(f"{provider}: local rate limit reached, retry in {retry_after:.0f}s")


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def take_calls(provider: str, calls: int, *, now: float | None = None) -> None:
    """Count `calls` against the provider's calls-per-minute limit, or raise RateLimited.

    A fixed one-minute window in Redis: one INCRBY per batch, atomic across workers.
    """
    limit = settings.HITL_AI_RATE_LIMITS.get(provider)
    if not limit:
        return
    now = time.time() if now is None else now
    window = int(now // 60)
    key = f"hitl:rate:{provider}:{window}"
    pipe = _client().pipeline()
    pipe.incrby(key, calls)
    pipe.expire(key, 120)
    used = int(pipe.execute()[0])
    if used > limit:
        raise RateLimited(provider, retry_after=60 - (now % 60))
