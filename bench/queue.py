"""The review desk at scale: queue page, task page and claim-next on a large open queue.

    python -m bench.queue [--quick] [--json PATH] [--tasks N] [--samples N] [--explain]

Needs DATABASE_URL and REDIS_URL (run it through `python -m hitl.devstack exec --`). It
creates its own database `<name>_bench` on that server, so it never touches your data, and
loads it with COPY: 10 workflows (a `transform` step `classify` guarded by a `gate` step
`check`), one waiting run per task with its two step rows, and 100k open review tasks
(20k with --quick), spread over priorities 0-10, SLAs over the next days (about 10% without
one) and the gate's reasons. 50 reviewers in 10 reviewer groups (5 a group; 5 of them in two
groups) and one admin of every workflow. Then VACUUM ANALYZE.

Latency is server-side: requests go through Django's test Client in-process (routing,
middleware, view, selectors, database, template rendering; no network), timed with
perf_counter. Claim-next is timed both as the service call and as the POST view. After each
timed claim the task is marked decided (untimed), as a reviewer would decide it before
asking for the next one, so the queue head does not fill with held claims.

Concurrency: 50 threads, one per reviewer, each with its own database connection, claim
until their queue is empty or they hold --claims tasks. Threads, not processes: psycopg
releases the GIL while PostgreSQL works, so the transactions do overlap in the database
(which is what a double claim needs); the Python side is serialised by the GIL, so claims/s
is a floor for several worker processes.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import random
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench import common

SEED = 20250612
WORKFLOWS = 10
REVIEWERS = 50
PER_GROUP = REVIEWERS // WORKFLOWS
FULL_TASKS = 100_000
QUICK_TASKS = 20_000
TARGET_QUEUE_P95_MS = 50.0
TARGET_CLAIM_P95_MS = 20.0
LABELS = ("billing", "refund", "bug", "shipping", "account")
# Reason -> share of the tasks. Rule names follow the gate's `rule:<name>`.
REASONS = {
    "below_threshold": 0.70,
    "audit_sample": 0.15,
    "rule:vip_customer": 0.10,
    "rule:large_refund": 0.05,
}
# Priority 0..10, most tasks low.
PRIORITY_WEIGHTS = (30, 15, 12, 10, 8, 7, 5, 4, 4, 3, 2)
NO_SLA_SHARE = 0.10
THRESHOLD = 0.8

DEFINITION = """
slug: {slug}
name: Bench queue {n}
steps:
  - id: classify
    kind: transform
    config: {{output: {{label: "input.label"}}}}
  - id: check
    kind: gate
    config: {{guards: classify, threshold: {threshold}, audit_rate: 0.05, sla_minutes: 1440}}
