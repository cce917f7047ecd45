"""Process counters and histograms for Prometheus: what this process did since it started.

Multiprocess-safe: with PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported,
each process (gunicorn worker, prefork child) writes its values to its own files there, and
`/metrics` or the worker's metrics port adds them up (docs/operations.md, "Monitoring").
The business figures are not here: they are read from the database at scrape time
(`workflows.metrics`), so they are right whichever process did the work.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Histogram

from workflows.steps.base import Completed, Result, Usage, Waiting

STEP_SECONDS = Histogram(
    "hitl_step_duration_seconds",
    "Time a step's execution took (outside any transaction), by kind and result.",
    ["kind", "result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
MODEL_CALLS = Counter("hitl_model_calls", "Model calls made by steps, by step kind.", ["kind"])
MODEL_TOKENS = Counter(
    "hitl_model_tokens",
    "Model tokens used by steps, by step kind and direction.",
    ["kind", "direction"],
)
MODEL_COST = Counter("hitl_model_cost_usd", "Model spend of steps in USD, by step kind.", ["kind"])
DELIVERIES = Counter(
    "hitl_deliveries", "Callback delivery attempts recorded, by outcome.", ["outcome"]
)
ALERTS = Counter("hitl_alerts", "Alerts raised (notified or de-duplicated), by kind.", ["kind"])


def result_label(result: Result) -> str:
    if isinstance(result, Completed):
        return "completed"
    if isinstance(result, Waiting):
        return "waiting"
    return "failed"


def step_observed(*, kind: str, result: Result, seconds: float) -> None:
    """Count one executed step: its duration, and its model use if it had any."""
    STEP_SECONDS.labels(kind, result_label(result)).observe(seconds)
    usage: Usage | None = result.usage
    if usage is None or not usage.calls:
        return
    MODEL_CALLS.labels(kind).inc(usage.calls)
    MODEL_TOKENS.labels(kind, "input").inc(usage.input_tokens)
    MODEL_TOKENS.labels(kind, "output").inc(usage.output_tokens)
    MODEL_COST.labels(kind).inc(float(Decimal(usage.cost_usd)))
