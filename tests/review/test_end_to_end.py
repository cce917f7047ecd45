"""The real `ai` kind on the offline local model, through a gate to a reviewer and on to the end.

In process (run_drive: the worker's claim/record path without a broker), so it runs with the
unit tests; the whole flow from classification to a completed run (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from tests.helpers import drive
from tests.review.conftest import T0, minutes
from workflows import services
from workflows.ai.trainingdata import load_jsonl
from workflows.errors import InvalidInput
from workflows.models import ReviewTask, Run, StepRun, Workflow

pytestmark = pytest.mark.django_db

TICKETS = Path(__file__).resolve().parents[2] / "hitl" / "demo" / "data" / "tickets.jsonl"
LABELS = ["billing", "technical", "account", "shipping", "other"]


@pytest.fixture
def triage(
    make_workflow: Callable[..., Workflow], system: services.Actor, reviewers: Group, owner: User
) -> Workflow:
    services.local_model_train(name="tickets", examples=load_jsonl(TICKETS), actor=system)
    workflow = make_workflow(
        {
            "slug": "ticket-triage",
            "name": "Ticket triage",
            "steps": [
                {
                    "id": "classify",
                    "kind": "ai",
                    "config": {
                        "model": "local:tickets",
                        "prompt": "Classify the support ticket.",
                        "input": "input.text",
                        "output": {"labels": LABELS},
                    },
                },
                {
                    "id": "check",
                    "kind": "gate",
                    "config": {
                        # Nothing is this sure: every ticket goes to a reviewer.
                        "threshold": 1.0,
                        "rules": [{"name": "vip", "when": "has(input.vip) && input.vip"}],
                        "sla_minutes": 30,
                    },
                },
                {
                    "id": "route",
                    "kind": "transform",
                    "config": {"output": {"team": "steps.check.output.label"}},
                },
            ],
        },
        reviewer_group=reviewers,
    )
    workflow.admins.add(owner)
    return workflow


def test_ai_then_gate_then_review_then_done(
    triage: Workflow, system: services.Actor, reviewer: User
) -> None:
    text = "Charged twice this month\n\nMy card shows two payments for November, please refund."
    run = services.run_start(workflow=triage, input={"text": text}, actor=system, now=T0)
    run = drive(run, now=T0)
    assert run.status == Run.Status.WAITING
    ai = StepRun.objects.get(run=run, step_id="classify")
    answer = ai.output
    assert isinstance(answer, dict)
    assert answer["label"] in LABELS
    assert ai.confidence is not None
    assert 0 < ai.confidence < 1
    task = services.review_claim_next(user=reviewer, now=T0 + minutes(1))
    assert task is not None
    assert task.reason == "below_threshold"
    assert task.guarded == ai
    # The edit is checked against the AI step's own output spec.
    with pytest.raises(InvalidInput, match="is not one of"):
        services.review_decide(
            task=task, user=reviewer, action="edit", reason="r", output={"label": "sales"}
        )
    corrected = next(label for label in LABELS if label != answer["label"])
    decision = services.review_decide(
        task=task,
        user=reviewer,
        action="edit",
        reason="the customer wants a different team",
        output={"label": corrected},
        now=T0 + minutes(3),
    )
    assert decision.shown["output"] == ai.output
    assert decision.shown["votes"] == ai.meta["votes"]
    run = drive(run, now=T0 + minutes(3))
    assert (run.status, run.outcome) == (Run.Status.COMPLETED, "approved")
    assert StepRun.objects.get(run=run, step_id="route").output == {"team": corrected}
    unchanged = StepRun.objects.get(pk=ai.pk)
    assert (unchanged.output, unchanged.confidence, unchanged.meta) == (
        ai.output,
        ai.confidence,
        ai.meta,
    )


def test_a_rule_sends_a_vip_ticket_to_review_whatever_the_model_says(
    triage: Workflow, system: services.Actor, reviewer: User, settings: Any
) -> None:
    run = services.run_start(
        workflow=triage, input={"text": "App crashes on start", "vip": True}, actor=system, now=T0
    )
    drive(run, now=T0)
    assert ReviewTask.objects.get(run=run).reason == "rule:vip"
