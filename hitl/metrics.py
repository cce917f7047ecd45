"""`/metrics` for Prometheus, and the workers' own metrics port.

Two kinds of metric come out of one scrape:

- business gauges, computed from the database at scrape time by `BusinessCollector` through
  the metrics selector (`workflows.metrics`): a handful of index-bounded queries, plus one
  pipelined LLEN round trip to the broker for the queue depths and one GET for beat's age;
- process counters and histograms (`workflows.instruments`), which every process keeps. With
  PROMETHEUS_MULTIPROC_DIR set they are read from that directory, summed over every process
  that wrote there (gunicorn workers, prefork children); without it, this process's own.

Who may scrape: clients in HITL_METRICS_ALLOW, and, when HITL_METRICS_TOKEN is set, only with
that bearer token (compared in constant time). A refusal is a JSON 403 (network) or 401
(token), never a 500; a source that fails (database, Redis) shows as
`hitl_metrics_source_up{source=...} 0`, and the rest of the scrape still answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from workflows import metrics as selector

logger = logging.getLogger(__name__)
# The overall series of a per-workflow gauge: no slug can contain "*".
ALL = "*"


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class BusinessCollector(Collector):
    """The database's figures, read when Prometheus scrapes (never cached in the process)."""

    def collect(self) -> Iterator[Metric]:
        up = _gauge("hitl_metrics_source_up", "1 if the source answered this scrape.", ["source"])
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except Exception:
            logger.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric(["database"], 0)
        try:
            yield from self._broker()
            up.add_metric(["redis"], 1)
        except Exception:
            logger.warning("metrics: Redis did not answer", exc_info=True)
            up.add_metric(["redis"], 0)
        yield up

    def _database(self) -> Iterator[Metric]:
        snap = selector.metrics_snapshot()
        yield GaugeMetricFamily(
            "hitl_metrics_window_seconds",
            "The look-back window of the windowed gauges.",
            value=snap.window.total_seconds(),
        )
        yield GaugeMetricFamily(
            "hitl_audit_backlog", "Audit events waiting for the sealer.", value=snap.audit_backlog
        )
        runs = _gauge(
            "hitl_runs",
            "Runs by status: live statuses all-time, finished ones within the window.",
            ["workflow", "status"],
        )
        tasks = _gauge("hitl_review_tasks", "Live review tasks.", ["workflow", "status"])
        overdue = _gauge(
            "hitl_review_overdue", "Live review tasks past their due time.", ["workflow"]
        )
        gate = _gauge(
            "hitl_gate_items",
            "Gate items of runs finished in the window.",
            ["workflow", "decision"],
        )
        automation = _gauge(
            "hitl_automation_rate", "Gate items auto-approved / all, in the window.", ["workflow"]
        )
        decisions = _gauge(
            "hitl_decisions", "Review decisions made in the window.", ["workflow", "action"]
        )
        override = _gauge(
            "hitl_override_rate",
            "Share of the window's decisions with this action (any: every non-approval).",
            ["workflow", "action"],
        )
        latency = _gauge(
            "hitl_time_to_decision_seconds",
            "Task creation to decision, over the window's decisions.",
            ["workflow", "quantile"],
        )
        per_run = _gauge(
            "hitl_model_use_per_run",
            "Model calls, tokens and USD per run finished in the window.",
            ["workflow", "measure"],
        )
        deliveries = _gauge(
            "hitl_deliveries",
            "Callback deliveries: pending and sending all-time, others written in the window.",
            ["workflow", "status"],
        )
        for item in [*snap.workflows, snap.overall]:
            wf = item.slug if item.workflow_id is not None else ALL
            for status, n in sorted(item.runs_by_status.items()):
                runs.add_metric([wf, status], n)
            tasks.add_metric([wf, "open"], item.review_open)
            tasks.add_metric([wf, "claimed"], item.review_claimed)
            overdue.add_metric([wf], item.review_overdue)
            gate.add_metric([wf, "auto_approved"], item.gate_auto_approved)
            gate.add_metric([wf, "review"], item.gate_items - item.gate_auto_approved)
            if item.automation_rate is not None:
                automation.add_metric([wf], item.automation_rate)
            for action, n in sorted(item.decisions_by_action.items()):
                decisions.add_metric([wf, action], n)
            if item.decisions:
                override.add_metric([wf, "any"], item.override_rate() or 0.0)
                for action in selector.OVERRIDES:
                    override.add_metric([wf, action], item.override_rate(action) or 0.0)
            for quantile, value in (
                ("0.5", item.decision_seconds_p50),
                ("0.9", item.decision_seconds_p90),
            ):
                if value is not None:
                    latency.add_metric([wf, quantile], value)
            if item.runs_finished:
                tokens = item.input_tokens + item.output_tokens
                for measure, total in (
                    ("calls", item.model_calls),
                    ("tokens", tokens),
                    ("cost_usd", item.cost_usd),
                ):
                    per_run.add_metric([wf, measure], item.per_run(total) or 0.0)
            for status, n in sorted(item.deliveries_by_status.items()):
                deliveries.add_metric([wf, status], n)
        yield from (runs, tasks, overdue, gate, automation, decisions, override, latency)
        yield from (per_run, deliveries)

    def _broker(self) -> Iterator[Metric]:
        from hitl import health
        from hitl.celery import QUEUES

        client = health.broker()
        try:
            depths = selector.queue_depths(client=client, queues=QUEUES)
            beat = client.get(health.BEAT_KEY)
        finally:
            client.close()
        queue = _gauge("hitl_queue_depth", "Messages waiting in a Celery queue.", ["queue"])
        for name, depth in depths.items():
            queue.add_metric([name], depth)
        yield queue
        if beat is not None:
            yield GaugeMetricFamily(
                "hitl_beat_age_seconds",
                "Seconds since beat last sent the step sweep.",
                value=max(0.0, time.time() - float(beat)),
            )


class _ThisProcess(Collector):
    """The default registry's metrics (this process's counters), inside another registry."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


def process_registry() -> CollectorRegistry:
    """Every process's counters when PROMETHEUS_MULTIPROC_DIR is set, else this process's."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    return registry


def scrape() -> bytes:
    registry = process_registry()
    registry.register(BusinessCollector())
    return generate_latest(registry)


def refusal(request: HttpRequest) -> JsonResponse | None:
    """Why this client may not scrape (a response to send), or None when it may."""
    allow = settings.HITL_METRICS_ALLOW
    token = settings.HITL_METRICS_TOKEN
    if not allow and not token:
        return JsonResponse(
            {"error": "metrics are closed: set HITL_METRICS_ALLOW or HITL_METRICS_TOKEN"},
            status=403,
        )
    if allow and not _allowed(request.META.get("REMOTE_ADDR", ""), allow):
        return JsonResponse({"error": "this address may not read metrics"}, status=403)
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            response = JsonResponse({"error": "a valid bearer token is required"}, status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


def _allowed(address: str, allow: list[str]) -> bool:
    try:
        client = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    for entry in allow:
        try:
            if client in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            logger.warning("HITL_METRICS_ALLOW: %r is not an address or network", entry)
    return False


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = refusal(request)
    if refused is not None:
        return refused
    # The classic text format, which every Prometheus reads (every name here is plain ASCII).
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def worker_metrics_serve(port: int, addr: str) -> Any:
    """Serve the worker's process counters on `port` (the prefork parent calls this once)."""
    from prometheus_client import start_http_server

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "HITL_WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: the prefork"
            " children's counters cannot be read; only this process's are served"
        )
    return start_http_server(port, addr=addr, registry=process_registry())