"""


@dataclass
class Fixture:
    """What the load made, for the measurements to pick from."""

    workflows: list[Any]  # Workflow, slug order
    reviewers: list[Any]  # User
    reviewer_workflows: list[list[int]]  # reviewer index -> workflow indexes they review
    admin: Any
    task_ids: list[list[int]]  # workflow index -> its task ids
    load_s: float
    counts: dict[str, int] = field(default_factory=dict)


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=None, help="open review tasks to load")
    parser.add_argument("--samples", type=int, default=None, help="timed samples per measure")
    parser.add_argument("--claims", type=int, default=None, help="claims per concurrent loop")
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN ANALYZE of each measure's slowest"
    )
    args = parser.parse_args()
    n_tasks = args.tasks or (QUICK_TASKS if args.quick else FULL_TASKS)
    samples = args.samples or (100 if args.quick else 300)
    claims = args.claims or (20 if args.quick else 40)
    started = time.perf_counter()
    load_before = os.getloadavg()

    os.environ["DATABASE_URL"] = common.fresh_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("HITL_AUDIT_KEYS", "bench:bench-only-audit-key")
    # Plain HTTP through the test client: no redirect to https (production's default).
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hitl.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.DEBUG = False  # Django keeps no query log
    settings.ALLOWED_HOSTS = ["testserver"]
    # Users are made with a password; the default hasher would take most of the setup.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_s = time.perf_counter() - t0
    fixture = _load(n_tasks)
    gc.collect()  # the load's garbage, so that no full collection lands in a measure for it
    measures = _measure(fixture, samples, explain=args.explain)
    concurrency = _concurrency(fixture, claims)
    total_s = time.perf_counter() - started
    load_after = os.getloadavg()

    print(f"machine: {common.machine()}")
    print(
        "These are absolute figures on this machine (PostgreSQL on the same host, sharing its"
        " CPUs); they do not transfer to other hardware."
    )
    print(
        "load average (1, 5, 15 min) at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} {:.2f}"
        " (the end includes this run's own threads; anything else running on the machine"
        " inflates the figures)".format(*load_before, *load_after)
    )
    print(
        f"load: {n_tasks} open tasks{' (--quick: not the full 100k)' if args.quick else ''},"
        f" {WORKFLOWS} workflows, {len(fixture.reviewers)} reviewers + 1 admin;"
        f" loaded in {fixture.load_s:.1f}s (migrate {migrate_s:.1f}s)"
    )
    rows = [
        [
            m["label"],
            m["n"],
            f"{m['p50_ms']:.2f}",
            f"{m['p95_ms']:.2f}",
            f"{m['max_ms']:.2f}",
            f"{m['db_p50_ms']:.2f}",
            m["queries"],
            len(m["gc_full_collections_ms"]),
        ]
        for m in measures.values()
    ]
    common.print_table(
        ["measure", "n", "p50 ms", "p95 ms", "max ms", "db p50 ms", "queries", "full gc"],
        rows,
        "Server-side latency (db: time inside database calls; queries: per request;"
        " full gc: generation-2 collections during the samples)",
    )
    c = concurrency
    common.print_table(
        ["concurrency (threads)", "value"],
        [
            ["loops (one reviewer each)", c["loops"]],
            ["claims attempted per loop (max)", c["claims_per_loop"]],
            ["claims", c["claims"]],
            ["loops that found their queue empty", c["emptied"]],
            ["claims_per_s", f"{c['claims_per_s']:.1f}"],
            ["claim p50 / p95 ms under contention", f"{c['p50_ms']:.2f} / {c['p95_ms']:.2f}"],
            ["double_claims", c["double_claims"]],
            ["claims not allowed to the claimer", c["not_allowed"]],
            [
                "tasks the DB says their claimer got vs distinct ids",
                f"{c['db_claimed']} / {c['distinct']}",
            ],
            ["errors", len(c["errors"])],
        ],
    )
    for error in c["errors"][:5]:
        print(f"  error: {error}")

    queue_p95 = max(m["p95_ms"] for key, m in measures.items() if key.startswith("queue"))
    task_p95 = measures["task"]["p95_ms"]
    claim_p95 = max(measures["claim_service"]["p95_ms"], measures["claim_view"]["p95_ms"])
    targets = {
        "queue_p95_ms <= 50": queue_p95 <= TARGET_QUEUE_P95_MS,
        "claim_next_p95_ms <= 20": claim_p95 <= TARGET_CLAIM_P95_MS,
        "double_claims == 0, no errors": c["double_claims"] == 0 and not c["errors"],
    }
    common.print_table(
        ["headline", "value"],
        [
            ["queue_p95_ms (worst queue variant)", f"{queue_p95:.2f}"],
            ["task_p95_ms", f"{task_p95:.2f}"],
            ["claim_next_p95_ms (worse of service, view)", f"{claim_p95:.2f}"],
            ["double_claims", c["double_claims"]],
        ],
    )
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    for key, m in measures.items():
        if key.startswith("queue") or key.startswith("claim"):
            limit = TARGET_QUEUE_P95_MS if key.startswith("queue") else TARGET_CLAIM_P95_MS
            verdict = "met" if m["p95_ms"] <= limit else "NOT met"
            print(f"  {m['label']}: p95 {m['p95_ms']:.2f} ms <= {limit:g}: {verdict}")
    print(f"total run time: {total_s:.1f}s")

    if args.json:
        results = {
            "queue_p95_ms": round(queue_p95, 3),
            "task_p95_ms": round(task_p95, 3),
            "claim_next_p95_ms": round(claim_p95, 3),
            "double_claims": c["double_claims"],
            "claims_per_s": round(c["claims_per_s"], 2),
            "targets": {
                "queue_p95_ms": TARGET_QUEUE_P95_MS,
                "claim_next_p95_ms": TARGET_CLAIM_P95_MS,
                "met": targets,
            },
            "tasks": n_tasks,
            "quick": args.quick,
            "samples": samples,
            "load_s": round(fixture.load_s, 2),
            "migrate_s": round(migrate_s, 2),
            "total_s": round(total_s, 1),
            "loadavg_start": [round(x, 2) for x in load_before],
            "loadavg_end": [round(x, 2) for x in load_after],
            "rows": fixture.counts,
            "measures": measures,
            "concurrency": {**c, "errors": c["errors"][:20]},
        }
        common.write_json(args.json, "queue", results)


# --- Load ------------------------------------------------------------------------------------


def _load(n_tasks: int) -> Fixture:
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.utils import timezone

    from workflows import services
    from workflows.models import ReviewTask, Run, StepRun, Workflow

    started = time.perf_counter()
    rng = random.Random(SEED)
    actor = services.Actor.system("bench")
    workflows: list[Workflow] = []
    groups: list[Group] = []
    for n in range(WORKFLOWS):
        slug = f"bench-queue-{n:02d}"
        source = DEFINITION.format(slug=slug, n=n, threshold=THRESHOLD)
        workflow = services.workflow_import(source=source, actor=actor).workflow
        group = Group.objects.create(name=f"{slug}-reviewers")
        Workflow.objects.filter(pk=workflow.pk).update(reviewer_group=group)
        workflow.refresh_from_db()
        workflows.append(workflow)
        groups.append(group)

    admin = User.objects.create_user("bench-admin", "admin@example.com", "bench")
    for workflow in workflows:
        workflow.admins.add(admin)
    reviewers: list[User] = []
    reviewer_workflows: list[list[int]] = []
    for k in range(REVIEWERS):
        user = User.objects.create_user(f"reviewer-{k:02d}", f"r{k}@example.com", "bench")
        home = k // PER_GROUP
        mine = [home]
        if k % (2 * PER_GROUP) == 0:  # reviewers 0, 10, 20, 30, 40 review a second workflow
            mine.append((home + 1) % WORKFLOWS)
        user.groups.add(*(groups[w] for w in mine))
        reviewers.append(user)
        reviewer_workflows.append(mine)

    now = timezone.now()
    reasons, weights = zip(*REASONS.items(), strict=True)
    specs = []
    for _ in range(n_tasks):
        reason = rng.choices(reasons, weights)[0]
        label = rng.choice(LABELS)
        if reason == "below_threshold":
            confidence = rng.uniform(0.30, THRESHOLD - 0.01)
        elif reason == "audit_sample":
            confidence = rng.uniform(THRESHOLD, 0.99)
        else:
            confidence = rng.uniform(0.50, 0.99)
        created = now - timedelta(seconds=rng.uniform(0, 3 * 86400))
        due = None if rng.random() < NO_SLA_SHARE else now + timedelta(hours=rng.uniform(0, 96))
        specs.append(
            (
                rng.randrange(WORKFLOWS),
                rng.choices(range(11), PRIORITY_WEIGHTS)[0],
                reason,
                label,
                round(confidence, 4),
                created,
                due,
                rng.randint(3, 9),  # samples drawn
            )
        )

    run_base = _max_id(Run)
    step_base = _max_id(StepRun)
    task_base = _max_id(ReviewTask)

    def runs() -> Iterator[dict[str, Any]]:
        for i, (w, _, _, label, _, created, _, _) in enumerate(specs):
            yield {
                "id": run_base + i + 1,
                "workflow_id": workflows[w].pk,
                "version_id": workflows[w].active_version_id,
                "status": Run.Status.WAITING,
                "input": {"text": f"ticket {i}: please look at my {label} issue", "label": label},
                "source": "bench",
                "created_at": created,
                "updated_at": created,
            }

    def steps() -> Iterator[dict[str, Any]]:
        for i, (_, priority, reason, label, confidence, created, _, n) in enumerate(specs):
            agree = max(1, round(confidence * n))
            other = rng.choice([x for x in LABELS if x != label])
            done = created + timedelta(seconds=2)
            yield {
                "id": step_base + 2 * i + 1,
                "run_id": run_base + i + 1,
                "step_id": "classify",
                "kind": "transform",
                "position": 0,
                "status": StepRun.Status.COMPLETED,
                "attempts": 1,
                "output": {"label": label},
                "confidence": confidence,
                "meta": {"votes": {label: agree, other: n - agree} if n > agree else {label: n}},
                "started_at": created,
                "finished_at": done,
                "created_at": created,
            }
            gate = {
                "guards": "classify",
                "confidence": confidence,
                "label": label,
                "threshold": THRESHOLD,
                "audit_rate": 0.05,
                "priority": priority,
                "sla_minutes": 1440,
                "decision": "review",
                "reason": reason,
            }
            if reason.startswith("rule:"):
                gate["rule"] = reason.removeprefix("rule:")
            yield {
                "id": step_base + 2 * i + 2,
                "run_id": run_base + i + 1,
                "step_id": "check",
                "kind": "gate",
                "position": 1,
                "status": StepRun.Status.WAITING,
                "attempts": 1,
                "confidence": confidence,
                "meta": gate,
                "started_at": done,
                "created_at": done,
            }

    task_ids: list[list[int]] = [[] for _ in range(WORKFLOWS)]

    def tasks() -> Iterator[dict[str, Any]]:
        for i, (w, priority, reason, _, _, created, due, _) in enumerate(specs):
            task_id = task_base + i + 1
            task_ids[w].append(task_id)
            yield {
                "id": task_id,
                "workflow_id": workflows[w].pk,
                "run_id": run_base + i + 1,
                "step_run_id": step_base + 2 * i + 2,
                "guarded_id": step_base + 2 * i + 1,
                "audience": ReviewTask.Audience.REVIEWERS,
                "reason": reason,
                "priority": priority,
                "status": ReviewTask.Status.OPEN,
                "due_at": due,
                "warn_at": due - timedelta(hours=6) if due else None,
                "created_at": created,
            }

    with transaction.atomic():
        _copy(Run, runs())
        _copy(StepRun, steps())
        _copy(ReviewTask, tasks())
        for model in (Run, StepRun, ReviewTask):
            _sync_sequence(model)
    with connection.cursor() as cursor:
        # What autovacuum would do shortly after such a load anyway; done now, so that it
        # does not happen in the middle of a measurement.
        for model in (Run, StepRun, ReviewTask):
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        cursor.execute("ANALYZE")
    counts = {
        "runs": Run.objects.count(),
        "step_runs": StepRun.objects.count(),
        "review_tasks_open": ReviewTask.objects.filter(status=ReviewTask.Status.OPEN).count(),
    }
    return Fixture(
        workflows=workflows,
        reviewers=reviewers,
        reviewer_workflows=reviewer_workflows,
        admin=admin,
        task_ids=task_ids,
        load_s=time.perf_counter() - started,
        counts=counts,
    )


def _max_id(model: Any) -> int:
    from django.db.models import Max

    return int(model.objects.aggregate(m=Max("id"))["m"] or 0)


def _copy(model: Any, rows: Iterable[dict[str, Any]]) -> None:
    """COPY rows (attname -> value) into the model's table; missing fields get their default."""
    from django.db import connection
    from django.db.models import JSONField

    fields = model._meta.concrete_fields
    defaults = [f.get_default() for f in fields]
    is_json = [isinstance(f, JSONField) for f in fields]
    names = [f.attname for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
    spec = list(zip(names, defaults, is_json, strict=True))
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(
                [
                    json.dumps(row.get(name, default)) if js else row.get(name, default)
                    for name, default, js in spec
                ]
            )


def _sync_sequence(model: Any) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
            [model._meta.db_table, max(_max_id(model), 1)],
        )


