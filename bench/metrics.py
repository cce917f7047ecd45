"""What a `/metrics` scrape costs, against the size of the history behind it.

    python -m bench.metrics [--quick] [--json PATH] [--runs N]

Needs DATABASE_URL and REDIS_URL (run it through `python -m hitl.devstack exec --`). It
creates its own database `<name>_bench`, writes N finished runs (200,000; `--quick` 20,000)
spread evenly over 30 days, each with a gate step (one in five sent to review and decided)
and one delivered callback, then times:

- `metrics_snapshot()` with a one-hour window and with a one-day window (median of 5);
- a whole scrape (`hitl.metrics.scrape()`: the snapshot, the queue depths from Redis and the
  text format), one-hour window.

The queries are bounded by the window, not by the history: the figure to watch is how the
time moves with the window's rows, and that it does not move with N.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta
from typing import Any

from bench import common

DAYS = 30
REPEAT = 5


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    n = args.runs or (20_000 if args.quick else 200_000)

    os.environ["DATABASE_URL"] = common.fresh_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("HITL_AUDIT_KEYS", "bench:bench-only-audit-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hitl.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _history(n)
    results = _measure(n)
    print(f"machine: {common.machine()}")
    print(f"{n} finished runs over {DAYS} days; {results['runs_per_hour']:.0f} per hour")
    rows = [
        ["snapshot, 1 h window", f"{results['snapshot_1h_ms']:.1f}"],
        ["snapshot, 1 day window", f"{results['snapshot_1d_ms']:.1f}"],
        ["whole scrape, 1 h window", f"{results['scrape_1h_ms']:.1f}"],
    ]
    common.print_table(["measure", "ms (median)"], rows, "Metrics scrape")
    if args.json:
        common.write_json(args.json, "metrics", results)


def _median_ms(call: Any) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _measure(n: int) -> dict[str, Any]:
    from hitl.metrics import scrape
    from workflows.metrics import metrics_snapshot

    hour = _median_ms(lambda: metrics_snapshot(window=timedelta(hours=1)))
    day = _median_ms(lambda: metrics_snapshot(window=timedelta(days=1)))
    whole = _median_ms(scrape)
    return {
        "snapshot_1h_ms": round(hour, 2),
        "snapshot_1d_ms": round(day, 2),
        "scrape_1h_ms": round(whole, 2),
        "runs": n,
        "days": DAYS,
        "runs_per_hour": n / (DAYS * 24),
    }


def _history(n: int) -> None:
    """N finished runs, evenly over DAYS days up to now, written in a few set-based inserts."""
    from django.contrib.auth.models import User
    from django.db import connection

    from workflows import services
    from workflows.models import Endpoint

    definition = "slug: bench\nname: bench\nsteps:\n  - {id: w, kind: wait}\n"
    workflow = services.workflow_import(source=definition, actor=services.Actor.system()).workflow
    reviewer = User.objects.create(username="bench-reviewer")
    endpoint = Endpoint.objects.create(workflow=workflow, kind="chat", url="https://chat.invalid/")
    span = DAYS * 24 * 3600
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflows_run (workflow_id, version_id, status, outcome, input, error,"
            " source, created_at, updated_at, finished_at)"
            " SELECT %s, %s, 'completed', 'approved', '{}', '', 'bench', t, t, t FROM ("
            "  SELECT now() - make_interval(secs => i * %s::float8 / %s) AS t"
            "  FROM generate_series(1, %s) AS i) AS s",
            [workflow.pk, workflow.active_version_id, span, n, n],
        )
        cursor.execute(
            "INSERT INTO workflows_steprun (run_id, step_id, kind, position, status, attempts,"
            " max_attempts, meta, calls, input_tokens, output_tokens, cost_usd, error, outcome,"
            " created_at, finished_at)"
            " SELECT id, 'check', 'gate', 0, 'completed', 1, 5, jsonb_build_object('decision',"
            " CASE WHEN id %% 5 = 0 THEN 'review' ELSE 'auto_approved' END), 1, 200, 20,"
            " 0.0001, '', 'approved', created_at, finished_at FROM workflows_run",
            [],
        )
        cursor.execute(
            "INSERT INTO workflows_reviewtask (workflow_id, run_id, step_run_id, audience,"
            " reason, priority, seat, status, claimed_by_id, created_at, closed_at)"
            " SELECT r.workflow_id, r.id, s.id, 'reviewers', 'below_threshold', 0, 0,"
            " 'decided', %s, r.created_at - interval '20 minutes', r.finished_at"
            " FROM workflows_run r JOIN workflows_steprun s ON s.run_id = r.id"
            " WHERE r.id %% 5 = 0",
            [reviewer.pk],
        )
        cursor.execute(
            "INSERT INTO workflows_decision (task_id, reviewer_id, action, reason, shown,"
            " claimed_at, decided_at, time_spent)"
            " SELECT id, %s, CASE WHEN id %% 3 = 0 THEN 'reject' ELSE 'approve' END, '', '{}',"
            " created_at, closed_at, closed_at - created_at FROM workflows_reviewtask",
            [reviewer.pk],
        )
        cursor.execute(
            "INSERT INTO workflows_delivery (endpoint_id, event, webhook_id, payload, status,"
            " attempts, max_attempts, last_error, response_excerpt, created_at, delivered_at)"
            " SELECT %s, 'run.completed', 'msg_' || id, '{}', 'delivered', 1, 11, '', '',"
            " finished_at, finished_at FROM workflows_run",
            [endpoint.pk],
        )
        for table in ("run", "steprun", "reviewtask", "decision", "delivery"):
            cursor.execute(f"ANALYZE workflows_{table}")


if __name__ == "__main__":
    main()
