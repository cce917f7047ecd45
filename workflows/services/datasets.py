"""Dataset exports: reviewed gate items as JSONL, for retraining and evaluation.

Gate items are read in keyset batches over the gate StepRun's id (one bounded query per
batch, plus one each for the batch's decisions, tasks and steps), so an export's memory does
not grow with the table. A batch is read when the previous one has been written: an item
settled during a long export may or may not be in it, and never twice.

The line itself is built by `workflows.datasets`; the split by `workflows.splits`. Each
export writes one `dataset.exported` audit event naming the file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet

from workflows.datasets import ACTIONS, FORMATS, REGIONS, GateItem, Skip, chat, record
from workflows.errors import InvalidInput
from workflows.models import AuditEvent, Decision, ReviewTask, StepRun, Workflow
from workflows.services.audit import Actor, audit_record
from workflows.splits import SPLITS, check_rate, split_of
from workflows.steps.base import StepView
from workflows.versions import step_config

BATCH_SIZE = 500
# (items read, rows written, items in all): called after every batch.
Progress = Callable[[int, int, int], None]
# (items read, items in all).
BatchRead = Callable[[int, int], None]


class Writable(Protocol):
    """Where an export to - goes: a text stream (a command's stdout)."""

    def write(self, text: str, /) -> object: ...


# The gate records how it routed each item in its StepRun's meta (workflows/steps/gate.py).
_REVIEWED = Q(meta__decision="review")
_AUTO = Q(meta__decision="auto_approved")
_AUDIT = Q(meta__reason="audit_sample")
_RULE = Q(meta__reason__startswith="rule:")
_REGIONS = {
    "auto": _AUTO,
    "audit": _REVIEWED & _AUDIT,
    "rule": _REVIEWED & _RULE,
    "below_threshold": _REVIEWED & ~_AUDIT & ~_RULE,
}


@dataclass(frozen=True)
class DatasetFilters:
    """Which settled gate items an export holds. `since` is inclusive and `until` exclusive,
    on when the item was settled: decided by the final reviewer, or auto-approved."""

    workflows: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    actions: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    split: str = "all"
    include_auto: bool = False

    def as_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        for key in ("workflows", "actions", "regions"):
            payload[key] = list(payload[key])
        for key in ("since", "until"):
            payload[key] = payload[key].isoformat() if payload[key] else None
        return payload


@dataclass(frozen=True)
class ExportResult:
    rows: int
    sha256: str
    # Items read but given no line, by reason (chat only: `rejected`, `no_prompt`).
    skipped: dict[str, int]
    event: AuditEvent


def dataset_check(filters: DatasetFilters, fmt: str) -> None:
    """Refuse filters that name nothing: an unknown workflow, region, action, split or format."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    known = set(Workflow.objects.filter(slug__in=filters.workflows).values_list("slug", flat=True))
    for slug in filters.workflows:
        if slug not in known:
            raise InvalidInput(f"no workflow {slug!r}")
    for name, given, allowed in (
        ("region", filters.regions, REGIONS),
        ("action", filters.actions, ACTIONS),
        ("split", (filters.split,), (*SPLITS, "all")),
    ):
        for value in given:
            if value not in allowed:
                raise InvalidInput(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
    if filters.since and filters.until and filters.since >= filters.until:
        raise InvalidInput("since must be before until")


def dataset_export(
    *,
    filters: DatasetFilters,
    fmt: str,
    out: str,
    actor: Actor,
    stream: Writable | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ExportResult:
    """Write the dataset to the file `out` (or to `stream` when `out` is "-"), then audit it.

    A file is written under a temporary name beside it and moved into place when complete,
    so a failed export never leaves half a dataset where a finished one is expected.
    """
    dataset_check(filters, fmt)
    rate = check_rate(settings.HITL_EVAL_SPLIT_RATE)
    skipped: Counter[str] = Counter()
    lines = _lines(filters, fmt, rate, skipped, batch_size, progress)
    if out == "-":
        if stream is None:
            raise ValueError("an export to - needs a stream")
        rows, sha256 = _write(lines, stream)
    else:
        target = Path(out)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as handle:
                rows, sha256 = _write(lines, handle)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    event = audit_record(
        actor=actor,
        verb="dataset.exported",
        object_type="dataset",
        object_id=sha256,
        payload={
            "format": fmt,
            "filters": filters.as_payload(),
            "rows": rows,
            "sha256": sha256,
            "out": out,
            "skipped": dict(sorted(skipped.items())),
        },
    )
    return ExportResult(rows=rows, sha256=sha256, skipped=dict(skipped), event=event)


def _write(lines: Iterator[str], stream: Writable) -> tuple[int, str]:
    """Write every line; how many, and the SHA-256 of their UTF-8 bytes (the file's)."""
    digest, rows = hashlib.sha256(), 0
    for line in lines:
        stream.write(line)
        digest.update(line.encode("utf-8"))
        rows += 1
    return rows, digest.hexdigest()


def dataset_items(
    filters: DatasetFilters, *, batch_size: int = BATCH_SIZE, on_batch: BatchRead | None = None
) -> Iterator[GateItem]:
    """The settled gate items the filters select (the split aside), in gate id order.

    `on_batch` hears how far the walk has got after each batch; asking for it costs one
    count of the items first."""
    gates = _gates(filters)
    total = gates.count() if on_batch else 0
    gates = gates.select_related("run").annotate(
        workflow_slug=F("run__workflow__slug"), version_number=F("run__version__number")
    )
    last, read = 0, 0
    while True:
        batch = list(gates.filter(pk__gt=last).order_by("pk")[:batch_size])
        if batch:
            yield from _items(batch)
            last, read = batch[-1].pk, read + len(batch)
        if on_batch:
            on_batch(read, total)
        if len(batch) < batch_size:
            return


def _lines(
    filters: DatasetFilters,
    fmt: str,
    rate: float,
    skipped: Counter[str],
    batch_size: int,
    progress: Progress | None,
) -> Iterator[str]:
    rows = 0

    def report(read: int, total: int) -> None:
        assert progress is not None
        progress(read, rows, total)

    items = dataset_items(filters, batch_size=batch_size, on_batch=report if progress else None)
    for item in items:
        split = split_of(item.workflow, item.run_input, run_id=item.run_id, rate=rate)
        if filters.split not in ("all", split):
            continue
        try:
            line = record(item, split) if fmt == "records" else chat(item)
        except Skip as skip:
            skipped[str(skip)] += 1
            continue
        rows += 1
        yield json.dumps(line, ensure_ascii=False, cls=DjangoJSONEncoder) + "\n"


def _gates(filters: DatasetFilters) -> QuerySet[StepRun]:
    gates = StepRun.objects.filter(kind="gate", status=StepRun.Status.COMPLETED)
    if filters.workflows:
        gates = gates.filter(run__workflow__slug__in=filters.workflows)
    # A gate finishes when it is settled: auto-approved, or completed by the final decision.
    if filters.since:
        gates = gates.filter(finished_at__gte=filters.since)
    if filters.until:
        gates = gates.filter(finished_at__lt=filters.until)
    final = Decision.objects.filter(task__step_run=OuterRef("pk")).exclude(
        action=Decision.Action.ESCALATE
    )
    if filters.actions:
        final = final.filter(action__in=filters.actions)
    which = _REVIEWED & Q(Exists(final))
    if filters.include_auto and not filters.actions:
        which |= _AUTO
    gates = gates.filter(which)
    if filters.regions:
        regions = Q()
        for region in filters.regions:
            regions |= _REGIONS[region]
        gates = gates.filter(regions)
    return gates


def _items(gates: Sequence[StepRun]) -> Iterator[GateItem]:
    """The batch's items, from four queries: the gates (given), decisions, tasks, steps."""
    ids = [gate.pk for gate in gates]
    decisions = {
        d.task.step_run_id: d
        for d in Decision.objects.filter(task__step_run_id__in=ids)
        .exclude(action=Decision.Action.ESCALATE)
        .select_related("task", "reviewer")
        .order_by("decided_at", "pk")
    }
    tasks = {
        row["step_run_id"]: row
        for row in ReviewTask.objects.filter(step_run_id__in=ids)
        .values("step_run_id")
        # A quorum's seats are no escalation: only an escalation-level task is.
        .annotate(
            first=Min("created_at"),
            escalations=Count("pk", filter=Q(audience=ReviewTask.Audience.ESCALATION)),
        )
    }
    steps: dict[int, list[StepRun]] = {}
    for step in StepRun.objects.filter(
        run_id__in={gate.run_id for gate in gates}, status=StepRun.Status.COMPLETED
    ).order_by("position"):
        steps.setdefault(step.run_id, []).append(step)
    for gate in gates:
        yield _item(gate, steps.get(gate.run_id, []), decisions.get(gate.pk), tasks.get(gate.pk))


def _item(
    gate: Any, steps: list[StepRun], decision: Decision | None, tasks: Mapping[str, Any] | None
) -> GateItem:
    run = gate.run
    guarded = next((s for s in steps if s.step_id == gate.meta.get("guards")), None)
    reviewed: dict[str, Any] = {}
    if decision is not None:
        reviewed = {
            "task_id": decision.task_id,
            "decision_id": decision.pk,
            "action": decision.action,
            "edited_output": decision.edited_output,
            "reason": decision.reason,
            "reviewer": decision.reviewer.get_username(),
            "shown": decision.shown,
            "escalated": bool(tasks and tasks["escalations"]),
            "claimed_at": decision.claimed_at,
            "decided_at": decision.decided_at,
        }
    ai = guarded is not None and guarded.kind == "ai"
    return GateItem(
        run_id=run.pk,
        workflow=gate.workflow_slug,
        workflow_version=gate.version_number,
        run_input=run.input,
        step=gate.step_id,
        gate_meta=gate.meta,
        guarded_step=guarded.step_id if guarded else None,
        guarded_kind=guarded.kind if guarded else None,
        guarded_output=guarded.output if guarded else None,
        guarded_confidence=guarded.confidence if guarded else None,
        guarded_meta=guarded.meta if guarded else {},
        created_at=tasks["first"] if tasks else gate.finished_at,
        ai_config=step_config(run.version_id, guarded.step_id) if ai and guarded else None,
        earlier=_earlier(steps, guarded) if ai and guarded else {},
        **reviewed,
    )


def _earlier(steps: list[StepRun], guarded: StepRun) -> dict[str, StepView]:
    """The steps that had completed when the guarded step last started: what it saw."""
    if guarded.started_at is None:
        before = [s for s in steps if s.position < guarded.position]
    else:
        before = [
            s
            for s in steps
            if s.pk != guarded.pk and s.finished_at and s.finished_at <= guarded.started_at
        ]
    return {s.step_id: StepView(s.output, s.confidence, s.outcome) for s in before}
