"""The gate: hard rules, no confidence, thresholds, the audit sample, then auto-approval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.review.conftest import T0, gated_definition, minutes
from workflows import services
from workflows.calibration import audit_draw
from workflows.definitions import DefinitionError, validate_definition
from workflows.models import AuditEvent, ReviewTask, Run, StepRun, Workflow
from workflows.services.hooks import HOOKS
from workflows.steps import get_kind
from workflows.steps.base import Completed, StepContext, StepView, Waiting

pytestmark = pytest.mark.django_db

Start = Callable[..., Run]


def gate_of(run: Run) -> StepRun:
    return StepRun.objects.get(run=run, step_id="check")


def test_a_confident_answer_is_auto_approved(workflow: Workflow, start: Start) -> None:
    run = start(workflow, {"label": "refund"}, 0.93)
    gate = gate_of(run)
    assert gate.status == StepRun.Status.COMPLETED
    assert (gate.outcome, gate.output, gate.confidence) == ("approved", {"label": "refund"}, 0.93)
    assert gate.meta["decision"] == "auto_approved"
    assert gate.meta["threshold"] == 0.8
    assert gate.meta["audit_rate"] == 0.0
    assert gate.meta["guards"] == "classify"
    assert run.status == Run.Status.COMPLETED
    assert run.outcome == "approved"
    assert StepRun.objects.get(run=run, step_id="book").output == {"booked": "refund"}
    assert not ReviewTask.objects.exists()
    event = AuditEvent.objects.get(verb="gate.decided", object_id=str(gate.pk))
    assert event.payload["decision"] == "auto_approved"


def test_an_answer_at_the_threshold_passes_and_below_goes_to_review(
    workflow: Workflow, start: Start
) -> None:
    at = start(workflow, confidence=0.8)
    below = start(workflow, confidence=0.79)
    assert gate_of(at).meta["decision"] == "auto_approved"
    gate = gate_of(below)
    assert below.status == Run.Status.WAITING
    assert gate.status == StepRun.Status.WAITING
    assert (gate.meta["decision"], gate.meta["reason"]) == ("review", "below_threshold")
    assert gate.meta["waiting_for"] == "below_threshold"
    assert gate.output is None
    task = ReviewTask.objects.get(run=below)
    assert (task.reason, task.status, task.audience) == ("below_threshold", "open", "reviewers")
    assert task.step_run == gate
    assert task.guarded == StepRun.objects.get(run=below, step_id="classify")
    verbs = set(
        AuditEvent.objects.filter(object_type="review_task", object_id=str(task.pk)).values_list(
            "verb", flat=True
        )
    )
    assert verbs == {"review.created"}
    event = AuditEvent.objects.get(verb="gate.decided", object_id=str(gate.pk))
    assert event.payload["reason"] == "below_threshold"


def test_a_hard_rule_comes_first(make_gate_workflow: Callable[..., Workflow], start: Start) -> None:
    workflow = make_gate_workflow(
        {
            "threshold": 0.8,
            "rules": [
                {"name": "vip", "when": "has(input.vip) && input.vip"},
                {"name": "big_amount", "when": "has(input.amount) && input.amount > 10000"},
            ],
        }
    )
    confident = start(workflow, confidence=0.99, amount=20000)
    no_confidence = start(workflow, confidence=None, amount=20000)
    both = start(workflow, confidence=0.99, amount=20000, vip=True)
    small = start(workflow, confidence=0.99, amount=10)
    for run in (confident, no_confidence):
        assert gate_of(run).meta["reason"] == "rule:big_amount"
        assert gate_of(run).meta["rule"] == "big_amount"
        assert ReviewTask.objects.get(run=run).reason == "rule:big_amount"
    # Rules apply in the order they are written.
    assert gate_of(both).meta["reason"] == "rule:vip"
    assert gate_of(small).meta["decision"] == "auto_approved"


def test_no_confidence_comes_before_the_threshold(workflow: Workflow, start: Start) -> None:
    run = start(workflow, confidence=None)
    gate = gate_of(run)
    assert gate.meta["reason"] == "no_confidence"
    assert gate.confidence is None
    assert ReviewTask.objects.get(run=run).reason == "no_confidence"


def test_a_per_label_threshold_overrides_the_global_one(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "thresholds": {"billing": 0.95}})
    billing = start(workflow, {"label": "billing"}, 0.9)
    refund = start(workflow, {"label": "refund"}, 0.9)
    assert gate_of(billing).meta["reason"] == "below_threshold"
    assert (gate_of(billing).meta["label"], gate_of(billing).meta["threshold"]) == ("billing", 0.95)
    assert gate_of(refund).meta["decision"] == "auto_approved"
    assert (gate_of(refund).meta["label"], gate_of(refund).meta["threshold"]) == ("refund", 0.8)


def test_the_label_may_come_from_an_expression(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    workflow = make_gate_workflow(
        {"thresholds": {"urgent": 0.99, "normal": 0.5}, "label": "steps.classify.output.priority"}
    )
    urgent = start(workflow, {"priority": "urgent"}, 0.9)
    normal = start(workflow, {"priority": "normal"}, 0.9)
    assert gate_of(urgent).meta["reason"] == "below_threshold"
    assert gate_of(normal).meta["decision"] == "auto_approved"


def test_a_label_without_any_threshold_is_always_reviewed(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    # No threshold in force means no evidence yet: every item is reviewed (calibration bootstrap).
    workflow = make_gate_workflow({"thresholds": {"refund": 0.5}})
    run = start(workflow, {"label": "billing"}, 0.999)
    assert gate_of(run).meta["reason"] == "below_threshold"
    assert gate_of(run).meta["threshold"] is None


def test_the_audit_sample_is_a_deterministic_draw_among_passing_items(
    make_gate_workflow: Callable[..., Workflow], start: Start, settings: Any
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "audit_rate": 0.5})
    secret = settings.HITL_GATE_AUDIT_SECRET.encode()
    runs = [start(workflow, confidence=0.9) for _ in range(24)]
    sampled = [audit_draw(secret, run.pk, "check", 0.5) for run in runs]
    assert 0 < sum(sampled) < len(runs)
    for run, drawn in zip(runs, sampled, strict=True):
        gate = gate_of(run)
        assert gate.meta["audit_rate"] == 0.5
        if drawn:
            assert gate.meta["reason"] == "audit_sample"
            assert ReviewTask.objects.get(run=run).reason == "audit_sample"
        else:
            assert gate.meta["decision"] == "auto_approved"
    # Items under the threshold are reviewed as such, never counted as audit samples.
    below = [start(workflow, confidence=0.5) for _ in range(8)]
    assert {gate_of(run).meta["reason"] for run in below} == {"below_threshold"}


def test_an_audit_rate_of_one_samples_every_passing_item(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "audit_rate": 1.0})
    run = start(workflow, confidence=0.99)
    assert gate_of(run).meta["reason"] == "audit_sample"


def _context(run: Run, config: Any, confidence: float | None) -> StepContext:
    return StepContext(
        run_id=run.pk,
        step_run_id=0,
        workflow_id=run.workflow_id,
        workflow_slug="triage",
        version_id=run.version_id,
        step_id="check",
        attempt=1,
        config=config,
        input={},
        steps={"classify": StepView({"label": "billing"}, confidence, "")},
        now=T0,
        hooks=HOOKS,
    )


def test_re_executing_a_gate_decides_the_same_way(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "audit_rate": 0.5})
    run = start(workflow, confidence=0.9)
    gate = get_kind("gate")
    config = gate.validate({"threshold": 0.8, "audit_rate": 0.5})
    results = [gate.execute(_context(run, config, 0.9)) for _ in range(3)]
    assert len({type(r) for r in results}) == 1
    assert len({r.meta["decision"] for r in results if isinstance(r, Completed | Waiting)}) == 1
    # ... and the same way as the engine's own execution did.
    assert results[0].meta["decision"] == gate_of(run).meta["decision"]


def test_the_priority_and_sla_come_from_the_config(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    workflow = make_gate_workflow(
        {"threshold": 0.8, "priority": "has(input.vip) ? 10 : 1", "sla_minutes": 60}
    )
    vip = ReviewTask.objects.get(run=start(workflow, vip=True))
    plain = ReviewTask.objects.get(run=start(workflow))
    assert (vip.priority, plain.priority) == (10, 1)
    assert vip.created_at == T0
    assert vip.due_at == T0 + minutes(60)
    # The warning falls due at 75% of the SLA (HITL_SLA_WARNING_FRACTION).
    assert vip.warn_at == T0 + minutes(45)


def test_a_gate_without_sla_has_no_due_time(
    make_gate_workflow: Callable[..., Workflow], start: Start
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "priority": 3})
    task = ReviewTask.objects.get(run=start(workflow))
    assert (task.priority, task.due_at, task.warn_at) == (3, None, None)


def test_a_gate_guards_the_step_it_names(
    make_workflow: Callable[..., Workflow], start: Start, reviewers: Any
) -> None:
    definition = gated_definition("named", {"guards": "classify", "threshold": 0.8})
    definition["steps"].insert(
        1, {"id": "note", "kind": "transform", "config": {"output": {"n": "1"}}}
    )
    workflow = make_workflow(definition, reviewer_group=reviewers)
    run = start(workflow, confidence=0.95)
    assert gate_of(run).meta["guards"] == "classify"
    assert gate_of(run).output == {"label": "billing"}


def test_a_gate_whose_guarded_step_did_not_run_fails_clearly(
    make_workflow: Callable[..., Workflow], start: Start
) -> None:
    definition = {
        "slug": "lost",
        "name": "lost",
        "steps": [
            {
                "id": "triage",
                "kind": "transform",
                "config": {"output": {"x": "1"}, "outcome": "'skip'"},
                "next": {"skip": "check"},
            },
            {"id": "book", "kind": "transform", "config": {"output": {"x": "2"}}},
            {"id": "check", "kind": "gate", "config": {"guards": "book", "threshold": 0.8}},
        ],
    }
    run = start(make_workflow(definition))
    assert run.status == Run.Status.FAILED
    assert "gate guards step 'book', which has not completed" in run.error


def test_cancelling_a_run_cancels_its_review_task(task: ReviewTask, system: services.Actor) -> None:
    services.run_cancel(run=task.run, actor=system, reason="withdrawn", now=T0 + minutes(1))
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CANCELLED
    assert task.closed_at is not None
    assert AuditEvent.objects.filter(verb="review.cancelled", object_id=str(task.pk)).exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"thresholds": {"billing": -0.1}}, "thresholds.billing"),
        ({"audit_rate": 2}, "audit_rate"),
        ({"rules": [{"name": "x", "when": "input.amount >"}]}, "invalid expression"),
        ({"rules": [{"name": "x", "when": "true"}, {"name": "x", "when": "false"}]}, "duplicate"),
        ({"rules": [{"name": "Big Amount", "when": "true"}]}, "rules.0.name"),
        ({"priority": "input.vip ?"}, "invalid expression"),
        ({"label": "steps..x"}, "invalid expression"),
        ({"sla_minutes": 0}, "sla_minutes"),
        ({"threshold": 0.8, "thresold": 0.9}, "Extra inputs are not permitted"),
    ],
)
def test_it_refuses_a_bad_gate_config(config: dict[str, Any], message: str) -> None:
    data = gated_definition("bad", config)
    with pytest.raises(DefinitionError) as info:
        validate_definition(data)
    assert message in str(info.value)
    assert "steps[1] (check).config" in str(info.value)


def test_a_gate_can_only_branch_on_approved_and_rejected() -> None:
    data = gated_definition("branches", None)
    data["steps"][1]["next"] = {"approved": "book", "escalated": "refuse"}
    with pytest.raises(DefinitionError, match="gate steps have no outcome 'escalated'"):
        validate_definition(data)


def test_a_gate_must_guard_an_earlier_step() -> None:
    from workflows.definitions import DefinitionError, validate_definition

    steps = [
        {"id": "a", "kind": "transform", "config": {"output": {"x": "1"}}},
        {"id": "check", "kind": "gate", "config": {"guards": "later", "threshold": 0.9}},
        {"id": "later", "kind": "transform", "config": {"output": {"x": "1"}}},
    ]
    with pytest.raises(DefinitionError) as info:
        validate_definition({"slug": "g", "name": "g", "steps": steps})
    assert info.value.errors == [
        ("steps[1] (check).config", "guards 'later', which is not an earlier step")
    ]
    first = [{"id": "check", "kind": "gate", "config": {"threshold": 0.9}}]
    with pytest.raises(DefinitionError, match="needs an earlier step"):
        validate_definition({"slug": "g", "name": "g", "steps": first})


# The audit-rate floor: a gate that auto-approves keeps an audit sample (HITL_GATE_MIN_AUDIT_RATE)


@pytest.mark.parametrize(
    "config",
    [
        {"threshold": 0.8},
        {"threshold": 0.8, "audit_rate": 0.005},
        {"thresholds": {"billing": 0.9}, "audit_rate": 0.0},
    ],
)
def test_a_gate_that_auto_approves_needs_the_audit_floor(
    settings: Any, config: dict[str, Any]
) -> None:
    settings.HITL_GATE_MIN_AUDIT_RATE = 0.01

    with pytest.raises(DefinitionError) as info:
        validate_definition(gated_definition("floor", config))

    rate = config.get("audit_rate", 0.0)
    assert info.value.errors == [
        (
            "steps[1] (check).config",
            f"audit_rate {rate:g} is below the floor of 0.01 (HITL_GATE_MIN_AUDIT_RATE): a gate"
            " that auto-approves keeps an audit sample, or calibration loses sight of its errors",
        )
    ]


@pytest.mark.parametrize(
    "config",
    [
        {"threshold": 0.8, "audit_rate": 0.01},
        {"thresholds": {"billing": 0.9}, "audit_rate": 0.2},
        {"sla_minutes": 60},  # no threshold: nothing is auto-approved, every item is reviewed
    ],
)
def test_a_gate_at_or_above_the_floor_or_reviewing_everything_is_accepted(
    settings: Any, config: dict[str, Any]
) -> None:
    settings.HITL_GATE_MIN_AUDIT_RATE = 0.01

    validate_definition(gated_definition("floor", config))


def test_the_floor_refuses_at_import_and_stores_nothing(settings: Any) -> None:
    settings.HITL_GATE_MIN_AUDIT_RATE = 0.05
    import json

    source = json.dumps(gated_definition("floored", {"threshold": 0.8, "audit_rate": 0.02}))

    with pytest.raises(DefinitionError, match="HITL_GATE_MIN_AUDIT_RATE"):
        services.workflow_import(source=source, actor=services.Actor.system("test"))

    assert not Workflow.objects.filter(slug="floored").exists()
