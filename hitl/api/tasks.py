"""Thin Celery tasks of the API: ids in, one call."""

from __future__ import annotations

from celery import shared_task

from hitl.api.idempotency import idempotency_sweep


@shared_task(name="hitl.api_idempotency_sweep")
def api_idempotency_sweep() -> int:
    """Delete the Idempotency-Key answers past their 24 h (beat, hourly is plenty)."""
    return idempotency_sweep()
