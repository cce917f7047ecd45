"""End to end on a real worker: AI on the local model → gate → review task → decision → done."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from tests.integration.worker import Worker
from workflows import services
from workflows.ai.trainingdata import load_jsonl
from workflows.models import ReviewTask, Run, StepRun

pytestmark = pytest.mark.integration

TICKETS = Path(__file__).resolve().parents[2] / "hitl" / "demo" / "data" / "tickets.jsonl"
LABELS = ["billing", "technical", "account", "shipping", "other"]


def test_a_reviewed_ai_answer_completes_the_run(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None]
) -> None:
    services.local_model_train(name="tickets", examples=load_jsonl(TICKETS), actor=system)
    group = Group.objects.create(name="flow-reviewers")
    reviewer = User.objects.create_user("flow-reviewer", "flow@example.com", "pw")
    reviewer.groups.add(group)
    workflow = make_workflow(
        {
            "slug": "flow",
            "name": "Flow",
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
                {"id": "check", "kind": "gate", "config": {"threshold": 1.0}},
                {
                    "id": "route",
                    "kind": "transform",
                    "config": {"output": {"team": "steps.check.output.label"}},
                },
            ],
        },
        reviewer_group=group,
    )
    run = services.run_start(
        workflow=workflow, input={"text": "Charged twice, please refund one"}, actor=system
    )
    wait_until(lambda: ReviewTask.objects.filter(run=run).exists())
    task = services.review_claim_next(user=reviewer)
    assert task is not None and task.run_id == run.pk
    services.review_decide(task=task, user=reviewer, action="approve")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED)
    ai = StepRun.objects.get(run=run, step_id="classify")
    assert StepRun.objects.get(run=run, step_id="route").output == {"team": ai.output["label"]}
    assert Run.objects.get(pk=run.pk).outcome == "approved"
