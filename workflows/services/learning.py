"""The local model learns from reviewers: retrain on decisions, promote only a model no worse.

`local_model_retrain` reads the reviewed gate items of every workflow whose `ai` step asks
`local:<name>` (through `dataset_items`, the exports' reader), keeps the training side of the
evaluation split as examples, trains a candidate on the stored examples plus those, scores the
current version and the candidate on the same reviewed evaluation items, and stores the
candidate as the next version (what an unpinned `local:<name>` resolves to) only if it is no
worse (`workflows.learning.promotion`). Either way it is audited and recorded, so the beat
task (`local_models_retrain_due`) counts new decisions from there.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workflows.ai.classifier import (
    Example,
    TextClassifier,
    evaluate,
    set_aside_thin_labels,
    train_classifier,
)
from workflows.errors import InvalidInput
from workflows.learning import (
    CANNOT_TRAIN,
    NO_EVALUATION_ITEMS,
    NOT_WORSE,
    UNCHANGED,
    DecisionExample,
    decision_example,
    merge_examples,
    promotion,
    uses_local_model,
)
from workflows.models import Decision, LocalModel, LocalModelRetrain, WorkflowVersion
from workflows.services.ai import local_model_store
from workflows.services.audit import Actor, audit_record
from workflows.services.datasets import DatasetFilters, dataset_items
from workflows.splits import EVAL, check_rate, split_of
from workflows.versions import step_config, version_definition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    outcome: str  # "promoted" or "kept"
    reason: str  # workflows.learning: not_worse, worse, unchanged, no_evaluation_items, ...
    model: LocalModel  # the version in force afterwards
    current: dict[str, Any] | None  # metrics on the evaluation items, None if not scored
    candidate: dict[str, Any] | None
    evaluated: int  # reviewed evaluation items both were scored on
    decision_examples: int  # training-side decisions merged into the training set
    left_out: dict[str, int] = field(default_factory=dict)  # thin labels, not trained
    candidate_labels: tuple[str, ...] = ()
    through_decision: int = 0


def local_model_retrain(*, name: str, actor: Actor, now: datetime | None = None) -> RetrainResult:
    """Retrain `local:<name>` on reviewers' decisions; promote the candidate if no worse."""
    now = now or timezone.now()
    current = LocalModel.objects.filter(name=name).order_by("-version").first()
    if current is None:
        raise InvalidInput(f"no local model {name!r}: train one with `manage.py localmodel`")
    rate = check_rate(settings.HITL_EVAL_SPLIT_RATE)
    slugs = workflows_using(name)
    # Read first, so a decision made while this runs is counted towards the next retraining.
    through = _latest_decision(slugs)
    train, held_out = _decision_examples(name, slugs, rate)
    merged = merge_examples(current.examples, train)
    examples, left_out = set_aside_thin_labels([_example(row) for row in merged])
    kept_rows = [row for row in merged if row["label"] not in left_out]
    base: dict[str, Any] = {
        "current": None,
        "candidate": None,
        "evaluated": len(held_out),
        "decision_examples": len({d.item for d in train}),
        "examples": len(kept_rows),
        "left_out": left_out,
        "through_decision": through,
    }
    try:
        candidate = train_classifier(examples, seed=current.seed, params=current.params)
    except ValueError as exc:
        return _record(name, current, None, CANNOT_TRAIN, base, actor, now, error=str(exc))
    base["candidate_labels"] = candidate.labels
    if candidate.fingerprint == current.fingerprint:
        return _record(name, current, None, UNCHANGED, base, actor, now)
    if not held_out:
        return _record(name, current, None, NO_EVALUATION_ITEMS, base, actor, now)
    old = train_classifier(_stored(current), seed=current.seed, params=current.params)
    scores = evaluate(old, held_out, unknown_labels="wrong")
    challenger = evaluate(candidate, held_out, unknown_labels="wrong")
    base["current"], base["candidate"] = scores, challenger
    tolerance = float(settings.HITL_LOCAL_MODEL_ECE_TOLERANCE)
    reason = promotion(scores, challenger, tolerance=tolerance)
    promoted = (candidate, kept_rows) if reason == NOT_WORSE else None
    return _record(name, current, promoted, reason, base, actor, now, tolerance=tolerance)


