"""The local model learns from reviewers: decisions become examples, a candidate is trained,
compared with the current version on the evaluation split, and promoted or kept (audited)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from tests.helpers import drive
from workflows import services
from workflows.ai import seam
from workflows.ai.classifier import Example
from workflows.errors import InvalidInput
from workflows.models import AuditEvent, LocalModel, ReviewTask, Run, Workflow
from workflows.services.hooks import LOCAL_MODELS
from workflows.splits import EVAL, TRAIN, split_of

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
SLUG = "learn"
RATE = 0.3
BASE = [
    Example("I was charged twice for my plan", "billing"),
    Example("please refund the charge on my card", "billing"),
    Example("the invoice amount is wrong", "billing"),
    Example("my payment failed but money was taken", "billing"),
    Example("where is my parcel, tracking is stuck", "shipping"),
    Example("the package arrived damaged", "shipping"),
    Example("my order has not arrived yet", "shipping"),
    Example("the courier never delivered the box", "shipping"),
    Example("the app crashes when I log in", "technical"),
    Example("error 500 on the settings page", "technical"),
    Example("the website is very slow today", "technical"),
    Example("I cannot upload a file, it times out", "technical"),
]
# Reviewed evaluation items: plain cases both models get right.
EVAL_ITEMS = [
    ("I was charged twice this month", "billing"),
    ("my parcel never arrived", "shipping"),
    ("the app crashes on start", "technical"),
]


def item_ids(side: str, count: int, *, skip: int = 0) -> list[str]:
    """Input ids whose items fall on `side` of the split of SLUG at RATE."""
    found = [
        f"ticket-{n}"
        for n in range(2000)
        if split_of(SLUG, {"id": f"ticket-{n}"}, run_id=0, rate=RATE) == side
    ]
    return found[skip : skip + count]


class Desk:
    """Runs of the `learn` workflow and a reviewer deciding them, on the tests' clock."""

    def __init__(self, workflow: Workflow, reviewer: User) -> None:
        self.workflow, self.reviewer = workflow, reviewer
        self.clock = T0
        self.used: set[str] = set()

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def run(self, side: str, text: str) -> Run:
        item = next(i for i in item_ids(side, 400) if i not in self.used)
        self.used.add(item)
        run = services.run_start(
            workflow=self.workflow,
            input={"id": item, "text": text},
            actor=services.Actor.system("tests"),
            now=self.tick(),
        )
        return drive(run, now=self.clock)

    def review(self, side: str, text: str, label: str | None, action: str = "") -> Run:
        """Start an item and decide it: approve if the AI said `label`, else edit to it;
        reject when `label` is None."""
        run = self.run(side, text)
        task = ReviewTask.objects.get(run=run, status__in=ReviewTask.LIVE)
        shown = task.guarded.output if task.guarded else None
        services.review_claim(task=task, user=self.reviewer, now=self.tick())
        if label is None:
            kwargs: dict[str, Any] = {"action": "reject", "reason": "not a ticket"}
        elif not action and shown == {"label": label}:
            kwargs = {"action": "approve"}
        else:
            kwargs = {"action": "edit", "reason": "relabel", "output": {"label": label}}
        services.review_decide(task=task, user=self.reviewer, now=self.tick(), **kwargs)
        return run


@pytest.fixture
def desk(
    make_workflow: Callable[..., Workflow], reviewer: User, settings: Any, system: Any
) -> Desk:
    settings.HITL_EVAL_SPLIT_RATE = RATE
    settings.HITL_LOCAL_MODEL_ECE_TOLERANCE = 0.05
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    services.local_model_train(name="tickets", examples=BASE, actor=system, now=T0)
    workflow = make_workflow(
        {
            "slug": SLUG,
            "name": "Learn",
            "steps": [
                {
                    "id": "classify",
                    "kind": "ai",
                    "config": {
                        "model": "local:tickets",
                        "prompt": "Classify the ticket.",
                        "input": "input.text",
                        "output": {"labels": ["billing", "shipping", "technical", "legal"]},
                    },
                },
                {
                    "id": "check",
                    "kind": "gate",
                    "config": {"rules": [{"name": "everything", "when": "true"}]},
                },
            ],
        },
        reviewer_group=reviewer.groups.get(),
    )
    return Desk(workflow, reviewer)


def predict(text: str, spec: str = "local:tickets") -> str:
    model = seam.build_chat_model(spec, local_models=LOCAL_MODELS)
    return str(json.loads(str(model.invoke([("human", text)]).content))["label"])


def review_eval_items(desk: Desk) -> None:
    for text, label in EVAL_ITEMS:
        desk.review(EVAL, text, label)


AMBIGUOUS = "the delivery fee on my invoice is wrong"


