"""Local model training and the daily cost cap of AI steps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workflows.ai.classifier import (
    Example,
    TextClassifier,
    evaluate,
    set_aside_thin_labels,
    split,
    train_classifier,
)
from workflows.errors import InvalidInput
from workflows.models import LocalModel, Workflow
from workflows.services.audit import Actor, audit_record
from workflows.services.sweepers import ai_budget_sweep


def local_model_train(
    *,
    name: str,
    examples: Sequence[Example],
    actor: Actor,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> LocalModel:
    """Train, evaluate on a held-out split, and store a new version of a local model.

    The stored version is the full training set (not a pickle): workers rebuild the same
    classifier deterministically on first use. Labels with fewer than
    MIN_EXAMPLES_PER_LABEL examples are left out, not fatal: `source["left_out"]` and the
    audit event name them and their counts.
    """
    now = now or timezone.now()
    examples, left_out = set_aside_thin_labels(examples)
    source = {**(source or {}), **({"left_out": left_out} if left_out else {})}
    try:
        train, test = split(examples, seed=seed)
        metrics = evaluate(train_classifier(train, seed=seed, params=params), test)
        classifier = train_classifier(examples, seed=seed, params=params)
    except ValueError as exc:
        raise InvalidInput(f"cannot train {name!r}: {exc}") from None
    with transaction.atomic():
        model = local_model_store(
            name=name,
            examples=[{"text": e.text, "label": e.label} for e in examples],
            classifier=classifier,
            metrics=metrics,
            source=source,
            now=now,
        )
        audit_record(
            actor=actor,
            verb="local_model.trained",
            target=model,
            payload={
                "name": name,
                "version": model.version,
                "fingerprint": model.fingerprint,
                "examples": len(examples),
                "metrics": metrics,
                "left_out": left_out,
            },
        )
    return model


def local_model_store(
    *,
    name: str,
    examples: list[dict[str, Any]],
    classifier: TextClassifier,
    metrics: dict[str, Any],
    source: dict[str, Any],
    now: datetime,
) -> LocalModel:
    """Store a trained classifier as the next version of `name` (inside the caller's
    transaction, which also audits it). What is stored is the training set, not a pickle."""
    # Serialise version numbering per name.
    latest = (
        LocalModel.objects.select_for_update().filter(name=name).aggregate(v=Max("version"))["v"]
        or 0
    )
    return LocalModel.objects.create(
        name=name,
        version=latest + 1,
        examples=examples,
        seed=classifier.seed,
        params=classifier.params,
        fingerprint=classifier.fingerprint,
        labels=list(classifier.labels),
        metrics=metrics,
        source=source,
        created_at=now,
    )


def workflow_set_daily_cap(
    *, workflow: Workflow, cap_usd: Decimal | None, actor: Actor, now: datetime | None = None
) -> Workflow:
    """Change the daily cost cap; steps waiting for budget resume on the next sweep."""
    now = now or timezone.now()
    if cap_usd is not None and cap_usd < 0:
        raise InvalidInput("the daily cost cap cannot be negative")
    with transaction.atomic():
        workflow.daily_cost_cap_usd = cap_usd
        workflow.save(update_fields=["daily_cost_cap_usd"])
        audit_record(
            actor=actor,
            verb="workflow.cost_cap_changed",
            target=workflow,
            payload={"cap_usd": None if cap_usd is None else str(cap_usd)},
        )
    ai_budget_sweep(now=now)
    return workflow
