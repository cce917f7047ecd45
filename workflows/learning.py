"""The learning loop's rules: what a reviewed item teaches, and when a retrained model wins.

Pure functions of gate items (`workflows.datasets.GateItem`) and metrics; the services read
the items and store the models (`workflows.services.learning`). No ORM here, so each rule is
tested without a database and stated in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workflows.ai import seam
from workflows.ai.classifier import Example
from workflows.ai.prompting import render_data
from workflows.datasets import GateItem, Skip, step_data
from workflows.splits import split_key

# Why a retraining kept the current version (or promoted the candidate).
NOT_WORSE = "not_worse"
WORSE = "worse"
UNCHANGED = "unchanged"
NO_EVALUATION_ITEMS = "no_evaluation_items"
CANNOT_TRAIN = "cannot_train"


@dataclass(frozen=True)
class DecisionExample:
    """A reviewed item as a training example: its item key (the split's), text and label."""

    item: str
    example: Example


def uses_local_model(config: Any, name: str) -> bool:
    """Whether an `ai` step's config asks `local:<name>` (any version) in any tier."""
    for tier in config.tiers():
        if seam.is_local(tier.model) and seam.parse_local_spec(tier.model)[0] == name:
            return True
    return False


def classifier_text(data: Any) -> str:
    """What the local classifier reads of a prompt's data block (`workflows.ai.local`)."""
    return render_data(data).strip()


def decision_example(item: GateItem) -> DecisionExample | None:
    """The example a reviewed item teaches: the text the model classified and the final label
    (the AI's when approved, the reviewer's when edited). None for a rejection, an item not
    reviewed, an answer without a string label, or an item with no prompt."""
    if not item.reviewed:
        return None
    final = item.final_output
    label = final.get("label") if isinstance(final, dict) else None
    if not isinstance(label, str) or not label:
        return None
    try:
        data = step_data(item)
    except Skip:
        return None
    key = split_key(item.workflow, item.run_input, item.run_id)
    return DecisionExample(item=key, example=Example(text=classifier_text(data), label=label))


def merge_examples(
    stored: Sequence[Mapping[str, Any]], decisions: Iterable[DecisionExample]
) -> list[dict[str, Any]]:
    """The stored training set with the decisions' examples, one example per item.

    `decisions` come oldest first: a later decision on the same item replaces the earlier
    one. A decision also replaces a stored example of its item, or with exactly its text (a
    file's example the reviewer has now corrected), so no text is taught two labels at once.
    """
    latest: dict[str, DecisionExample] = {}
    for decision in decisions:
        latest.pop(decision.item, None)
        latest[decision.item] = decision
    taught_items = set(latest)
    taught_texts = {d.example.text for d in latest.values()}
    merged = [
        dict(row)
        for row in stored
        if row.get("item") not in taught_items and row["text"] not in taught_texts
    ]
    merged.extend(
        {"text": d.example.text, "label": d.example.label, "item": d.item} for d in latest.values()
    )
    return merged


def promotion(
    current: Mapping[str, float], candidate: Mapping[str, float], *, tolerance: float
) -> str:
    """NOT_WORSE when the candidate's accuracy is at least the current's and its expected
    calibration error at most the current's plus `tolerance`; WORSE otherwise.

    Accuracy gets no tolerance: a reviewer feels every extra wrong answer. Calibration error
    on a few hundred items moves by a point or two from noise alone, hence the slack.
    """
    if candidate["accuracy"] < current["accuracy"]:
        return WORSE
    if candidate["ece"] > current["ece"] + tolerance:
        return WORSE
    return NOT_WORSE
