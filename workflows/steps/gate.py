"""`gate`: lets a confident answer through on its own and sends everything else to review.

It reads the output and confidence of the step it guards and decides, in this order:
hard rules (CEL), no confidence, the threshold (global or per label), the audit sample;
otherwise the answer is auto-approved. The review task is created in the transaction that
records `Waiting` (`on_record`), and a reviewer's decision completes the gate through
`run_resume` with the final output. See docs/gates.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from pydantic import Field, field_validator, model_validator

from workflows import expressions
from workflows.calibration import audit_draw
from workflows.steps.base import (
    Completed,
    Failed,
    KindConfig,
    Result,
    StepContext,
    StepHooks,
    StepKind,
    Waiting,
)
from workflows.versions import version_definition

if TYPE_CHECKING:
    from workflows.models import Run, StepRun

RULE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class Rule(KindConfig):
    name: str = Field(pattern=RULE_NAME_PATTERN)
    # A CEL expression over {input, steps}; true sends the item to review as `rule:<name>`.
    when: str

    @field_validator("when")
    @classmethod
    def _parses(cls, value: str) -> str:
        expressions.check(value)
        return value


class Quorum(KindConfig):
    """k of m reviewers must give the same answer: the gate opens `of` seats, and `required`
    agreeing answers pass it (see `workflows.services.review.quorum`)."""

    required: int = Field(ge=1, le=9)
    of: int = Field(ge=1, le=9)

    @model_validator(mode="after")
    def _required_within_of(self) -> Quorum:
        if self.required > self.of:
            raise ValueError(f"required ({self.required}) cannot be more than of ({self.of})")
        return self


class Calibrate(KindConfig):
    """How the gate's threshold is chosen from its review history (docs/gates.md#calibration).

    alpha: the error rate allowed among auto-approved items; delta: the chance the guarantee may
    fail. `recommend` only reports (`manage.py calibrate`); `auto` lets the beat task publish a
    new threshold after every `every` new reviews on the calibration side."""

    alpha: float = Field(gt=0, le=0.5)
    delta: float = Field(gt=0, le=0.5)
    per_label: bool = False
    mode: Literal["recommend", "auto"] = "recommend"
    every: int = Field(default=200, ge=1)


class GateConfig(KindConfig):
    # The step whose answer the gate judges; by default the step just before the gate.
    guards: str | None = None
    rules: list[Rule] = Field(default_factory=list)
    # Confidence at or above the threshold in force passes. With neither a global threshold nor
    # one for the predicted label, nothing passes: every item is reviewed.
    threshold: float | None = Field(default=None, ge=0, le=1)
    thresholds: dict[str, float] = Field(default_factory=dict)
    # CEL for the predicted label; by default the guarded output's `label` (or the output
    # itself when it is a string).
    label: str | None = None
    # Share of the items that would pass that go to review anyway, for unbiased calibration.
    audit_rate: float = Field(default=0.0, ge=0, le=1)
    # An int, or a CEL expression giving one; higher comes first in the queue.
    priority: int | str = 0
    sla_minutes: int | None = Field(default=None, gt=0)
    # None: one reviewer decides, as without a quorum.
    quorum: Quorum | None = None
    # None: the threshold is whatever the definition says, and nothing recalibrates it.
    calibrate: Calibrate | None = None

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, value: list[Rule]) -> list[Rule]:
        names = [rule.name for rule in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule names: {', '.join(duplicates)}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for label, threshold in value.items():
            if not 0 <= threshold <= 1:
                raise ValueError(f"thresholds.{label}: must be between 0 and 1, got {threshold}")
        return value

    @field_validator("label")
    @classmethod
    def _label_parses(cls, value: str | None) -> str | None:
        if value is not None:
            expressions.check(value)
        return value

    @field_validator("priority")
    @classmethod
    def _priority_parses(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            expressions.check(value)
        return value


class GateKind(StepKind):
    name = "gate"
    # A decision completes the gate as approved or rejected; an escalation keeps it waiting.
    outcomes = frozenset({"approved", "rejected"})
    Config = GateConfig
    # The review task is opened in the transaction that records the gate's result.
    record_hook = True

    def execute(self, ctx: StepContext) -> Result:
        config: GateConfig = ctx.config
        guards = config.guards or _previous_step(ctx)
        view = ctx.steps.get(guards) if guards else None
        if guards is None or view is None:
            return Failed(f"gate guards step {guards!r}, which has not completed", retryable=False)
        context = ctx.activation
        try:
            rule = _first_rule(config.rules, context)
            label = _label(config, view.output, context)
            priority = _priority(config.priority, context)
        except (expressions.ExpressionError, TypeError) as exc:
            # The same input fails the same way every time: retrying cannot help.
            return Failed(str(exc), retryable=False)
        threshold = config.thresholds.get(label, config.threshold) if label else config.threshold
        meta: dict[str, Any] = {
            "guards": guards,
            "confidence": view.confidence,
            "label": label,
            "threshold": threshold,
            # The rate in force is kept with every item, drawn or not: calibration needs it.
            "audit_rate": config.audit_rate,
            "priority": priority,
            "sla_minutes": config.sla_minutes,
        }
        if config.quorum is not None:
            # Read by `gate_record` to open the seats, and by the desk to say "Review 2 of 3".
            meta["quorum"] = config.quorum.model_dump()
        reason = _review_reason(rule, view.confidence, threshold)
        if reason is None and config.audit_rate > 0:
            secret = settings.HITL_GATE_AUDIT_SECRET.encode()
            if audit_draw(secret, ctx.run_id, ctx.step_id, config.audit_rate):
                reason = "audit_sample"
        if reason is None:
            return Completed(
                output=view.output,
                outcome="approved",
                confidence=view.confidence,
                meta={**meta, "decision": "auto_approved"},
            )
        if rule is not None:
            meta["rule"] = rule
        return Waiting(
            reason=reason,
            confidence=view.confidence,
            meta={**meta, "decision": "review", "reason": reason},
        )

    def check_in_definition(
        self, config: Any, step_id: str, earlier: Mapping[str, str]
    ) -> list[str]:
        problems = _audit_floor(config)
        guards = config.guards
        if guards is None:
            return problems if earlier else ["a gate needs an earlier step to guard", *problems]
        if guards not in earlier:
            return [f"guards {guards!r}, which is not an earlier step", *problems]
        return problems

    def on_record(
        self, *, step_run: StepRun, result: Result, run: Run, now: datetime, hooks: StepHooks
    ) -> None:
        if isinstance(result, Completed | Waiting):
            waiting = isinstance(result, Waiting)
            hooks.gate_record(run=run, step_run=step_run, waiting=waiting, now=now)

    def on_cancel(self, *, step_run: StepRun, now: datetime, hooks: StepHooks) -> None:
        hooks.review_tasks_cancel(step_run=step_run, now=now)


def _previous_step(ctx: StepContext) -> str | None:
    definition = version_definition(ctx.version_id)
    position = definition.position(ctx.step_id)
    return definition.steps[position - 1].id if position > 0 else None


def _audit_floor(config: GateConfig) -> list[str]:
    """A gate that can auto-approve must keep an audit sample of at least the floor."""
    floor = settings.HITL_GATE_MIN_AUDIT_RATE
    approves = config.threshold is not None or bool(config.thresholds)
    if not approves or config.audit_rate >= floor:
        return []
    return [
        f"audit_rate {config.audit_rate:g} is below the floor of {floor:g}"
        " (HITL_GATE_MIN_AUDIT_RATE): a gate that auto-approves keeps an audit sample, or"
        " calibration loses sight of its errors"
    ]


def _first_rule(rules: list[Rule], context: expressions.Activation) -> str | None:
    for rule in rules:
        value = expressions.evaluate(rule.when, context)
        if not isinstance(value, bool):
            raise TypeError(f"rule {rule.name!r} must be true or false, got {value!r}")
        if value:
            return rule.name
    return None


def _label(config: GateConfig, output: Any, context: expressions.Activation) -> str | None:
    if config.label is not None:
        value = expressions.evaluate(config.label, context)
    elif isinstance(output, dict):
        value = output.get("label")
    else:
        value = output
    return value if isinstance(value, str) else None


def _priority(priority: int | str, context: expressions.Activation) -> int:
    if isinstance(priority, int):
        return priority
    value = expressions.evaluate(priority, context)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"priority {priority!r} must give a number, got {value!r}")
    return int(value)


def _review_reason(
    rule: str | None, confidence: float | None, threshold: float | None
) -> str | None:
    """Why the item needs review before any audit draw, or None if it would pass."""
    if rule is not None:
        return f"rule:{rule}"
    if confidence is None:
        return "no_confidence"
    if threshold is None or confidence < threshold:
        return "below_threshold"
    return None


KIND = GateKind()
