"""Operational metrics, read from the database (and the broker's queue lengths): one module
that `/metrics`, the admin console and the API can all call, returning typed dataclasses.

Reads only. Every query is bounded by an index, never by the whole history:

- runs in a live status (pending, running, waiting) are counted all-time, finished runs only
  when they finished within the window (`run_status_finished_idx`: status, finished_at);
- review backlog and overdue tasks: live tasks only (the partial indexes on live tasks);
- gate items, model calls, tokens and cost: the steps of the runs that finished within the
  window (the same run index, then each run's steps by the run's key);
- decisions (override rate, time to decision): those made within the window
  (`decision_decided_idx`);
- callback deliveries: pending and sending ones all-time (partial indexes), the others when
  written within the window (`delivery_created_idx`).

So a scrape costs a handful of index scans whose size is the live work plus one window of
history, whatever the age of the installation. `workflow_ids` limits every query to those
workflows (a caller that shows metrics to a person passes the workflows they may see).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.db.models.fields.json import KT
from django.utils import timezone

from workflows.models import AuditEvent, Decision, Delivery, ReviewTask, Run, StepRun, Workflow

LIVE_RUNS = (Run.Status.PENDING, Run.Status.RUNNING, Run.Status.WAITING)
LIVE_DELIVERIES = (Delivery.Status.PENDING, Delivery.Status.SENDING)
# Every action that is not a plain approval overrides (or hands on) the AI's answer.
OVERRIDES = (Decision.Action.REJECT, Decision.Action.EDIT, Decision.Action.ESCALATE)
# kombu's Redis transport keeps a queue's messages of priority 0 under the queue's name and
# the others under `<queue>\x06\x16<step>` (kombu.transport.redis, priority_steps).
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)


@dataclass(frozen=True)
class WorkflowMetrics:
    """One workflow's figures, or everyone's (`workflow_id` None, `slug` "*")."""

    workflow_id: int | None
    slug: str
    # Live statuses all-time; finished statuses within the window.
    runs_by_status: dict[str, int] = field(default_factory=dict)
    review_open: int = 0
    review_claimed: int = 0
    # Live tasks past their due time: SLA breaches not yet resolved.
    review_overdue: int = 0
    # Gate items of the runs finished within the window.
    gate_items: int = 0
    gate_auto_approved: int = 0
    decisions_by_action: dict[str, int] = field(default_factory=dict)
    # Seconds from a task's creation to its decision, over the window's decisions.
    decision_seconds_p50: float | None = None
    decision_seconds_p90: float | None = None
    # Model use of the runs finished within the window.
    runs_finished: int = 0
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    # Pending and sending all-time; delivered, failed and cancelled within the window.
    deliveries_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def automation_rate(self) -> float | None:
        """Gate items auto-approved / all gate items; None without gate items."""
        return self.gate_auto_approved / self.gate_items if self.gate_items else None

    @property
    def decisions(self) -> int:
        return sum(self.decisions_by_action.values())

    def override_rate(self, action: str | None = None) -> float | None:
        """The share of decisions that were `action` (every override when None)."""
        if not self.decisions:
            return None
        actions = OVERRIDES if action is None else (action,)
        return sum(self.decisions_by_action.get(a, 0) for a in actions) / self.decisions

    def per_run(self, value: int | Decimal) -> float | None:
        """A model-use total divided by the runs finished within the window."""
        return float(value) / self.runs_finished if self.runs_finished else None


@dataclass(frozen=True)
class MetricsSnapshot:
    at: datetime
    window: timedelta
    overall: WorkflowMetrics
    workflows: list[WorkflowMetrics]
    audit_backlog: int


def metrics_snapshot(
    *,
    now: datetime | None = None,
    window: timedelta | None = None,
    workflow_ids: Iterable[int] | None = None,
) -> MetricsSnapshot:
    """Every figure, per workflow and overall, at `now` over the window before it."""
    now = now or timezone.now()
    window = window or settings.HITL_METRICS_WINDOW
    since = now - window
    only = None if workflow_ids is None else sorted(set(workflow_ids))
    slugs = dict(_scoped(Workflow.objects.all(), only, "id").values_list("id", "slug"))
    parts: dict[int, dict[str, Any]] = defaultdict(dict)

    def add(rows: Iterable[Mapping[str, Any]], name: str, key: str | None, value: str) -> None:
        for row in rows:
            entry = parts[row["wf"]]
            if key is None:
                entry[name] = entry.get(name, 0) + row[value]
            else:
                entry.setdefault(name, {})[row[key]] = row[value]

    runs = Run.objects.filter(
        Q(status__in=LIVE_RUNS) | Q(status__in=Run.FINISHED, finished_at__gte=since)
    )
    add(_grouped(runs, only, "workflow_id", "status"), "runs_by_status", "status", "n")
    tasks = ReviewTask.objects.filter(status__in=ReviewTask.LIVE)
    for row in _grouped(tasks, only, "workflow_id", "status"):
        parts[row["wf"]][f"review_{row['status']}"] = row["n"]
    overdue = ReviewTask.objects.filter(status__in=ReviewTask.LIVE, due_at__lte=now)
    add(_grouped(overdue, only, "workflow_id"), "review_overdue", None, "n")
    finished = Q(run__status__in=Run.FINISHED, run__finished_at__gte=since)
    gates = StepRun.objects.filter(finished, kind="gate", meta__has_key="decision")
    for row in _grouped(
        gates.annotate(decision=KT("meta__decision")), only, "run__workflow_id", "decision"
    ):
        entry = parts[row["wf"]]
        entry["gate_items"] = entry.get("gate_items", 0) + row["n"]
        if row["decision"] == "auto_approved":
            entry["gate_auto_approved"] = row["n"]
    usage = (
        _scoped(StepRun.objects.filter(finished), only, "run__workflow_id")
        .values(wf=F("run__workflow_id"))
        .annotate(
            model_calls=Sum("calls"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_usd=Sum("cost_usd"),
        )
        .order_by()
    )
    for row in usage:
        parts[row.pop("wf")].update(row)
    runs_done = Run.objects.filter(status__in=Run.FINISHED, finished_at__gte=since)
    add(_grouped(runs_done, only, "workflow_id"), "runs_finished", None, "n")
    decisions = Decision.objects.filter(decided_at__gte=since)
    add(
        _grouped(decisions, only, "task__workflow_id", "action"),
        "decisions_by_action",
        "action",
        "n",
    )
    # Two queries, not one with OR: each is then answered by its own index (the partial
    # indexes on pending and sending deliveries; `delivery_created_idx`).
    for where in (
        Q(status=Delivery.Status.PENDING),
        Q(status=Delivery.Status.SENDING),
        Q(created_at__gte=since) & ~Q(status__in=LIVE_DELIVERIES),
    ):
        add(
            _grouped(Delivery.objects.filter(where), only, "endpoint__workflow_id", "status"),
            "deliveries_by_status",
            "status",
            "n",
        )
    percentiles = _decision_percentiles(since, only)
    for wf, (p50, p90) in percentiles.items():
        if wf is not None:
            parts[wf].update(decision_seconds_p50=p50, decision_seconds_p90=p90)

    per_workflow = [
        WorkflowMetrics(workflow_id=pk, slug=slug, **parts.get(pk, {}))
        for pk, slug in sorted(slugs.items(), key=lambda item: item[1])
    ]
    whole = percentiles.get(None)
    overall = _sum(per_workflow, *(whole if whole else (None, None)))
    backlog = AuditEvent.objects.filter(seq__isnull=True).count()
    return MetricsSnapshot(now, window, overall, per_workflow, backlog)


def _scoped(queryset: Any, only: list[int] | None, path: str) -> Any:
    return queryset if only is None else queryset.filter(**{f"{path}__in": only})


def _grouped(queryset: Any, only: list[int] | None, path: str, *by: str) -> list[dict[str, Any]]:
    """Counts per workflow (as `wf`) and the `by` columns; no ordering, so no sort."""
    return list(
        _scoped(queryset, only, path).values(*by, wf=F(path)).annotate(n=Count("pk")).order_by()
    )


_PERCENTILES = """
SELECT t.workflow_id,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.decided_at - t.created_at)),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM d.decided_at - t.created_at))
FROM workflows_decision d JOIN workflows_reviewtask t ON t.id = d.task_id
WHERE d.decided_at >= %s {scope}
GROUP BY ROLLUP (t.workflow_id)
"""


def _decision_percentiles(
    since: datetime, only: list[int] | None
) -> dict[int | None, tuple[float, float]]:
    """p50 and p90 of task creation to decision, per workflow and (key None) overall."""
    params: list[Any] = [since]
    scope = ""
    if only is not None:
        scope, params = "AND t.workflow_id = ANY(%s)", [since, only]
    with connection.cursor() as cursor:
        cursor.execute(_PERCENTILES.format(scope=scope), params)
        rows = cursor.fetchall()
    return {wf: (float(p50), float(p90)) for wf, p50, p90 in rows if p50 is not None}


def _sum(items: list[WorkflowMetrics], p50: float | None, p90: float | None) -> WorkflowMetrics:
    def total(name: str) -> Any:
        return sum((getattr(item, name) for item in items), Decimal(0) if name == "cost_usd" else 0)

    def merged(name: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for item in items:
            for key, value in getattr(item, name).items():
                out[key] += value
        return dict(out)

    counters = (
        "review_open",
        "review_claimed",
        "review_overdue",
        "gate_items",
        "gate_auto_approved",
        "runs_finished",
        "model_calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    )
    return WorkflowMetrics(
        workflow_id=None,
        slug="*",
        runs_by_status=merged("runs_by_status"),
        decisions_by_action=merged("decisions_by_action"),
        deliveries_by_status=merged("deliveries_by_status"),
        decision_seconds_p50=p50,
        decision_seconds_p90=p90,
        **{name: total(name) for name in counters},
    )


def queue_depths(*, client: Any, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue: the LLEN of its keys in the broker's Redis,
    every priority step included (one pipelined round trip)."""
    names = list(queues)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(name)
            for step in KOMBU_PRIORITY_STEPS:
                pipe.llen(f"{name}{KOMBU_PRIORITY_SEP}{step}")
        lengths = pipe.execute()
    per = 1 + len(KOMBU_PRIORITY_STEPS)
    return {name: int(sum(lengths[i * per : (i + 1) * per])) for i, name in enumerate(names)}
