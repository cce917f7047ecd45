"""Verified inbound webhooks per second, and their latency, under gunicorn on loopback.

    python -m bench.webhooks [--quick] [--json PATH] [--requests N] [--rounds R]
                             [--concurrency C] [--workers W] [--threads T]

Needs DATABASE_URL and REDIS_URL: run it through `python -m hitl.devstack exec --`, which
gives it a private Redis (every accepted delivery enqueues its run's first step there, and no
worker runs: this measures intake only). It creates its own database `<name>_bench`, starts
gunicorn (`gthread` workers) on a free loopback port with this module as its WSGI app, and
measures on that one server, in interleaved rounds:

- verified: POST /api/v1/webhooks/<source>/, the production URL and view, signed deliveries;
- unverified: the same pipeline with the signature check left out: a bench-only URL that
  exists only in this module's URLconf, which only the gunicorn started here loads (it
  refuses to load unless HITL_BENCH_WEBHOOKS=1, set here and nowhere else);
- bare: a Django view on the same server that reads the body and answers {"ok": true}.

The load comes from one asyncio client on the same machine: C keep-alive connections, each
sending its next request when the previous one is answered (closed loop), raw HTTP/1.1 so
the client leaves the CPU to the server; requests are signed before the clock starts. One
delivery in 20 re-sends an earlier webhook-id, which must answer 200 with the first run.
Afterwards every delivery answered 2xx is looked up in the database: `lost` counts ids with
no InboundMessage row, `duplicated` counts runs beyond one per id.

Everything shares the machine: PostgreSQL, Redis, gunicorn and the client. So the CPU each
request cost is also reported by process (from /proc), with what other processes took
meanwhile, and from it an upper bound: the rate if every core ran only this benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import common

ROOT = Path(__file__).resolve().parent.parent
ENABLE = "HITL_BENCH_WEBHOOKS"
BENCH_WORKFLOW = """
slug: bench-intake
name: Bench, webhook intake
input_schema:
  type: object
  required: [subject, body]
  properties:
    subject: {type: string, maxLength: 300}
    body: {type: string, maxLength: 20000}
    customer: {type: string}
    priority: {type: integer, minimum: 0}
steps:
  - id: hold
    kind: wait
    config: {reason: the benchmark measures intake only}
