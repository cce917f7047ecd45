"""The audit sealer and verifier: events per second, against the old sealer in the same run.

    python -m bench.audit [--quick] [--json PATH] [--events N]

Needs DATABASE_URL (run it through `python -m hitl.devstack exec --`). It creates its own
database `<name>_bench`, so it never touches your data, inserts N step.completed-like events
(100,000; `--quick` 20,000) straight into the table, and measures:

- seal: `audit_seal()` over all of them, keyed (HMAC-SHA256), one UPDATE per batch, at each
  batch size measured (the default one is the headline);
- verify: `audit_verify()` over the sealed chain (streamed in keyset batches), including the
  decision cross-check (no decisions here) and no checkpoint file;
- baseline: the sealer as it was before (unkeyed SHA-256, `bulk_update` of 1,000 rows per
  batch), kept here as `_seal_bulk_update`, over at most 20,000 events: it is the slow one.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench import common

BASELINE_EVENTS = 20_000


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args()
    n = args.events or (20_000 if args.quick else 100_000)

    os.environ["DATABASE_URL"] = common.fresh_database(os.environ["DATABASE_URL"])
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("HITL_AUDIT_KEYS", "bench:bench-only-audit-key")
    os.environ.pop("HITL_AUDIT_CHECKPOINT_FILE", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hitl.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # one checkpoint line per seal otherwise
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    batches = [5000] if args.quick else [1000, 5000, 20000]
    results = _measure(n, batches)
    print(f"machine: {common.machine()}")
    print(f"{n} events; baseline over {results['baseline_events']}")
    rows = [
        [f"seal, set-based, batch {size}", f"{rate:,.0f}"]
        for size, rate in results["seal_by_batch"].items()
    ]
    rows.append(["seal, bulk_update (before), batch 1000", f"{results['baseline']:,.0f}"])
    rows.append(["verify (streamed, keyed)", f"{results['verify_events_per_s']:,.0f}"])
    common.print_table(["measure", "events/s"], rows, "Audit chain")
    print(f"seal speed-up over the old sealer: {results['seal_speedup']:.1f}x")
    for name in ("seal_events_per_s", "verify_events_per_s"):
        print(f"target {name} >= 20,000: {'met' if results[name] >= 20_000 else 'NOT met'}")
    if args.json:
        common.write_json(args.json, "audit", results)


def _measure(n: int, batches: list[int]) -> dict[str, Any]:
    from workflows import services
    from workflows.services.audit import SEAL_BATCH

    baseline_n = min(n, BASELINE_EVENTS)
    _reset(baseline_n)
    started = time.perf_counter()
    _seal_bulk_update()
    baseline = baseline_n / (time.perf_counter() - started)

    by_batch: dict[int, float] = {}
    for size in batches:
        _reset(n)
        started = time.perf_counter()
        sealed = services.audit_seal(batch_size=size)
        by_batch[size] = sealed / (time.perf_counter() - started)
    if batches[-1] != SEAL_BATCH:
        _reset(n)
        services.audit_seal()
    started = time.perf_counter()
    report = services.audit_verify()
    verify = report.checked / (time.perf_counter() - started)
    if not report.ok:
        raise SystemExit(f"the sealed chain does not verify: {report.describe()}")
    seal = by_batch.get(SEAL_BATCH, max(by_batch.values()))
    return {
        "seal_events_per_s": round(seal),
        "verify_events_per_s": round(verify),
        "seal_bulk_update_events_per_s": round(baseline),
        "seal_speedup": round(seal / baseline, 2),
        "seal_by_batch": {size: round(rate) for size, rate in by_batch.items()},
        "seal_batch": SEAL_BATCH,
        "baseline": round(baseline),
        "baseline_events": baseline_n,
        "events": n,
    }


def _reset(n: int) -> None:
    """An empty audit table (TRUNCATE fires no row trigger), then n unsealed events."""
    from django.db import connection

    from workflows.canonical import canonical_json, sha256_hex

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE workflows_auditevent")
        for start in range(0, n, 10_000):
            ids = range(start, min(n, start + 10_000))
            payloads = [canonical_json({"run": i, "step": "classify", "attempt": 1}) for i in ids]
            cursor.execute(
                "INSERT INTO workflows_auditevent (actor_type, actor_id, actor_label, verb,"
                " object_type, object_id, payload, payload_sha256, prev_hash, hash)"
                " SELECT 'system', '', 'system', 'step.completed', 'step_run', o, p::jsonb, d,"
                " '', '' FROM unnest(%s::text[], %s::text[], %s::text[]) AS v(o, p, d)",
                [[str(i) for i in ids], payloads, [sha256_hex(p) for p in payloads]],
            )
        cursor.execute("ANALYZE workflows_auditevent")


def _seal_bulk_update(batch_size: int = 1000) -> int:
    """The sealer before the keyed chain (commit 762fa38), unchanged but for its name."""
    from django.db import connection, transaction
    from django.utils import timezone

    from workflows.auditchain import GENESIS_HASH
    from workflows.canonical import canonical_json, sha256_hex
    from workflows.models import AuditEvent

    sealed = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [0x6869746C, 1])
                if not cursor.fetchone()[0]:
                    return sealed
            last = (
                AuditEvent.objects.filter(seq__isnull=False)
                .order_by("-seq")
                .values_list("seq", "hash")
                .first()
            )
            seq: int = last[0] if last and last[0] is not None else 0
            prev_hash: str = last[1] if last else GENESIS_HASH
            batch = list(AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:batch_size])
            sealed_at = timezone.now()
            for event in batch:
                seq += 1
                event.seq = seq
                event.prev_hash = prev_hash
                event.hash = sha256_hex(prev_hash + canonical_json(event.chain_fields()))
                event.sealed_at = sealed_at
                prev_hash = event.hash
            AuditEvent.objects.bulk_update(batch, ["seq", "prev_hash", "hash", "sealed_at"])
        sealed += len(batch)
        if len(batch) < batch_size:
            return sealed


if __name__ == "__main__":
    main()
