"""Engine overhead against a raw Celery round trip, measured in the same run.

    python -m bench.engine [--quick] [--json PATH] [--runs N] [--concurrency C]

Needs DATABASE_URL and REDIS_URL (run it through `python -m hitl.devstack exec --`). It
creates its own database `<name>_bench` on that server, so it never touches your data,
starts one real worker (prefork) listening on every queue, and measures:

- raw: N sequential round trips of a no-op task (send -> worker runs it -> client sees it);
- engine: N sequential runs of a 3-step `transform` workflow. Per-step overhead is the time
  from step k being enqueued to step k+1 being enqueued (StepRun.created_at; each row is
  written in the transaction that enqueues it on commit);
- throughput: N runs started at once, runs completed per second;
- queries per executed step, counted in-process on the same code path.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common

BENCH_WORKFLOW = """
slug: bench-three-steps
name: Bench, three transform steps
steps:
  - id: a
    kind: transform
    config: {output: {x: "input.n + 1"}}
  - id: b
    kind: transform
    config: {output: {x: "steps.a.output.x * 2"}}
  - id: c
    kind: transform
    config: {output: {x: "steps.b.output.x - 1"}}
"""


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=1, help="worker pool processes")
    args = parser.parse_args()
    n = args.runs or (150 if args.quick else 500)

    os.environ["DATABASE_URL"] = common.fresh_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("HITL_AUDIT_KEYS", "bench:bench-only-audit-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hitl.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = _measure(n, args.concurrency)
    rows = [
        [
            "raw Celery round trip",
            f"{results['raw_median_ms']:.2f}",
            f"{results['raw_p95_ms']:.2f}",
        ],
        [
            "engine step overhead",
            f"{results['step_median_ms']:.2f}",
            f"{results['step_p95_ms']:.2f}",
        ],
    ]
    print(f"machine: {common.machine()}")
    print(f"worker: prefork -c {args.concurrency}; {n} round trips, {n} runs of 3 steps")
    common.print_table(["measure", "median ms", "p95 ms"], rows, "Per hop")
    common.print_table(
        ["headline", "value"],
        [
            ["overhead_ratio (step median / raw median)", f"{results['overhead_ratio']:.2f}"],
            ["runs_per_s (3-step runs, started at once)", f"{results['runs_per_s']:.1f}"],
            ["queries_per_step", f"{results['queries_per_step']:.1f}"],
        ],
    )
    target = "met" if results["overhead_ratio"] <= 2.0 else "NOT met"
    print(f"target overhead_ratio <= 2.0: {target}")
    if args.json:
        common.write_json(args.json, "engine", results)


def _measure(n: int, concurrency: int) -> dict[str, Any]:
    import redis
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.tasks import DONE_KEY, noop
    from tests.integration.worker import Worker
    from workflows import services
    from workflows.models import Run, StepRun

    actor = services.Actor.system("bench")
    workflow = services.workflow_import(source=BENCH_WORKFLOW, actor=actor).workflow
    # Queries per step, on the worker's code path, counted here.
    with CaptureQueriesContext(connection) as queries:
        probe = services.run_start(workflow=workflow, input={"n": 1}, actor=actor)
        start_queries = len(queries)
        services.run_drive(run=probe)
    queries_per_step = (len(queries) - start_queries) / 3

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(DONE_KEY)
    log = Path(tempfile.mkdtemp()) / "worker.log"
    worker = Worker(os.environ["DATABASE_URL"], log, concurrency=concurrency, include="bench.tasks")
    worker.start()
    try:
        for _ in range(20):  # warm up both paths
            noop.apply_async(args=(time.time(),), queue="default")
            client.blpop([DONE_KEY], timeout=10)
        raw: list[float] = []
        for _ in range(n):
            sent = time.perf_counter()
            noop.apply_async(args=(time.time(),), queue="default")
            if client.blpop([DONE_KEY], timeout=10) is None:
                sys.exit("the worker did not run the no-op task")
            raw.append((time.perf_counter() - sent) * 1000)

        step_gaps: list[float] = []
        for i in range(n + 10):
            run = services.run_start(workflow=workflow, input={"n": i}, actor=actor)
            while Run.objects.filter(pk=run.pk).values_list("status", flat=True)[0] != "completed":
                time.sleep(0.005)
            if i < 10:
                continue  # warm-up
            created = list(
                StepRun.objects.filter(run=run)
                .order_by("position")
                .values_list("created_at", flat=True)
            )
            step_gaps += [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(created)]

        started = time.perf_counter()
        batch = [
            services.run_start(workflow=workflow, input={"n": i}, actor=actor).pk for i in range(n)
        ]
        while Run.objects.filter(pk__in=batch, status="completed").count() < n:
            time.sleep(0.05)
        runs_per_s = n / (time.perf_counter() - started)
    finally:
        worker.stop()
    raw_median = statistics.median(raw)
    step_median = statistics.median(step_gaps)
    return {
        "overhead_ratio": round(step_median / raw_median, 3),
        "runs_per_s": round(runs_per_s, 2),
        "queries_per_step": round(queries_per_step, 2),
        "raw_median_ms": round(raw_median, 3),
        "raw_p95_ms": round(common.percentile(raw, 0.95), 3),
        "step_median_ms": round(step_median, 3),
        "step_p95_ms": round(common.percentile(step_gaps, 0.95), 3),
        "n": n,
        "worker": f"prefork -c {concurrency}",
    }


if __name__ == "__main__":
    main()