def local_models_retrain_due(*, now: datetime | None = None) -> dict[str, str]:
    """Retrain every local model with `HITL_LOCAL_MODEL_RETRAIN_EVERY` or more final decisions
    in the workflows that use it since its last retraining; name -> outcome. 0 turns it off."""
    every = int(settings.HITL_LOCAL_MODEL_RETRAIN_EVERY)
    if every <= 0:
        return {}
    outcomes: dict[str, str] = {}
    names = LocalModel.objects.order_by("name").values_list("name", flat=True).distinct()
    for name in names:
        slugs = workflows_using(name)
        if not slugs:
            continue
        last = (
            LocalModelRetrain.objects.filter(name=name)
            .order_by("-created_at", "-pk")
            .values_list("through_decision", flat=True)
            .first()
        ) or 0
        new = _final_decisions(slugs).filter(pk__gt=last).count()
        if new < every:
            continue
        try:
            result = local_model_retrain(name=name, actor=Actor.system("retrain"), now=now)
        except InvalidInput:
            logger.exception("retraining local:%s failed", name)
            continue
        outcomes[name] = result.outcome
    return outcomes


def workflows_using(name: str) -> list[str]:
    """Slugs of the workflows with a published version whose `ai` step asks `local:<name>`."""
    versions = WorkflowVersion.objects.values_list("pk", "workflow__slug").order_by("pk")
    return sorted({slug for pk, slug in versions if _version_uses(pk, name)})


@functools.lru_cache(maxsize=1024)
def _version_uses(version_id: int, name: str) -> bool:
    # Versions never change once stored, so the answer can be cached like their configs.
    return any(
        step.kind == "ai" and uses_local_model(step_config(version_id, step.id), name)
        for step in version_definition(version_id).steps
    )


def _final_decisions(slugs: list[str]) -> Any:
    return Decision.objects.filter(task__workflow__slug__in=slugs).exclude(
        action=Decision.Action.ESCALATE
    )


def _latest_decision(slugs: list[str]) -> int:
    return int(_final_decisions(slugs).aggregate(m=Max("pk"))["m"] or 0) if slugs else 0


def _decision_examples(
    name: str, slugs: list[str], rate: float
) -> tuple[list[DecisionExample], list[Example]]:
    """Training-side decision examples (oldest decision first) and evaluation-side examples."""
    if not slugs:
        return [], []
    train: list[tuple[Any, DecisionExample]] = []
    held_out: list[Example] = []
    for item in dataset_items(DatasetFilters(workflows=tuple(slugs))):
        if item.ai_config is None or not uses_local_model(item.ai_config, name):
            continue
        found = decision_example(item)
        if found is None:
            continue
        if split_of(item.workflow, item.run_input, run_id=item.run_id, rate=rate) == EVAL:
            held_out.append(found.example)
        else:
            train.append(((item.decided_at, item.decision_id), found))
    train.sort(key=lambda pair: pair[0])
    return [found for _, found in train], held_out


def _example(row: dict[str, Any]) -> Example:
    return Example(text=row["text"], label=row["label"])


def _stored(model: LocalModel) -> list[Example]:
    return [_example(row) for row in model.examples]


def _record(
    name: str,
    current: LocalModel,
    promoted: tuple[TextClassifier, list[dict[str, Any]]] | None,
    reason: str,
    base: dict[str, Any],
    actor: Actor,
    now: datetime,
    **extra: Any,
) -> RetrainResult:
    """Store the candidate if promoted; record and audit the outcome, one transaction."""
    outcome = "promoted" if promoted else "kept"
    with transaction.atomic():
        model = current
        if promoted:
            classifier, rows = promoted
            model = local_model_store(
                name=name,
                examples=rows,
                classifier=classifier,
                metrics=base["candidate"],
                source={
                    "retrained_from": current.version,
                    "decisions": base["decision_examples"],
                    "through_decision": base["through_decision"],
                    **({"left_out": base["left_out"]} if base["left_out"] else {}),
                },
                now=now,
            )
        LocalModelRetrain.objects.create(
            name=name,
            outcome=outcome,
            reason=reason,
            version=model.version,
            through_decision=base["through_decision"],
            created_at=now,
        )
        audit_record(
            actor=actor,
            verb=f"local_model.{outcome}",
            target=model,
            payload={
                "name": name,
                "version": model.version,
                "current_version": current.version,
                "reason": reason,
                "current": base["current"],
                "candidate": base["candidate"],
                "n": base["evaluated"],
                "examples": base["examples"],
                "decision_examples": base["decision_examples"],
                "left_out": base["left_out"],
                "through_decision": base["through_decision"],
                **extra,
            },
        )
    fields = {k: v for k, v in base.items() if k in RetrainResult.__dataclass_fields__}
    return RetrainResult(outcome=outcome, reason=reason, model=model, **fields)
