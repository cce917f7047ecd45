"""A small reviewed world for the dataset export tests: real `ai` steps (a scripted fake model
at the one model seam) guarded by real gates, decided through the review services.

Plain functions, not fixtures, so that both dataset test modules can build it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from langchain_core.messages import AIMessage

from tests.ai.fakes import ScriptedModel
from tests.factories import GroupFactory, UserFactory
from tests.helpers import drive
from workflows import services
from workflows.ai import seam
from workflows.models import ReviewTask, Run, Workflow

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
LABELS = ["billing", "refund", "bug"]
PROMPT = "Classify the support ticket."
SHOT = {"input": "Please send my money back", "output": {"label": "refund"}}


def fake_models(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Replace the model seam; each run's model answers the next (label, confidence) queued."""
    queue: list[tuple[str, float]] = []

    def build(spec: str, options: Any = None, **kwargs: Any) -> ScriptedModel:
        label, confidence = queue.pop(0)
        message = AIMessage(
            content=json.dumps({"label": label}),
            response_metadata={"model_name": "fake", "confidence": confidence},
            usage_metadata={"input_tokens": 90, "output_tokens": 5, "total_tokens": 95},
        )
        return ScriptedModel([message])

    monkeypatch.setattr(seam, "build_chat_model", build)
    return queue


def definition(slug: str, gate: dict[str, Any], guarded: dict[str, Any] | None = None) -> Any:
    """classify (an `ai` step, or `guarded`) → check (gate) → book or refuse."""
    classify = guarded or {
        "id": "classify",
        "kind": "ai",
        "config": {
            "model": "openai:gpt-4o-mini",
            "prompt": PROMPT,
            "input": "input.text",
            "examples": [SHOT],
            "output": {"labels": LABELS},
        },
    }
    return {
        "slug": slug,
        "name": slug.title(),
        "steps": [
            classify,
            {
                "id": "check",
                "kind": "gate",
                "config": gate,
                "next": {"approved": "book", "rejected": "refuse"},
            },
            {
                "id": "book",
                "kind": "transform",
                "config": {"output": {"ok": "true"}},
                "next": "end",
            },
            {"id": "refuse", "kind": "transform", "config": {"output": {"ok": "false"}}},
        ],
    }


@dataclass
class World:
    """Who and what the tests look at: runs by name, the people who decided them."""

    reviewer: User
    escalator: User
    triage: Workflow
    audited: Workflow
    # What the fake model answers next, (label, confidence) per run: see `fake_models`.
    queue: list[tuple[str, float]]
    runs: dict[str, Run] = field(default_factory=dict)


def build_world(
    make_workflow: Callable[..., Workflow], queue: list[tuple[str, float]], reviewer: User
) -> World:
    """Six items in `triage` (threshold 0.8, a rule) and one in `audited` (audit rate 1).

    - `charged` billing 0.5, below the threshold, approved on day 1;
    - `refund` billing 0.6, below, edited to refund on day 2;
    - `urgent` bug 0.95, caught by the `urgent` rule, rejected on day 3;
    - `escalated` bug 0.4, below, escalated, then approved by the escalator on day 3;
    - `invoice` billing 0.95, auto-approved (no review);
    - `pending` billing 0.3, below, still waiting for a reviewer;
    - `audit` in `audited`: billing 0.9 passes its 0.5 threshold, drawn for audit, approved.
    """
    reviewers = reviewer.groups.get()
    escalators: Group = GroupFactory(name="dataset-escalation")
    escalator = UserFactory(username="escalator", groups=[escalators])
    triage = make_workflow(
        definition(
            "triage",
            {
                "threshold": 0.8,
                "rules": [{"name": "urgent", "when": 'input.text.startsWith("URGENT")'}],
            },
        ),
        reviewer_group=reviewers,
        escalation_group=escalators,
    )
    audited = make_workflow(
        definition("audited", {"threshold": 0.5, "audit_rate": 1.0}), reviewer_group=reviewers
    )
    world = World(
        reviewer=reviewer, escalator=escalator, triage=triage, audited=audited, queue=queue
    )
    items = [
        ("charged", triage, "I was charged twice", "billing", 0.5),
        ("refund", triage, "Refund my order please", "billing", 0.6),
        ("urgent", triage, "URGENT: the app crashes", "bug", 0.95),
        ("escalated", triage, "Something odd happened", "bug", 0.4),
        ("invoice", triage, "Where is my invoice?", "billing", 0.95),
        ("pending", triage, "Charged again", "billing", 0.3),
        ("audit", audited, "Billing address change", "billing", 0.9),
    ]
    for n, (name, workflow, text, label, confidence) in enumerate(items):
        queue.append((label, confidence))
        started = T0 + timedelta(minutes=n)
        start(world, name, workflow, {"id": f"ticket-{name}", "text": text}, at=started)
    decide(world, "charged", reviewer, "approve", at=T0 + DAY)
    decide(
        world, "refund", reviewer, "edit", at=T0 + 2 * DAY, reason="asks for a refund",
        output={"label": "refund"},
    )  # fmt: skip
    decide(world, "urgent", reviewer, "reject", at=T0 + 3 * DAY, reason="spam")
    decide(world, "escalated", reviewer, "escalate", at=T0 + 3 * DAY, reason="not sure")
    decide(world, "escalated", escalator, "approve", at=T0 + 3 * DAY + timedelta(hours=1))
    decide(world, "audit", reviewer, "approve", at=T0 + DAY)
    return world


def start(world: World, name: str, workflow: Workflow, data: Any, *, at: datetime) -> Run:
    """Start a run and drive it to its gate (or its end), on the tests' clock."""
    run = services.run_start(
        workflow=workflow, input=data, actor=services.Actor.system("tests"), now=at
    )
    world.runs[name] = drive(run, now=at)
    return world.runs[name]


def decide(world: World, name: str, user: User, action: str, *, at: datetime, **kw: Any) -> None:
    task = ReviewTask.objects.get(run=world.runs[name], status__in=ReviewTask.LIVE)
    services.review_claim(task=task, user=user, now=at - timedelta(minutes=5))
    services.review_decide(task=task, user=user, action=action, now=at, **kw)


def export(*args: str, tmp_path: Path, name: str = "out.jsonl") -> tuple[list[dict[str, Any]], str]:
    """Run `dataset export ARGS --out FILE`: the parsed lines, and what went to stderr."""
    out = tmp_path / name
    stderr = StringIO()
    call_command("dataset", "export", *args, "--out", str(out), stdout=StringIO(), stderr=stderr)
    return [json.loads(line) for line in lines_of(out)], stderr.getvalue()


def lines_of(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "every line ends with a newline"
    yield from text.splitlines()