def test_a_reviewed_edit_changes_the_next_models_prediction(desk: Desk, system: Any) -> None:
    assert predict(AMBIGUOUS) == "billing"
    desk.review(TRAIN, AMBIGUOUS, "shipping")
    review_eval_items(desk)

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert result.outcome == "promoted"
    assert result.model.version == 2
    assert predict(AMBIGUOUS) == "shipping"  # local:tickets now resolves to version 2
    assert predict(AMBIGUOUS, "local:tickets@1") == "billing"
    stored = {(e["text"], e["label"]) for e in result.model.examples}
    assert (AMBIGUOUS, "shipping") in stored
    assert {(e.text, e.label) for e in BASE} <= stored
    event = AuditEvent.objects.get(verb="local_model.promoted")
    assert event.payload["version"] == 2
    assert event.payload["current"]["n"] == event.payload["candidate"]["n"] == 3
    assert event.payload["decision_examples"] == 1


def test_evaluation_items_and_rejections_never_enter_training(desk: Desk, system: Any) -> None:
    desk.review(TRAIN, "my parcel was opened by customs", "shipping")
    desk.review(EVAL, "the courier broke my parcel open", "shipping")
    desk.review(TRAIN, "hello, is anyone there?", None)
    review_eval_items(desk)

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert result.outcome == "promoted"
    texts = {e["text"] for e in result.model.examples}
    assert "my parcel was opened by customs" in texts
    assert "the courier broke my parcel open" not in texts
    assert "hello, is anyone there?" not in texts
    assert not texts & {text for text, _ in EVAL_ITEMS}
    assert result.evaluated == 4


def test_a_later_decision_on_the_same_item_replaces_the_earlier(desk: Desk, system: Any) -> None:
    run = desk.review(TRAIN, "customs opened my box", "shipping")
    # The same ticket comes back (the same input id) and is decided the other way.
    again = services.run_start(
        workflow=desk.workflow, input=run.input, actor=system, now=desk.tick()
    )
    drive(again, now=desk.clock)
    task = ReviewTask.objects.get(run=again, status__in=ReviewTask.LIVE)
    services.review_claim(task=task, user=desk.reviewer, now=desk.tick())
    services.review_decide(
        task=task, user=desk.reviewer, action="edit", reason="relabel",
        output={"label": "billing"}, now=desk.tick(),
    )  # fmt: skip
    review_eval_items(desk)

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert (result.outcome, result.decision_examples) == ("promoted", 1), result
    mine = [e for e in result.model.examples if e["text"] == "customs opened my box"]
    item = f"{SLUG}:{run.input['id']}"
    assert mine == [{"text": "customs opened my box", "label": "billing", "item": item}]


def test_a_worse_candidate_is_kept_out_and_audited(desk: Desk, system: Any) -> None:
    # A confused reviewer labels tickets like the evaluation items wrong, again and again.
    for text, label in EVAL_ITEMS:
        wrong = "technical" if label != "technical" else "billing"
        for prefix in ("", "hello, ", "urgent: ", "again "):
            desk.review(TRAIN, prefix + text, wrong)
    review_eval_items(desk)

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert result.outcome == "kept"
    assert result.candidate["accuracy"] < result.current["accuracy"]
    assert LocalModel.objects.filter(name="tickets").count() == 1
    assert predict("I was charged twice this month") == "billing"
    event = AuditEvent.objects.get(verb="local_model.kept")
    assert event.payload["version"] == 1
    assert event.payload["current"] == result.current
    assert event.payload["candidate"] == result.candidate
    assert event.payload["current"]["n"] == 3
    assert event.payload["reason"] == "worse"
    assert not AuditEvent.objects.filter(verb="local_model.promoted").exists()


def test_a_candidate_worse_only_in_calibration_is_kept(
    desk: Desk, system: Any, settings: Any
) -> None:
    desk.review(TRAIN, AMBIGUOUS, "shipping")
    review_eval_items(desk)
    settings.HITL_LOCAL_MODEL_ECE_TOLERANCE = -1.0  # nothing is within this tolerance

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert result.outcome == "kept"
    assert result.candidate["accuracy"] >= result.current["accuracy"]
    assert AuditEvent.objects.get(verb="local_model.kept").payload["tolerance"] == -1.0


def test_rare_labels_are_left_out_and_named(desk: Desk, system: Any) -> None:
    desk.review(TRAIN, "I will see you in court over this", "legal")
    desk.review(TRAIN, AMBIGUOUS, "shipping")
    review_eval_items(desk)

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert result.left_out == {"legal": 1}
    assert "legal" not in result.candidate_labels
    event = AuditEvent.objects.get(verb__in=["local_model.promoted", "local_model.kept"])
    assert event.payload["left_out"] == {"legal": 1}


def test_with_no_reviewed_evaluation_items_nothing_is_promoted(desk: Desk, system: Any) -> None:
    desk.review(TRAIN, AMBIGUOUS, "shipping")

    result = services.local_model_retrain(name="tickets", actor=system, now=desk.tick())

    assert (result.outcome, result.reason) == ("kept", "no_evaluation_items")
    assert AuditEvent.objects.get(verb="local_model.kept").payload["current"] is None