"""
MODES = ("verified", "unverified", "bare")
DUPLICATE_EVERY = 20


# --- What gunicorn loads ------------------------------------------------------------------


def wsgi() -> Any:
    """The WSGI app gunicorn serves: hitl's, with this module as its URLconf."""
    if os.environ.get(ENABLE) != "1":
        raise RuntimeError(f"bench.webhooks is for the benchmark only ({ENABLE}=1)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitl.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.ROOT_URLCONF = "bench.webhooks"
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def __getattr__(name: str) -> Any:
    # Django reads `urlpatterns` from this module only once it is the URLconf (in gunicorn);
    # built on first use, so that importing the module to run the benchmark needs no Django.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def _urlpatterns() -> list[Any]:
    if os.environ.get(ENABLE) != "1":
        raise RuntimeError(f"bench.webhooks is for the benchmark only ({ENABLE}=1)")
    from django.conf import settings
    from django.http import HttpRequest, JsonResponse
    from django.urls import include, path
    from django.utils import timezone
    from django.views.decorators.csrf import csrf_exempt

    from hitl.api.webhooks import error_response, read_body
    from workflows.services import webhooks

    @csrf_exempt
    def unverified(request: HttpRequest, source: str) -> JsonResponse:
        """The production view's work, less `_verify`: what the signature check costs."""
        try:
            body = read_body(request, settings.HITL_WEBHOOK_MAX_BYTES)
            now = timezone.now()
            webhook_id = webhooks.webhook_check_headers(headers=request.headers, now=now)
            found = webhooks.webhook_lookup(slug=source, webhook_id=webhook_id, now=now)
            delivery = webhooks.webhook_accept(
                found=found, webhook_id=webhook_id, body=body, now=now
            )
        except webhooks.WebhookRejected as exc:
            return error_response(exc.status_code, exc.code, exc.message, exc.details)
        return JsonResponse(
            {"run": delivery.run_id, "status": delivery.status, "duplicate": delivery.duplicate},
            status=200 if delivery.duplicate else 202,
        )

    @csrf_exempt
    def bare(request: HttpRequest) -> JsonResponse:
        request.read()
        return JsonResponse({"ok": True})

    return [
        path("bench/unverified/<slug:source>/", unverified),
        path("bench/bare/", bare),
        path("", include("hitl.urls")),
    ]


# --- The benchmark ------------------------------------------------------------------------


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, help="requests per endpoint and round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    args = parser.parse_args()
    n = args.requests or (1500 if args.quick else 5000)
    rounds = args.rounds or (1 if args.quick else 3)

    os.environ["DATABASE_URL"] = common.fresh_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("HITL_AUDIT_KEYS", "bench:bench-only-audit-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hitl.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    secrets = _load()
    port = _free_port()
    server = _gunicorn(port, args.workers, args.threads)
    try:
        database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
        results = asyncio.run(
            _measure(port, server.pid, database, secrets, n, rounds, args.concurrency)
        )
    finally:
        _stop(server)
    results.update(_count(results.pop("answers")))
    results["server"] = f"gunicorn gthread, {args.workers} workers x {args.threads} threads"
    results["client"] = f"asyncio, {args.concurrency} keep-alive connections, closed loop"
    _report(results, n, rounds)
    if args.json:
        common.write_json(args.json, "webhooks", results)


def _load() -> dict[str, str]:
    from workflows import services
    from workflows.models import WebhookSource
    from workflows.services import webhook_sources

    workflow = services.workflow_import(
        source=BENCH_WORKFLOW, actor=services.Actor.system("bench")
    ).workflow
    secrets = {}
    for mode in ("verified", "unverified"):
        issued = webhook_sources.webhook_source_create(
            workflow=workflow, slug=f"bench-{mode}", user=None, rate_limit_per_minute=2**31 - 1
        )
        secrets[mode] = issued.secret
    assert WebhookSource.objects.count() == 2
    return secrets


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gunicorn(port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    # Production settings, served over plain HTTP on loopback as behind a TLS-terminating
    # proxy (no redirect to https). Its request log lines are written, as in production,
    # to a file rather than this terminal.
    env = {
        **os.environ,
        ENABLE: "1",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "bench.webhooks:wsgi()",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    log = ROOT / "bench" / "results" / "webhooks-gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited with code {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    _stop(server)
    sys.exit("gunicorn did not start listening within 60 s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # graceful: workers finish what they have
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _cpu(server_pid: int, database: str) -> dict[str, tuple[str, float]]:
    """CPU seconds used so far by each process that counts, by pid: this server's workers,
    the PostgreSQL backends of the bench database, the PostgreSQL server's own processes,
    Redis and this client. `machine` (/proc/stat) is every core's busy time, so that what
    other processes ran meanwhile on a shared machine shows."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, parent = int(entry.name), int(fields[1])
        if pid == server_pid or parent == server_pid:
            group = "gunicorn"
        elif title.startswith("postgres: ") and f" {database} " in title:
            group = "pg backends"
        elif title.startswith("postgres: ") and ("@" in title or "127.0.0.1(" in title):
            continue  # a backend of another database: someone else's work
        elif title.startswith("postgres: "):
            group = "pg server"  # WAL writer, checkpointer, ... (shared, but mostly ours)
        elif "redis-server" in title:
            group = "redis"
        elif pid == os.getpid():
            group = "client"
        elif parent == 2 or pid == 2:
            group = "kernel"  # kernel threads: I/O completion, deferred network work ...
        else:
            continue
        used[entry.name] = (group, (int(fields[11]) + int(fields[12])) / tick)
    # user nice system idle iowait irq softirq steal: interrupts are nobody's process time.
    first = [int(x) / tick for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    used["machine"] = ("machine", sum(first) - first[3] - first[4])
    used["irq"] = ("kernel", first[5] + first[6] + first[7])
    return used


def _cpu_used(
    before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per group between two snapshots (a process started meanwhile counts
    from zero; one that ended meanwhile is lost, as it is from `others` too)."""
    used: dict[str, float] = {}
    for key, (group, seconds) in after.items():
        used[group] = used.get(group, 0.0) + seconds - before.get(key, (group, 0.0))[1]
    return used


@dataclass
class Answer:
    mode: str
    webhook_id: str
    status: int
    body: dict[str, Any]


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0
    cpu: dict[str, float] = field(default_factory=dict)


def _requests(mode: str, secret: str, n: int, port: int) -> list[tuple[str, bytes]]:
    """`n` ready-to-send requests; one in DUPLICATE_EVERY repeats an earlier delivery."""
    from standardwebhooks import Webhook

    path = {
        "verified": "/api/v1/webhooks/bench-verified/",
        "unverified": "/bench/unverified/bench-unverified/",
        "bare": "/bench/bare/",
    }[mode]
    signer = Webhook(secret) if secret else None
    now = datetime.now(UTC)
    built: list[tuple[str, bytes]] = []
    for i in range(n):
        if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 and built:
            built.append(built[len(built) // 2])  # the same bytes: id, timestamp, signature
            continue
        webhook_id = f"msg_{uuid.uuid4().hex}"
        body = json.dumps(
            {
                "subject": f"Order {i} arrived damaged",
                "body": "The parcel was crushed and the mug inside is broken. " * 4,
                "customer": f"cust_{i % 997}",
                "priority": i % 5,
            }
        ).encode()
        signature = signer.sign(webhook_id, now, body) if signer else "v1,AAAA"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"webhook-id: {webhook_id}\r\n"
            f"webhook-timestamp: {int(now.timestamp())}\r\n"
            f"webhook-signature: {signature}\r\n\r\n"
        )
        built.append((webhook_id, head.encode() + body))
    return built


async def _measure(
    port: int,
    server_pid: int,
    database: str,
    secrets: dict[str, str],
    n: int,
    rounds: int,
    concurrency: int,
) -> dict[str, Any]:
    phases = {mode: Phase() for mode in MODES}
    answers: list[Answer] = []
    for mode in MODES:  # warm-up: connections, caches, the first prepared statements
        await _run(mode, _requests(mode, secrets.get(mode, ""), 200, port), port, concurrency)
    for _ in range(rounds):
        for mode in MODES:
            batch = _requests(mode, secrets.get(mode, ""), n, port)
            cpu_before, started = _cpu(server_pid, database), time.perf_counter()
            latencies, got = await _run(mode, batch, port, concurrency)
            phases[mode].seconds += time.perf_counter() - started
            for group, seconds in _cpu_used(cpu_before, _cpu(server_pid, database)).items():
                phases[mode].cpu[group] = phases[mode].cpu.get(group, 0.0) + seconds
            phases[mode].latencies += latencies
            phases[mode].requests += len(batch)
            answers += got
    results: dict[str, Any] = {}
    for mode, phase in phases.items():
        results[f"{mode}_per_s"] = round(phase.requests / phase.seconds, 1)
        results[f"{mode}_p50_ms"] = round(common.percentile(phase.latencies, 0.50) * 1000, 2)
        results[f"{mode}_p99_ms"] = round(common.percentile(phase.latencies, 0.99) * 1000, 2)
        # CPU ms per request, and how busy the machine was (100% = every core, all the time).
        cpu = {k: round(v / phase.requests * 1000, 3) for k, v in phase.cpu.items()}
        cpu["others"] = round(cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine"), 3)
        cpu["machine_busy_pct"] = round(
            100 * phase.cpu["machine"] / (phase.seconds * (os.cpu_count() or 1)), 1
        )
        results[f"{mode}_cpu_ms_per_request"] = cpu
    results["p50_ms"], results["p99_ms"] = results["verified_p50_ms"], results["verified_p99_ms"]
    results["ratio_to_unverified"] = round(
        results["verified_per_s"] / results["unverified_per_s"], 3
    )
    results["ratio_to_bare_view"] = round(results["verified_per_s"] / results["bare_per_s"], 3)
    # On a shared machine the rate depends on what else ran; the CPU a delivery cost does not
    # (much): what every core could do with nothing else to run bounds the rate from above.
    cpu = results["verified_cpu_ms_per_request"]
    own = sum(cpu[g] for g in ("gunicorn", "pg backends", "pg server", "redis", "client", "kernel"))
    results["verified_own_cpu_ms"] = round(own, 3)
    results["verified_ceiling_per_s"] = round((os.cpu_count() or 1) * 1000 / own, 1)
    results["answers"] = answers
    return results


async def _run(
    mode: str, batch: list[tuple[str, bytes]], port: int, concurrency: int
) -> tuple[list[float], list[Answer]]:
    latencies: list[float] = []
    answers: list[Answer] = []

    async def connection(share: list[tuple[str, bytes]]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for webhook_id, raw in share:
            sent = time.perf_counter()
            writer.write(raw)
            status, body, close = await _response(reader)
            latencies.append(time.perf_counter() - sent)
            try:
                document = json.loads(body)
            except ValueError:
                document = {"unparsed": body[:300].decode("latin-1")}
            answers.append(Answer(mode, webhook_id, status, document))
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(connection(batch[i::concurrency]) for i in range(concurrency)))
    return latencies, answers


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


def _count(answers: list[Answer]) -> dict[str, Any]:
    """Every delivery answered 2xx, looked up in the database after the server stopped."""
    from django.db import connection

    from workflows.models import InboundMessage, Run

    connection.close()  # a fresh connection: what was committed, nothing cached
    deliveries = [a for a in answers if a.mode != "bare"]
    errors = Counter(a.status for a in answers if a.status >= 300)
    for a in answers:
        if a.status >= 300:
            print(f"first non-2xx answer ({a.mode}): {a.status} {a.body}", file=sys.stderr)
            break
    accepted = [a for a in deliveries if a.status in (200, 202)]
    first_runs: dict[str, set[int]] = {}
    for a in accepted:
        first_runs.setdefault(a.webhook_id, set()).add(int(a.body["run"]))
    stored = dict(
        InboundMessage.objects.filter(webhook_id__in=list(first_runs)).values_list(
            "webhook_id", "run_id"
        )
    )
    lost = sum(1 for webhook_id in first_runs if webhook_id not in stored)
    # Runs beyond one per delivery: any webhook run with no message, any id answered with two
    # different runs, and any id answered 202 (a new run) more than once.
    new = Counter(a.webhook_id for a in accepted if a.status == 202)
    duplicated = (
        Run.objects.filter(source="webhook").count()
        - InboundMessage.objects.count()
        + sum(len(runs) - 1 for runs in first_runs.values())
        + sum(count - 1 for count in new.values())
    )
    mismatched = sum(1 for w, runs in first_runs.items() if w in stored and runs != {stored[w]})
    return {
        "lost": lost,
        "duplicated": duplicated,
        "mismatched": mismatched,
        "accepted": len(new),
        "replayed_200": sum(1 for a in accepted if a.status == 200),
        "errors": dict(sorted((str(k), v) for k, v in errors.items())),
    }


def _report(results: dict[str, Any], n: int, rounds: int) -> None:
    print(f"machine: {common.machine()}")
    print(f"{results['server']}; {results['client']}; {rounds} round(s) of {n} per endpoint")
    rows = [
        [
            {
                "verified": "verified webhook",
                "unverified": "unverified (bench only)",
                "bare": "bare Django view",
            }[mode],
            f"{results[f'{mode}_per_s']:.1f}",
            f"{results[f'{mode}_p50_ms']:.2f}",
            f"{results[f'{mode}_p99_ms']:.2f}",
        ]
        for mode in MODES
    ]
    common.print_table(["endpoint", "req/s", "p50 ms", "p99 ms"], rows, "Same gunicorn, loopback")
    groups = [
        "gunicorn",
        "pg backends",
        "pg server",
        "redis",
        "client",
        "kernel",
        "others",
        "machine",
    ]
    common.print_table(
        ["CPU ms per request", *groups, "machine busy %"],
        [
            [
                mode,
                *(results[f"{mode}_cpu_ms_per_request"][g] for g in groups),
                results[f"{mode}_cpu_ms_per_request"]["machine_busy_pct"],
            ]
            for mode in MODES
        ],
        "Where the CPU went (kernel: interrupts and kernel threads; others: other processes)",
    )
    common.print_table(
        ["headline", "value"],
        [
            ["verified_per_s", results["verified_per_s"]],
            ["p99_ms (verified)", results["p99_ms"]],
            ["ratio_to_unverified", results["ratio_to_unverified"]],
            ["ratio_to_bare_view", results["ratio_to_bare_view"]],
            ["accepted (new runs)", results["accepted"]],
            ["replayed_200 (duplicates answered)", results["replayed_200"]],
            ["lost", results["lost"]],
            ["duplicated", results["duplicated"]],
            ["non-2xx answers", results["errors"] or 0],
        ],
    )
    met = results["verified_per_s"] >= 300 and results["p99_ms"] < 100
    print(f"target >= 300 verified req/s with p99 < 100 ms: {'met' if met else 'NOT met'}")
    print(
        f"the benchmark's own CPU per verified delivery: {results['verified_own_cpu_ms']} ms, "
        f"so at most {results['verified_ceiling_per_s']} req/s on {os.cpu_count()} cores with "
        "nothing else running (an upper bound, not a measurement)"
    )


if __name__ == "__main__":
    main()