# --- Latency ---------------------------------------------------------------------------------


def _stats(
    label: str,
    timed: tuple[list[float], list[float], list[float]],
    probe: tuple[int, float, list[Any]],
) -> dict[str, Any]:
    values, db, pauses = timed
    queries, query_ms, slowest = probe
    return {
        "label": label,
        "n": len(values),
        "p50_ms": round(statistics.median(values), 3),
        "p95_ms": round(common.percentile(values, 0.95), 3),
        "max_ms": round(max(values), 3),
        "mean_ms": round(statistics.fmean(values), 3),
        # Time inside the database calls (execute, round trip included), per sample.
        "db_p50_ms": round(statistics.median(db), 3),
        "db_p95_ms": round(common.percentile(db, 0.95), 3),
        "gc_full_collections_ms": [round(ms, 1) for ms in pauses],
        "queries": queries,
        "probe_query_ms": round(query_ms, 3),
        "slowest_queries": slowest,
    }


def _timed(
    call: Callable[[int], Any],
    samples: int,
    warmup: int,
    after: Callable[[Any], None] | None = None,
) -> tuple[list[float], list[float], list[float]]:
    """Time `call(i)` `samples` times after `warmup` untimed calls; `after` runs untimed.

    Returns each sample's total, the part of it spent in database calls, and the full
    (generation 2) garbage collections that ran meanwhile: part of any Django process's life,
    so they stay in the figures, but they explain a max.
    """
    from django.db import connection

    in_db = [0.0]

    def timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            in_db[0] += time.perf_counter() - began

    pauses: list[float] = []
    gc_began = [0.0]

    def collector(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_began[0] = time.perf_counter()
        elif info["generation"] == 2:
            pauses.append((time.perf_counter() - gc_began[0]) * 1000)

    for i in range(warmup):
        result = call(i)
        if after:
            after(result)
    values, db = [], []
    gc.callbacks.append(collector)
    try:
        with connection.execute_wrapper(timer):
            for i in range(samples):
                in_db[0] = 0.0
                began = time.perf_counter()
                result = call(warmup + i)
                values.append((time.perf_counter() - began) * 1000)
                db.append(in_db[0] * 1000)
                if after:
                    after(result)
    finally:
        gc.callbacks.remove(collector)
    return values, db, pauses


def _probe(
    call: Callable[[], Any], explain: bool, label: str, after: Callable[[Any], None] | None = None
) -> tuple[int, float, list[Any]]:
    """Run `call` once, timing its queries: count, total DB time, the slowest three."""
    from django.db import connection

    queries: list[tuple[float, str, Any]] = []

    def timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append(((time.perf_counter() - began) * 1000, sql, params))

    with connection.execute_wrapper(timer):
        result = call()
    if after:
        after(result)
    slowest = sorted(queries, key=lambda q: q[0], reverse=True)[:3]
    if explain:
        print(f"\n=== {label}: {len(queries)} queries, {sum(q[0] for q in queries):.2f} ms")
        for ms, sql, params in slowest[:2]:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue  # EXPLAIN ANALYZE would write
            with connection.cursor() as cursor:
                print(f"--- {ms:.2f} ms\n{cursor.mogrify(sql, params)}")
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                print("\n".join(row[0] for row in cursor.fetchall()))
    return (
        len(queries),
        sum(q[0] for q in queries),
        [{"ms": round(ms, 3), "sql": sql[:400]} for ms, sql, _ in slowest],
    )


def _measure(fixture: Fixture, samples: int, *, explain: bool) -> dict[str, dict[str, Any]]:
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from workflows import selectors, services
    from workflows.models import ReviewTask

    rng = random.Random(SEED + 1)
    warmup = len(fixture.reviewers)  # every client's first request is a warm-up
    reviewers = fixture.reviewers
    clients = []
    for user in [*reviewers, fixture.admin]:
        client = Client()
        client.force_login(user)
        clients.append(client)
    queue_url = reverse("review:queue")
    next_url = reverse("review:next")

    def ok(response: Any, status: int = 200) -> Any:
        if response.status_code != status:
            raise SystemExit(f"{response.status_code} where {status} was expected")
        return response

    # A cursor deep in each reviewer's keyset: 80% of the way down their live queue.
    deep: list[str] = []
    for user in reviewers:
        live = selectors.review_task_list(user=user, status=list(ReviewTask.LIVE))
        depth = int(0.8 * live.count())
        deep.append(selectors.QueueCursor.of(live[depth]).encode())

    def who(i: int) -> int:
        return i % len(reviewers)

    def home_slug(i: int) -> str:
        return str(fixture.workflows[fixture.reviewer_workflows[who(i)][0]].slug)

    def queue_first(i: int) -> Any:
        return ok(clients[who(i)].get(queue_url))

    def queue_deep(i: int) -> Any:
        return ok(clients[who(i)].get(queue_url, {"after": deep[who(i)]}))

    def queue_filtered(i: int) -> Any:
        return ok(clients[who(i)].get(queue_url, {"workflow": home_slug(i)}))

    def queue_admin(i: int) -> Any:
        return ok(clients[-1].get(queue_url))

    picks = [
        rng.choice(fixture.task_ids[rng.choice(fixture.reviewer_workflows[who(i)])])
        for i in range(samples + warmup + 1)
    ]

    def task_page(i: int) -> Any:
        return ok(clients[who(i)].get(reverse("review:task", args=[picks[i]])))

    def claim_service(i: int) -> Any:
        task = services.review_claim_next(user=reviewers[who(i)])
        if task is None:
            raise SystemExit("claim-next found nothing to claim")
        return task.pk

    location = re.compile(r"/review/tasks/(\d+)/$")

    def claim_view(i: int) -> Any:
        response = ok(clients[who(i)].post(next_url), 302)
        match = location.search(response["Location"])
        if match is None:
            raise SystemExit(f"claim-next redirected to {response['Location']}")
        return int(match.group(1))

    def decided(task_id: int) -> None:
        # The reviewer decides before asking for the next task (untimed).
        ReviewTask.objects.filter(pk=task_id).update(
            status=ReviewTask.Status.DECIDED, closed_at=timezone.now()
        )

    plan: list[tuple[str, str, Callable[[int], Any], Callable[[Any], None] | None]] = [
        ("queue_first", "queue page, first page (reviewer)", queue_first, None),
        ("queue_deep", "queue page, 80% deep in the keyset", queue_deep, None),
        ("queue_filtered", "queue page, ?workflow= filter", queue_filtered, None),
        ("queue_admin", "queue page, admin of all workflows", queue_admin, None),
        ("task", "task page (random visible task)", task_page, None),
        ("claim_service", "claim-next, service call", claim_service, decided),
        ("claim_view", "claim-next, POST /review/next/", claim_view, decided),
    ]
    results: dict[str, dict[str, Any]] = {}
    for key, label, call, after in plan:
        timed = _timed(call, samples, warmup, after)
        probe = _probe(functools.partial(call, samples + warmup), explain, label, after)
        results[key] = _stats(label, timed, probe)
    return results


# --- Concurrency -----------------------------------------------------------------------------


def _concurrency(fixture: Fixture, per_loop: int) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from workflows import services
    from workflows.models import ReviewTask

    reviewers = fixture.reviewers
    barrier = threading.Barrier(len(reviewers))
    claimed: list[list[int]] = [[] for _ in reviewers]
    latencies: list[list[float]] = [[] for _ in reviewers]
    emptied = [False] * len(reviewers)
    errors: list[str] = []

    def loop(k: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait()
            for _ in range(per_loop):
                began = time.perf_counter()
                task = services.review_claim_next(user=reviewers[k])
                latencies[k].append((time.perf_counter() - began) * 1000)
                if task is None:
                    emptied[k] = True
                    break
                claimed[k].append(task.pk)
                # The reviewer decides before the next claim (untimed), as on the desk: the
                # default claims cap (HITL_REVIEW_MAX_CLAIMS) stays in force.
                ReviewTask.objects.filter(pk=task.pk).update(
                    status=ReviewTask.Status.DECIDED, closed_at=timezone.now()
                )
        except Exception as exc:
            errors.append(f"reviewer {k}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(len(reviewers))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began

    every = [pk for ids in claimed for pk in ids]
    counts = Counter(every)
    double = sum(1 for n in counts.values() if n > 1)
    workflow_index = {wf.pk: n for n, wf in enumerate(fixture.workflows)}
    rows = dict(ReviewTask.objects.filter(pk__in=counts).values_list("pk", "workflow_id"))
    not_allowed = sum(
        1
        for k, ids in enumerate(claimed)
        for pk in ids
        if workflow_index[rows[pk]] not in fixture.reviewer_workflows[k]
    )
    all_latencies = [ms for values in latencies for ms in values]
    return {
        "mode": "threads",
        "loops": len(reviewers),
        "claims_per_loop": per_loop,
        "claims": len(every),
        "distinct": len(counts),
        # Each task claimed (then decided) by the reviewer whose loop got it, per the database.
        "db_claimed": sum(
            ReviewTask.objects.filter(pk__in=ids, claimed_by=reviewers[k]).count()
            for k, ids in enumerate(claimed)
        ),
        "emptied": sum(emptied),
        "elapsed_s": round(elapsed, 3),
        "claims_per_s": len(every) / elapsed if elapsed else 0.0,
        "p50_ms": round(statistics.median(all_latencies), 3) if all_latencies else 0.0,
        "p95_ms": round(common.percentile(all_latencies, 0.95), 3) if all_latencies else 0.0,
        "max_ms": round(max(all_latencies), 3) if all_latencies else 0.0,
        "double_claims": double,
        "not_allowed": not_allowed,
        "errors": errors,
    }


if __name__ == "__main__":
    main()