def test_retraining_an_unknown_model_is_an_error(db: None, system: Any) -> None:
    with pytest.raises(InvalidInput, match="no local model 'nope'"):
        services.local_model_retrain(name="nope", actor=system)


def test_the_beat_task_retrains_after_every_n_new_decisions(
    desk: Desk, system: Any, settings: Any
) -> None:
    settings.HITL_LOCAL_MODEL_RETRAIN_EVERY = 4
    review_eval_items(desk)
    assert services.local_models_retrain_due(now=desk.tick()) == {}  # 3 decisions

    desk.review(TRAIN, AMBIGUOUS, "shipping")
    assert services.local_models_retrain_due(now=desk.tick()) == {"tickets": "promoted"}
    # Counted from the last retraining: nothing new, nothing to do.
    assert services.local_models_retrain_due(now=desk.tick()) == {}
    for text in ["parcel is lost", "charged twice", "app is slow", "refund please"]:
        desk.review(TRAIN, text, None)
    assert set(services.local_models_retrain_due(now=desk.tick())) == {"tickets"}


def test_the_beat_task_is_off_at_zero(desk: Desk, settings: Any) -> None:
    settings.HITL_LOCAL_MODEL_RETRAIN_EVERY = 0
    review_eval_items(desk)
    desk.review(TRAIN, AMBIGUOUS, "shipping")
    assert services.local_models_retrain_due(now=desk.tick()) == {}
    assert not AuditEvent.objects.filter(verb__startswith="local_model.p").exists()


def test_the_command_retrains_on_demand(desk: Desk) -> None:
    desk.review(TRAIN, AMBIGUOUS, "shipping")
    review_eval_items(desk)
    out = StringIO()
    call_command("localmodel", "retrain", "tickets", stdout=out)
    assert out.getvalue().startswith("local:tickets@2 promoted")
    with pytest.raises(CommandError, match="no local model 'other'"):
        call_command("localmodel", "retrain", "other", stdout=StringIO())


# --- training from files, and thin labels ---------------------------------------------------


def test_training_leaves_thin_labels_out_and_says_so(db: None, system: Any) -> None:
    thin = [*BASE, Example("see you in court", "legal"), Example("my lawyer will call", "legal")]
    model = services.local_model_train(name="thin", examples=thin, actor=system)
    assert model.labels == ["billing", "shipping", "technical"]
    assert model.source["left_out"] == {"legal": 2}
    assert len(model.examples) == len(BASE)
    event = AuditEvent.objects.get(verb="local_model.trained")
    assert event.payload["left_out"] == {"legal": 2}


def test_the_command_trains_from_csv(db: None, tmp_path: Any) -> None:
    data = tmp_path / "tickets.csv"
    rows = ["body,category,notes"] + [f'"{e.text}",{e.label},x' for e in BASE]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = StringIO()
    call_command(
        "localmodel", "train", "csv", "--data", str(data),
        "--text-column", "body", "--label-column", "category", stdout=out,
    )  # fmt: skip
    assert out.getvalue().startswith("local:csv@1: 12 examples")
    assert LocalModel.objects.get(name="csv").source == {"file": "tickets.csv"}


def test_the_command_names_a_missing_csv_column(db: None, tmp_path: Any) -> None:
    data = tmp_path / "tickets.csv"
    data.write_text("body,category\nhello,billing\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"no column 'text'.*columns: body, category"):
        call_command("localmodel", "train", "csv", "--data", str(data), stdout=StringIO())
    with pytest.raises(CommandError, match=r"no column 'label'"):
        call_command(
            "localmodel", "train", "csv", "--data", str(data), "--text-column", "body",
            stdout=StringIO(),
        )  # fmt: skip
    assert not LocalModel.objects.exists()


def test_the_command_names_a_bad_csv_row_and_wants_one_file(db: None, tmp_path: Any) -> None:
    data = tmp_path / "tickets.csv"
    data.write_text("text,label\nhello,billing\nbye,\n", encoding="utf-8")
    with pytest.raises(CommandError, match="line 3: 'label' must be a non-empty string"):
        call_command("localmodel", "train", "csv", "--data", str(data), stdout=StringIO())
    with pytest.raises(CommandError, match="give the data file once"):
        call_command("localmodel", "train", "csv", str(data), "--data", str(data))
    with pytest.raises(CommandError, match="give the data file"):
        call_command("localmodel", "train", "csv")


def test_jsonl_reads_other_keys_with_the_column_options(db: None, tmp_path: Any) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text(
        "".join(json.dumps({"body": e.text, "cat": e.label}) + "\n" for e in BASE),
        encoding="utf-8",
    )
    out = StringIO()
    call_command(
        "localmodel", "train", "j", "--data", str(data), "--text-column", "body",
        "--label-column", "cat", stdout=out,
    )  # fmt: skip
    assert out.getvalue().startswith("local:j@1: 12 examples")
