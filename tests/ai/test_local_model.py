"""The offline local model: a real classifier trained on the shipped demo tickets (no mocks)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from workflows.ai.classifier import (
    DEFAULT_PARAMS,
    MIN_EXAMPLES_PER_LABEL,
    Example,
    TextClassifier,
    evaluate,
    split,
    train_classifier,
    training_fingerprint,
)
from workflows.ai.local import LocalClassifierChatModel
from workflows.ai.prompting import build_messages
from workflows.ai.trainingdata import load_jsonl

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "hitl" / "demo" / "data"
TICKETS = DATA / "tickets.jsonl"
LABELS = ("account", "billing", "other", "shipping", "technical")

TOY = [
    Example("I was charged twice for my plan", "billing"),
    Example("please refund the charge on my card", "billing"),
    Example("the invoice amount is wrong", "billing"),
    Example("my payment failed but money was taken", "billing"),
    Example("where is my parcel, tracking is stuck", "shipping"),
    Example("the package arrived damaged", "shipping"),
    Example("my order has not arrived yet", "shipping"),
    Example("the courier never delivered the box", "shipping"),
]


@pytest.fixture(scope="module")
def tickets() -> list[Example]:
    return load_jsonl(TICKETS)


@pytest.fixture(scope="module")
def difficulty() -> dict[str, str]:
    rows = [json.loads(line) for line in TICKETS.read_text(encoding="utf-8").splitlines()]
    return {row["text"]: row["difficulty"] for row in rows}


@pytest.fixture(scope="module")
def held_out(tickets: list[Example]) -> tuple[TextClassifier, list[Example]]:
    train, test = split(tickets, test_fraction=0.2, seed=0)
    return train_classifier(train, seed=0), test


@pytest.fixture(scope="module")
def classifier(held_out: tuple[TextClassifier, list[Example]]) -> TextClassifier:
    return held_out[0]


@pytest.fixture
def chat(classifier: TextClassifier) -> LocalClassifierChatModel:
    return LocalClassifierChatModel(
        classifier=classifier, model_name="local:tickets", model_version="3"
    )


# --- training --------------------------------------------------------------------------------


def test_it_gives_identical_probabilities_for_same_examples_and_seed() -> None:
    shuffled = list(TOY)
    random.Random(7).shuffle(shuffled)
    first = train_classifier(TOY, seed=3)
    second = train_classifier(shuffled, seed=3)

    assert first.fingerprint == second.fingerprint
    for text in ["double charge", "my box is lost", "hello there"]:
        assert first.predict_proba(text) == second.predict_proba(text)


def test_it_fingerprints_what_was_trained() -> None:
    base = train_classifier(TOY).fingerprint

    assert train_classifier([*TOY, Example("refund please", "billing")]).fingerprint != base
    relabelled = [Example(TOY[0].text, "shipping"), *TOY[1:]]
    assert train_classifier(relabelled).fingerprint != base
    assert train_classifier(TOY, params={"C": 1.0}).fingerprint != base
    assert train_classifier(TOY, seed=1).fingerprint != base
    # Spelling out a default, even as an int, changes nothing.
    assert train_classifier(TOY, params={"C": DEFAULT_PARAMS["C"]}).fingerprint == base
    assert train_classifier(TOY, params={"C": int(DEFAULT_PARAMS["C"])}).fingerprint == base


def test_it_computes_the_fingerprint_without_training() -> None:
    assert training_fingerprint(TOY, seed=2) == train_classifier(TOY, seed=2).fingerprint
    assert len(training_fingerprint(TOY)) == 64


def test_it_refuses_a_single_label() -> None:
    only_billing = [e for e in TOY if e.label == "billing"]
    with pytest.raises(ValueError, match="at least 2 labels"):
        train_classifier(only_billing)


def test_it_refuses_too_few_examples_per_label() -> None:
    thin = [*TOY, *[Example(f"hi number {i}", "other") for i in range(MIN_EXAMPLES_PER_LABEL - 1)]]
    with pytest.raises(ValueError, match="too few for 'other'"):
        train_classifier(thin)


def test_it_refuses_unknown_params() -> None:
    with pytest.raises(ValueError, match="unknown local model parameter 'temperature'"):
        train_classifier(TOY, params={"temperature": 0.7})


def test_it_refuses_bad_param_values() -> None:
    with pytest.raises(ValueError, match="C must be a positive number"):
        train_classifier(TOY, params={"C": 0})
    with pytest.raises(ValueError, match="bad local model parameter"):
        train_classifier(TOY, params={"min_df": "often"})


def test_it_refuses_examples_without_a_label_or_text() -> None:
    with pytest.raises(ValueError, match="non-empty string label"):
        train_classifier([*TOY, Example("orphan", "")])
    with pytest.raises(ValueError, match="string text"):
        train_classifier([*TOY, Example(None, "billing")])  # type: ignore[arg-type]


def test_it_refuses_texts_with_nothing_to_learn() -> None:
    blank = [Example("", label) for label in ("a", "a", "a", "b", "b", "b")]
    with pytest.raises(ValueError, match="cannot train"):
        train_classifier(blank)


def test_it_trains_on_the_shipped_dataset_in_well_under_a_second(tickets: list[Example]) -> None:
    train_classifier(TOY)  # pay for the scikit-learn import outside the measurement
    started = time.process_time()
    train_classifier(tickets)
    elapsed = time.process_time() - started
    # Measured ~0.3 s of CPU on an idle 2-core machine, ~0.55 s with the cores contended;
    # the bound only catches a regression such as a solver that needs 10x the iterations.
    assert elapsed < 2.0


# --- predictions -----------------------------------------------------------------------------


def test_probabilities_cover_every_label_and_sum_to_one(classifier: TextClassifier) -> None:
    assert classifier.labels == LABELS
    for text in ["My card was charged twice", "", "asdf qwerty", "Where is my parcel?"]:
        probabilities = classifier.predict_proba(text)
        assert tuple(probabilities) == LABELS
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)


def test_predict_returns_the_most_probable_label(classifier: TextClassifier) -> None:
    text = "Refund request\n\nI was charged $40.00 twice for my Plus subscription this month."
    label, confidence = classifier.predict(text)
    probabilities = classifier.predict_proba(text)

    assert label == "billing"
    assert confidence == max(probabilities.values()) == probabilities["billing"]


def test_batched_and_single_predictions_agree(classifier: TextClassifier) -> None:
    texts = ["Package damaged", "App keeps crashing", "Delete my account"]
    assert classifier.predict_proba_many(texts) == [classifier.predict_proba(t) for t in texts]


# --- the shipped dataset and held-out quality -------------------------------------------------


def test_the_dataset_regenerates_byte_for_byte() -> None:
    generated = subprocess.run(
        [sys.executable, str(DATA / "make_tickets.py")], capture_output=True, check=True
    ).stdout
    assert generated == TICKETS.read_bytes()


def test_the_dataset_has_five_labels_and_an_ambiguous_slice(
    tickets: list[Example], difficulty: dict[str, str]
) -> None:
    assert len(tickets) == 3000
    assert sorted({e.label for e in tickets}) == list(LABELS)
    assert len({e.text for e in tickets}) == len(tickets)  # no duplicate across a split
    ambiguous = sum(1 for d in difficulty.values() if d == "ambiguous") / len(tickets)
    assert 0.10 <= ambiguous <= 0.15


def test_held_out_accuracy_and_calibration_are_good(
    held_out: tuple[TextClassifier, list[Example]],
) -> None:
    classifier, test = held_out
    metrics = evaluate(classifier, test)

    # Measured: accuracy 0.955, ECE 0.017, log loss 0.12, Brier 0.069 on n=600.
    assert metrics["n"] == 600
    assert metrics["accuracy"] >= 0.9
    assert metrics["ece"] <= 0.06
    assert metrics["log_loss"] <= 0.3
    assert metrics["brier"] <= 0.15


def test_easy_tickets_get_more_confidence_than_ambiguous_ones(
    held_out: tuple[TextClassifier, list[Example]], difficulty: dict[str, str]
) -> None:
    classifier, test = held_out
    easy = [classifier.predict(e.text)[1] for e in test if difficulty[e.text] == "easy"]
    hard = [classifier.predict(e.text)[1] for e in test if difficulty[e.text] == "ambiguous"]

    # Measured: 0.99 on average for easy tickets, 0.78 for ambiguous ones. The demo needs
    # both: items confident enough to auto-approve and items that go to review.
    assert sum(easy) / len(easy) >= sum(hard) / len(hard) + 0.1
    assert min(hard) < 0.6


def test_evaluate_matches_the_textbook_definitions() -> None:
    classifier = train_classifier(TOY)
    metrics = evaluate(classifier, TOY[:2])
    p_billing = [classifier.predict_proba(e.text)["billing"] for e in TOY[:2]]

    assert metrics["n"] == 2
    assert metrics["log_loss"] == pytest.approx(-sum(math.log(p) for p in p_billing) / 2)
    # Two classes: the squared error is (1-p)^2 on billing plus p_other^2 = (1-p)^2.
    assert metrics["brier"] == pytest.approx(sum(2 * (1 - p) ** 2 for p in p_billing) / 2)


def test_evaluate_refuses_labels_the_model_does_not_know() -> None:
    classifier = train_classifier(TOY)
    with pytest.raises(ValueError, match="not trained on: \\['other'\\]"):
        evaluate(classifier, [Example("hello", "other")])
    with pytest.raises(ValueError, match="empty"):
        evaluate(classifier, [])


def test_split_is_deterministic_stratified_and_disjoint(tickets: list[Example]) -> None:
    train, test = split(tickets, test_fraction=0.2, seed=5)

    assert (train, test) == split(tickets, test_fraction=0.2, seed=5)
    assert test != split(tickets, test_fraction=0.2, seed=6)[1]
    assert len(train) + len(test) == len(tickets)
    assert not {e.text for e in train} & {e.text for e in test}
    for label in LABELS:
        total = sum(1 for e in tickets if e.label == label)
        assert sum(1 for e in test if e.label == label) == round(total * 0.2)


def test_split_keeps_every_label_in_training() -> None:
    train, test = split([*TOY, Example("lonely", "other")], test_fraction=0.5)
    assert Example("lonely", "other") in train
    assert {e.label for e in test} == {"billing", "shipping"}


# --- load_jsonl ------------------------------------------------------------------------------


def test_load_jsonl_skips_blank_lines_and_ignores_extra_keys(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(
        '{"text": "charged twice", "label": "billing", "id": 1}\n\n   \n'
        '{"text": "lost parcel", "label": "shipping"}\n',
        encoding="utf-8",
    )
    assert load_jsonl(path) == [
        Example("charged twice", "billing"),
        Example("lost parcel", "shipping"),
    ]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"text": "oops", "label": ', "line 3: not valid JSON"),
        ('["text", "label"]', "line 3: expected a JSON object"),
        ('{"text": "no label"}', "line 3: 'label' must be a non-empty string"),
        ('{"text": 42, "label": "billing"}', "line 3: 'text' must be a string"),
    ],
)
def test_load_jsonl_names_the_bad_line(tmp_path: Path, bad_line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"text": "charged twice", "label": "billing"}\n\n' + bad_line + "\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=message):
        load_jsonl(path)


# --- the LangChain chat model ----------------------------------------------------------------


def test_chat_model_answers_json_with_probabilities_and_usage(
    chat: LocalClassifierChatModel, classifier: TextClassifier
) -> None:
    text = "Where is my order?\n\nMy order #123456 was supposed to arrive on May 3."
    reply = chat.invoke([SystemMessage("Classify the ticket."), HumanMessage(text)])

    assert isinstance(reply, AIMessage)
    assert json.loads(reply.text) == {"label": "shipping"}
    probabilities = classifier.predict_proba(text)
    assert reply.response_metadata["model_name"] == "local:tickets"
    assert reply.response_metadata["model_version"] == "3"
    assert reply.response_metadata["probabilities"] == probabilities
    assert reply.response_metadata["confidence"] == max(probabilities.values())
    assert reply.usage_metadata == {"input_tokens": 14, "output_tokens": 1, "total_tokens": 15}


def test_chat_model_classifies_only_the_data_block(
    chat: LocalClassifierChatModel, classifier: TextClassifier
) -> None:
    messages = build_messages(
        instructions="You triage billing, technical, account, shipping and other tickets.",
        answer_format="a JSON object",
        data="The package arrived crushed and broken.",
        examples=[("an old example: I was charged twice", {"label": "billing"})],
    )
    reply = chat.invoke(messages)

    assert json.loads(reply.text) == {"label": "shipping"}
    expected = classifier.predict_proba("The package arrived crushed and broken.")
    assert reply.response_metadata["probabilities"] == expected
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == 6
    # The tag is new for every prompt; the answer does not depend on it.
    again = chat.invoke(
        build_messages(
            instructions="x", answer_format="y", data="The package arrived crushed and broken."
        )
    )
    assert again.response_metadata["probabilities"] == expected


def test_chat_model_reads_the_last_human_message(chat: LocalClassifierChatModel) -> None:
    reply = chat.invoke(
        [
            HumanMessage("I was charged twice for my subscription, please refund me."),
            AIMessage('{"label": "billing"}'),
            HumanMessage("The app crashes every time I open the dashboard on my Pixel 8."),
        ]
    )
    assert json.loads(reply.text) == {"label": "technical"}


def test_chat_model_refuses_a_conversation_without_a_human_message(
    chat: LocalClassifierChatModel,
) -> None:
    with pytest.raises(ValueError, match="human message"):
        chat.invoke([SystemMessage("Classify the ticket.")])


def test_chat_model_batches(chat: LocalClassifierChatModel) -> None:
    prompts: list[LanguageModelInput] = [
        "Please delete my account and all the data associated with it.",
        "Do you sell gift cards?",
        "My card keeps getting declined when I try to pay.",
    ]
    replies = chat.batch(prompts)

    assert [json.loads(r.text)["label"] for r in replies] == ["account", "other", "billing"]
    assert [r.content for r in replies] == [chat.invoke(p).content for p in prompts]


def test_usage_callback_counts_every_call(chat: LocalClassifierChatModel) -> None:
    with get_usage_metadata_callback() as callback:
        chat.invoke("one two three")
        chat.batch(["four five", "six"])

    # 3 + 2 + 1 input tokens, one output token per call.
    assert callback.usage_metadata == {
        "local:tickets": {"input_tokens": 6, "output_tokens": 3, "total_tokens": 9}
    }


def test_chat_model_is_deterministic_and_says_so(chat: LocalClassifierChatModel) -> None:
    assert chat.deterministic is True
    assert chat._llm_type == "hitl-local-classifier"
    text = "Tracking not updating\n\nThe DHL tracking number hasn't updated in 5 days."
    assert chat.invoke(text).response_metadata == chat.invoke(text).response_metadata
