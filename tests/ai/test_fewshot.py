"""Few-shot examples from past decisions: `examples: {from_reviews: k, max_tokens: T}`.

A fake chat model at the seam keeps every prompt, so the tests read exactly which examples
the model was given, in which order, and that none came from another workflow, the
evaluation split or a rejection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from tests.ai.fakes import ScriptedModel, answer
from tests.helpers import drive
from workflows import services
from workflows.ai import seam
from workflows.ai.prompting import shot_tokens, unwrap
from workflows.definitions import DefinitionError, validate_definition
from workflows.models import ReviewTask, Run, StepRun, Workflow
from workflows.splits import EVAL, TRAIN, split_of

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)
RATE = 0.3
LABELS = ["billing", "shipping", "technical"]
SHOT = {"input": "Please send my invoice", "output": {"label": "billing"}}


def ids(slug: str, side: str) -> list[str]:
    return [
        f"t-{n}"
        for n in range(3000)
        if split_of(slug, {"id": f"t-{n}"}, run_id=0, rate=RATE) == side
    ]


def step(k: int = 2, max_tokens: int = 1000, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai:gpt-4o-mini",
        "prompt": "Classify the ticket.",
        "input": "input.text",
        "examples": [SHOT, {"from_reviews": k, "max_tokens": max_tokens}],
        "output": {"labels": LABELS},
        **extra,
    }


class World:
    def __init__(self, make_workflow: Callable[..., Workflow], reviewer: User, **config: Any):
        self.reviewer = reviewer
        self.clock = T0
        self.models: list[ScriptedModel] = []
        self.answers: list[str] = []
        self.used: set[str] = set()
        group = reviewer.groups.get()
        self.flows = {
            slug: make_workflow(
                {
                    "slug": slug,
                    "name": slug,
                    "steps": [
                        {"id": "classify", "kind": "ai", "config": step(**config)},
                        {
                            "id": "check",
                            "kind": "gate",
                            "config": {"rules": [{"name": "all", "when": "true"}]},
                        },
                    ],
                },
                reviewer_group=group,
            )
            for slug in ("fs", "other")
        }

    def build(self, spec: str, options: Any = None, **kwargs: Any) -> ScriptedModel:
        model = ScriptedModel([answer({"label": self.answers.pop(0)})])
        self.models.append(model)
        return model

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def start(self, text: str, *, side: str = TRAIN, slug: str = "fs", says: str = "billing"):
        item = next(i for i in ids(slug, side) if (slug, i) not in self.used)
        self.used.add((slug, item))  # type: ignore[arg-type]
        self.answers.append(says)
        run = services.run_start(
            workflow=self.flows[slug],
            input={"id": item, "text": text},
            actor=services.Actor.system("tests"),
            now=self.tick(),
        )
        return drive(run, now=self.clock)

    def review(self, text: str, final: str | None, **kw: Any) -> Run:
        """An item the AI called billing, decided: approved, edited to `final`, or rejected."""
        run = self.start(text, **kw)
        task = ReviewTask.objects.get(run=run, status__in=ReviewTask.LIVE)
        services.review_claim(task=task, user=self.reviewer, now=self.tick())
        if final is None:
            decision: dict[str, Any] = {"action": "reject", "reason": "spam"}
        elif final == "billing":
            decision = {"action": "approve"}
        else:
            decision = {"action": "edit", "reason": "fix", "output": {"label": final}}
        services.review_decide(task=task, user=self.reviewer, now=self.tick(), **decision)
        return run

    def prompt(self) -> list[BaseMessage]:
        return self.models[-1].prompts[0]


@pytest.fixture
def world(
    make_workflow: Callable[..., Workflow],
    reviewer: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    settings.HITL_EVAL_SPLIT_RATE = RATE
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    world = World(make_workflow, reviewer)
    monkeypatch.setattr(seam, "build_chat_model", world.build)
    return world


def shots(messages: list[BaseMessage]) -> list[tuple[str, Any]]:
    """The (data, answer) pairs before the item itself: the few-shot examples, in order."""
    pairs = []
    for human, ai in zip(messages[1:-1:2], messages[2:-1:2], strict=True):
        assert isinstance(human, HumanMessage) and isinstance(ai, AIMessage)
        pairs.append((unwrap(human.text), json.loads(ai.text)))
    return pairs


def test_the_most_similar_decisions_come_after_the_fixed_examples(world: World) -> None:
    broken = world.review("my parcel arrived broken", "shipping")
    late = world.review("the parcel is broken and late", "shipping")
    world.review("I need a copy of my invoice", "billing")
    world.review("my parcel arrived broken and late", "shipping", side=EVAL)
    world.review("parcel arrived broken late", "shipping", slug="other")
    world.review("parcel arrived broken late!!", None)

    run = world.start("the parcel arrived broken and late again")

    assert shots(world.prompt()) == [
        (SHOT["input"], SHOT["output"]),
        ("the parcel is broken and late", {"label": "shipping"}),
        ("my parcel arrived broken", {"label": "shipping"}),
    ]
    # The item itself is last, in its own data block, with the same tag as the examples.
    assert unwrap(world.prompt()[-1].text) == "the parcel arrived broken and late again"
    meta = StepRun.objects.get(run=run, step_id="classify").meta
    assert [e["run"] for e in meta["review_examples"]] == [late.pk, broken.pk]
    assert meta["review_examples"][0]["output"] == {"label": "shipping"}


def test_examples_stop_at_the_token_budget(
    make_workflow: Callable[..., Workflow], reviewer: User, settings: Any, monkeypatch: Any
) -> None:
    settings.HITL_EVAL_SPLIT_RATE = RATE
    first = "the parcel is broken and late"
    budget = shot_tokens(first, {"label": "shipping"})
    world = World(make_workflow, reviewer, k=3, max_tokens=budget)
    monkeypatch.setattr(seam, "build_chat_model", world.build)
    world.review("my parcel arrived broken", "shipping")
    world.review(first, "shipping")

    world.start("the parcel arrived broken and late again")

    assert [data for data, _ in shots(world.prompt())] == [SHOT["input"], first]


def test_a_new_decision_rebuilds_the_index(world: World) -> None:
    world.review("my parcel arrived broken", "shipping")
    world.start("the app crashes on login")
    assert [data for data, _ in shots(world.prompt())] == [SHOT["input"]]  # nothing in common

    crash = world.review("the app crashes when I log in", "technical")
    run = world.start("the app crashes on login")

    assert shots(world.prompt())[1:] == [("the app crashes when I log in", {"label": "technical"})]
    meta = StepRun.objects.get(run=run, step_id="classify").meta
    assert [e["run"] for e in meta["review_examples"]] == [crash.pk]


def test_an_item_on_the_evaluation_side_gets_no_answer_of_its_own(world: World) -> None:
    world.review("my parcel arrived broken", "shipping", side=EVAL)
    run = world.start("my parcel arrived broken", side=EVAL)
    assert [data for data, _ in shots(world.prompt())] == [SHOT["input"]]
    assert StepRun.objects.get(run=run, step_id="classify").meta["review_examples"] == []


def test_the_desk_shows_the_examples_the_ai_was_given(world: World, reviewer: User) -> None:
    example = world.review("my parcel arrived broken", "shipping")
    run = world.start("my parcel arrived broken again")
    task = ReviewTask.objects.get(run=run, status__in=ReviewTask.LIVE)
    client = Client()
    client.force_login(reviewer)

    page = client.get(reverse("review:task", args=[task.pk])).content.decode()

    assert "Examples the AI was given" in page
    assert f"run #{example.pk}" in page
    assert "my parcel arrived broken</" in page


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ({"from_reviews": 0}, "greater than or equal to 1"),
        ({"from_reviews": 3, "max_tokens": 0}, "greater than or equal to 1"),
        ({"from_reviews": 3, "often": True}, "Extra inputs are not permitted"),
        ([{"from_reviews": 2}, SHOT], "from_reviews must come last"),
        ([{"from_reviews": 2}, {"from_reviews": 1}], "from_reviews must come last"),
    ],
)
def test_bad_from_reviews_configs_are_refused(examples: Any, message: str) -> None:
    definition = {
        "slug": "bad",
        "name": "bad",
        "steps": [{"id": "classify", "kind": "ai", "config": step() | {"examples": examples}}],
    }
    with pytest.raises(DefinitionError, match=message):
        validate_definition(definition)


def test_from_reviews_is_refused_when_only_local_models_answer() -> None:
    definition = {
        "slug": "bad",
        "name": "bad",
        "steps": [
            {
                "id": "classify",
                "kind": "ai",
                "config": step() | {"model": "local:tickets", "examples": {"from_reviews": 2}},
            }
        ],
    }
    with pytest.raises(DefinitionError, match="a local model reads no examples"):
        validate_definition(definition)


def test_from_reviews_alone_is_a_mapping_with_a_default_budget() -> None:
    from workflows.steps.ai import AIConfig

    config = AIConfig.model_validate(step() | {"examples": {"from_reviews": 4}})
    assert config.fixed_examples() == []
    assert config.from_reviews() is not None
    assert (config.from_reviews().from_reviews, config.from_reviews().max_tokens) == (4, 1000)  # type: ignore[union-attr]
