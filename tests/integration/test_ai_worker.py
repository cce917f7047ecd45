from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.worker import Worker
from workflows import services
from workflows.ai.trainingdata import load_jsonl
from workflows.models import Run, StepRun

pytestmark = pytest.mark.integration


def test_an_ai_step_on_the_offline_local_model_runs_on_a_real_worker(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None]
) -> None:
    examples = load_jsonl("hitl/demo/data/tickets.jsonl")[:600]
    services.local_model_train(name="tickets-it", examples=examples, actor=system)
    workflow = make_workflow(
        {
            "slug": "local-ai",
            "name": "local ai",
            "steps": [
                {
                    "id": "classify",
                    "kind": "ai",
                    "config": {
                        "model": "local:tickets-it",
                        "prompt": "Classify the support ticket.",
                        "input": "input.text",
                        "output": {
                            "labels": ["billing", "technical", "account", "shipping", "other"]
                        },
                    },
                }
            ],
        }
    )
    text = "I was charged twice for my subscription this month, please refund one payment."
    run = services.run_start(workflow=workflow, input={"text": text}, actor=system)
    wait_until(lambda: Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED, sweep=False)
    step = StepRun.objects.get(run=run, step_id="classify")
    assert step.output == {"label": "billing"}
    assert 0.5 < step.confidence <= 1.0
    assert step.meta["model_version"] == "1"
    assert step.calls == 1
    assert step.input_tokens > 10
    assert step.cost_usd == 0
