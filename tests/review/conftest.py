"""Fixtures for gates and review tasks: groups, roles, a gated workflow and a fixed clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from tests.factories import GroupFactory, UserFactory
from tests.helpers import drive
from workflows import services
from workflows.models import ReviewTask, Run, Workflow

# Every test runs on this clock, passed as `now=`; nothing waits for wall-clock time.
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture(autouse=True)
def _review_kinds(settings: Any, _test_step_kinds: None) -> Iterator[None]:
    from workflows.steps import registry

    settings.HITL_STEP_KINDS = [*settings.HITL_STEP_KINDS, "tests.review.kinds"]
    settings.HITL_GATE_AUDIT_SECRET = "test-audit-secret"
    settings.HITL_REVIEW_CLAIM = timedelta(minutes=15)
    settings.HITL_SLA_WARNING_FRACTION = 0.75
    settings.HITL_BASE_URL = "https://hitl.example.com"
    # Users are made in almost every test; a slow password hash would dominate the suite.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    registry.cache_clear()
    yield
    registry.cache_clear()


@pytest.fixture
def escalators(db: None) -> Group:
    return GroupFactory(name="triage-escalation")


@pytest.fixture
def second_reviewer(reviewers: Group) -> User:
    return UserFactory(username="second", groups=[reviewers])


@pytest.fixture
def escalator(escalators: Group) -> User:
    return UserFactory(username="escalator", groups=[escalators])


@pytest.fixture
def superuser(db: None) -> User:
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def other_reviewer(make_workflow: Callable[..., Workflow]) -> User:
    """A reviewer of another workflow only, who must see nothing of ours."""
    group = GroupFactory(name="other-reviewers")
    make_workflow(
        {"slug": "other", "name": "Other", "steps": [{"id": "w", "kind": "wait"}]},
        reviewer_group=group,
    )
    return UserFactory(username="other", groups=[group])


def gated_definition(
    slug: str = "triage", gate: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """classify (scored) → check (gate) → book on approval, refuse on rejection."""
    gate_step: dict[str, Any] = {
        "id": "check",
        "kind": "gate",
        "config": {"threshold": 0.8, "sla_minutes": 60} if gate is None else gate,
        "next": {"approved": "book", "rejected": "refuse"},
    }
    gate_step.update(extra)
    return {
        "slug": slug,
        "name": slug.title(),
        "steps": [
            {
                "id": "classify",
                "kind": "scored",
                "config": {"labels": ["billing", "refund", "bug"]},
            },
            gate_step,
            {
                "id": "book",
                "kind": "transform",
                "config": {"output": {"booked": "steps.check.output.label"}},
                "next": "end",
            },
            {"id": "refuse", "kind": "transform", "config": {"output": {"refused": "true"}}},
        ],
    }


@pytest.fixture
def make_gate_workflow(
    make_workflow: Callable[..., Workflow], owner: User, reviewers: Group, escalators: Group
) -> Callable[..., Workflow]:
    def make(
        gate: dict[str, Any] | None = None,
        *,
        slug: str = "triage",
        escalation: bool = True,
        definition: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Workflow:
        workflow = make_workflow(
            definition or gated_definition(slug, gate, **extra),
            reviewer_group=reviewers,
            escalation_group=escalators if escalation else None,
        )
        workflow.admins.add(owner)
        return workflow

    return make


@pytest.fixture
def workflow(make_gate_workflow: Callable[..., Workflow]) -> Workflow:
    return make_gate_workflow()


@pytest.fixture
def start(system: services.Actor) -> Callable[..., Run]:
    """Start a run whose classifier answers `answer` with `confidence`, and drive it."""

    def start(
        workflow: Workflow,
        answer: Any = None,
        confidence: float | None = 0.5,
        *,
        now: datetime = T0,
        **input: Any,
    ) -> Run:
        data = {
            "answer": {"label": "billing"} if answer is None else answer,
            "confidence": confidence,
            "votes": input.pop("votes", {"billing": 3, "refund": 2}),
            **input,
        }
        run = services.run_start(workflow=workflow, input=data, actor=system, now=now)
        return drive(run, now=now)

    return start


@pytest.fixture
def task(workflow: Workflow, start: Callable[..., Run]) -> ReviewTask:
    """An open review task: a 'billing' answer at 0.5 confidence, under the 0.8 threshold."""
    run = start(workflow)
    return ReviewTask.objects.get(run=run)
