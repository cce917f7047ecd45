"""Gates that calibrate themselves: recommend a threshold from the review history, publish it.

`gate_calibrate` reads a workflow's settled gate items (`dataset_items`, the exports' reader)
and asks `workflows.gate_calibration` for each gate that declares `calibrate:`.
`gate_threshold_apply` publishes a new version of the workflow with the new threshold, through
`workflow_import`, audited as `gate.threshold_changed`. `gates_calibrate_due` is the beat's:
for gates in `mode: auto`, after every `every` new reviews on the calibration side, it tightens
at once or loosens by at least `HITL_CALIBRATE_MIN_STEP` (`gate_calibration.auto_move`), and
records each recalibration so the next one counts reviews from there.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workflows.ai import seam
from workflows.errors import InvalidInput
from workflows.gate_calibration import (
    Recommendation,
    auto_move,
    gate_sample,
    latest_versions,
    model_key,
    recommend_gate,
)
from workflows.models import Decision, GateRecalibration, LocalModel, Workflow
from workflows.services.audit import Actor, audit_record
from workflows.services.datasets import DatasetFilters, dataset_items
from workflows.services.definitions import ImportResult, workflow_import
from workflows.splits import check_rate
from workflows.steps.gate import GateConfig
from workflows.versions import step_config, version_definition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateCalibration:
    """What calibration says about one gate of a workflow's active version."""

    workflow: str
    version: int  # the active version the gate's config was read from
    gate: str
    alpha: float
    delta: float
    per_label: bool
    mode: str
    every: int
    current: float | None  # the gate's global threshold in force
    current_by_label: dict[str, float]
    results: list[Recommendation]  # one, or one per label with per_label
    sample: int  # items in the calibration sample
    left_out: dict[str, int]  # reviewed items of the gate left out, by why
    decision_ids: tuple[int, ...]  # the sample's final decisions
    through_decision: int  # the newest final decision of the workflow when it was read


def gate_calibrate(
    *, workflow: Workflow, gate_id: str | None = None, now: datetime | None = None
) -> list[GateCalibration]:
    """Calibrate every gate of the active version that declares `calibrate:`, or the one named.

    With `now`, only items settled at or before it count. Raises InvalidInput for a workflow with
    no active version, an unknown gate, or a gate without `calibrate:`."""
    gates = _calibrated_gates(workflow, gate_id)
    version = workflow.active_version
    assert version is not None  # _calibrated_gates refuses a workflow without one
    rate = check_rate(settings.HITL_EVAL_SPLIT_RATE)
    # Read first, so a decision made while this runs is counted towards the next recalibration.
    through = _latest_decision(workflow)
    # `until` is exclusive; timestamps are stored to the microsecond.
    until = now + timedelta(microseconds=1) if now else None
    items = list(dataset_items(DatasetFilters(workflows=(workflow.slug,), until=until)))
    out = []
    for step_id, config in gates:
        mine = [item for item in items if item.step == step_id]
        known = {key: v for key in {model_key(i) for i in mine} if (v := _local_version(key))}
        sample = gate_sample(mine, rate=rate, versions=latest_versions(mine, known))
        calibrate = config.calibrate
        results = recommend_gate(
            sample,
            alpha=calibrate.alpha,
            delta=calibrate.delta,
            per_label=calibrate.per_label,
            current=config.threshold,
            current_by_label=dict(config.thresholds),
        )
        out.append(
            GateCalibration(
                workflow=workflow.slug,
                version=version.number,
                gate=step_id,
                alpha=calibrate.alpha,
                delta=calibrate.delta,
                per_label=calibrate.per_label,
                mode=calibrate.mode,
                every=calibrate.every,
                current=config.threshold,
                current_by_label=dict(config.thresholds),
                results=results,
                sample=len(sample.counted),
                left_out=dict(sorted(sample.left_out.items())),
                decision_ids=tuple(c.decision_id for c in sample.counted),
                through_decision=through,
            )
        )
    return out


def gate_threshold_apply(
    *,
    calibration: GateCalibration,
    actor: Actor,
    thresholds: dict[str | None, float | None] | None = None,
    now: datetime | None = None,
) -> ImportResult | None:
    """Publish a version of the workflow with the gate's new threshold(s); None if unchanged.

    `thresholds` maps a label (None: the gate's global threshold) to its new value, None
    meaning review everything; by default, the calibration's recommendations. Without
    per_label the gate gets one global threshold and its per-label `thresholds` are removed,
    since the guarantee is about one threshold; with per_label it gets the labels'
    thresholds and no global one, so a label without a passing level is reviewed in full. A
    gate that would auto-approve with an audit rate under HITL_GATE_MIN_AUDIT_RATE gets the
    floor, so calibration keeps seeing its errors.
    """
    now = now or timezone.now()
    new = (
        thresholds
        if thresholds is not None
        else {r.label: r.threshold for r in calibration.results}
    )
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().get(slug=calibration.workflow)
        version = workflow.active_version
        if version is None or version.number != calibration.version:
            raise InvalidInput(
                f"{workflow.slug} is no longer at version {calibration.version}: calibrate again"
            )
        data = copy.deepcopy(version.definition)
        config = next(s for s in data["steps"] if s["id"] == calibration.gate)["config"]
        old = {"threshold": config.get("threshold"), "thresholds": config.get("thresholds", {})}
        if calibration.per_label:
            config["threshold"] = None
            config["thresholds"] = {k: v for k, v in sorted(new.items()) if k and v is not None}
        else:
            config["threshold"] = new.get(None)
            config["thresholds"] = {}
        changed = {"threshold": config["threshold"], "thresholds": config["thresholds"]}
        if changed == old:
            return None
        payload: dict[str, Any] = {"audit_rate": config.get("audit_rate", 0.0)}
        floor = settings.HITL_GATE_MIN_AUDIT_RATE
        approves = config["threshold"] is not None or bool(config["thresholds"])
        if approves and payload["audit_rate"] < floor:
            config["audit_rate"] = floor
            payload = {"audit_rate": floor, "old_audit_rate": payload["audit_rate"]}
        source = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        result = workflow_import(source=source, actor=actor, now=now)
        audit_record(
            actor=actor,
            verb="gate.threshold_changed",
            target=workflow,
            payload={
                "gate": calibration.gate,
                "from_version": calibration.version,
                "version": result.version.number,
                "alpha": calibration.alpha,
                "delta": calibration.delta,
                "old": old,
                "new": changed,
                **payload,
                "results": [
                    {
                        "label": r.label,
                        "threshold": r.threshold,
                        "bound": r.upper_bound,
                        "n": r.n,
                        "delta": r.delta,
                    }
                    for r in calibration.results
                ],
            },
        )
    return result


def gates_calibrate_due(*, now: datetime | None = None) -> dict[str, str]:
    """Recalibrate every gate in `mode: auto` that saw `every` new calibration-side reviews.

    Cheap when nothing changed: one query for the workflows, and one count of new final
    decisions per auto gate, before any item is read. Returns "slug/gate" -> outcome
    (tightened, loosened, kept)."""
    now = now or timezone.now()
    outcomes: dict[str, str] = {}
    workflows = Workflow.objects.filter(active_version__isnull=False).select_related(
        "active_version"
    )
    for workflow in workflows.order_by("slug"):
        for step_id, config in _gates(workflow):
            if config.calibrate.mode != "auto":
                continue
            key = f"{workflow.slug}/{step_id}"
            try:
                outcome = _recalibrate(workflow, step_id, config.calibrate.every, now)
            except InvalidInput:
                logger.exception("recalibrating %s failed", key)
                continue
            if outcome is not None:
                outcomes[key] = outcome
    return outcomes


def _recalibrate(workflow: Workflow, gate_id: str, every: int, now: datetime) -> str | None:
    last = (
        GateRecalibration.objects.filter(workflow=workflow, gate=gate_id)
        .order_by("-created_at", "-pk")
        .values_list("through_decision", flat=True)
        .first()
    ) or 0
    new = _final_decisions(workflow).filter(task__step_run__step_id=gate_id, pk__gt=last)
    if new.count() < every:
        return None
    [calibration] = gate_calibrate(workflow=workflow, gate_id=gate_id)
    if sum(1 for d in calibration.decision_ids if d > last) < every:
        return None
    min_step = float(settings.HITL_CALIBRATE_MIN_STEP)
    moves: dict[str | None, float | None] = {}
    kinds = set()
    for result in calibration.results:
        move = auto_move(result.current, result.threshold, min_step=min_step)
        kinds.add(move)
        moves[result.label] = result.current if move == "keep" else result.threshold
    outcome = "tightened" if "tighten" in kinds else "loosened" if "loosen" in kinds else "kept"
    actor = Actor.system("calibrate")
    with transaction.atomic():
        applied = None
        if outcome != "kept":
            applied = gate_threshold_apply(
                calibration=calibration, actor=actor, thresholds=moves, now=now
            )
        GateRecalibration.objects.create(
            workflow=workflow,
            gate=gate_id,
            outcome=outcome if applied else "kept",
            version=applied.version.number if applied else calibration.version,
            through_decision=calibration.through_decision,
            created_at=now,
        )
    return outcome if applied else "kept"


def _gates(workflow: Workflow) -> list[tuple[str, Any]]:
    """(step id, GateConfig) of the active version's gates that declare `calibrate:`."""
    version_id = workflow.active_version_id
    if version_id is None:
        return []
    found = []
    for step in version_definition(version_id).steps:
        if step.kind == "gate":
            config = step_config(version_id, step.id)
            if isinstance(config, GateConfig) and config.calibrate is not None:
                found.append((step.id, config))
    return found


def _calibrated_gates(workflow: Workflow, gate_id: str | None) -> list[tuple[str, Any]]:
    if workflow.active_version_id is None:
        raise InvalidInput(f"{workflow.slug} has no published version")
    gates = _gates(workflow)
    if gate_id is None:
        if not gates:
            raise InvalidInput(f"no gate of {workflow.slug} declares calibrate:")
        return gates
    steps = {s.id: s.kind for s in version_definition(workflow.active_version_id).steps}
    if steps.get(gate_id) != "gate":
        raise InvalidInput(f"{workflow.slug} has no gate {gate_id!r}")
    chosen = [gate for gate in gates if gate[0] == gate_id]
    if not chosen:
        raise InvalidInput(f"gate {gate_id!r} of {workflow.slug} does not declare calibrate:")
    return chosen


def _local_version(spec: str) -> str | None:
    """The version of a local model a spec resolves to now; None for other models."""
    if not seam.is_local(spec):
        return None
    try:
        name, pinned = seam.parse_local_spec(spec)
    except seam.ModelSpecError:
        return None
    if pinned is not None:
        return str(pinned)
    newest = LocalModel.objects.filter(name=name).aggregate(v=Max("version"))["v"]
    return None if newest is None else str(newest)


def _final_decisions(workflow: Workflow) -> Any:
    return Decision.objects.filter(task__workflow=workflow).exclude(action=Decision.Action.ESCALATE)


def _latest_decision(workflow: Workflow) -> int:
    return int(_final_decisions(workflow).aggregate(m=Max("pk"))["m"] or 0)
