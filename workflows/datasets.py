"""What one dataset line says about one gate item: a record, or a chat fine-tuning example.

The services read gate items from the database in batches (`workflows.services.datasets`)
and hand each here as a plain `GateItem`; nothing in this module reads the ORM, so what a
line contains is decided in one place and tested without a database. docs/datasets.md
describes every field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langchain_core.messages import BaseMessage

from workflows import expressions
from workflows.ai.prompting import build_messages
from workflows.canonical import canonical_json, sha256_hex
from workflows.steps.base import StepView

FORMATS = ("records", "chat")
# Where the gate routed an item. "below_threshold" includes items without a confidence (the
# gate's `no_confidence`): with no score, nothing can pass a threshold.
REGIONS = ("auto", "audit", "below_threshold", "rule")
# The final decisions a record can carry; an escalation is never final (the item is exported
# once, with the escalation level's decision).
ACTIONS = ("approve", "edit", "reject")
# Chat roles of LangChain's message types, as chat fine-tuning files name them.
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


@dataclass(frozen=True)
class GateItem:
    """One settled gate item, as read from its run, gate, guarded step and final decision."""

    run_id: int
    workflow: str
    workflow_version: int
    run_input: Any
    step: str
    gate_meta: dict[str, Any]
    guarded_step: str | None
    guarded_kind: str | None
    guarded_output: Any
    guarded_confidence: float | None
    guarded_meta: dict[str, Any]
    # Routed (first task opened, or auto-approved) and, for reviewed items, claimed and decided.
    created_at: datetime | None
    # The reviewed side; all None for an auto-approved item.
    task_id: int | None = None
    decision_id: int | None = None
    action: str | None = None
    edited_output: Any = None
    reason: str = ""
    reviewer: str | None = None
    shown: dict[str, Any] = field(default_factory=dict)
    escalated: bool = False
    claimed_at: datetime | None = None
    decided_at: datetime | None = None
    # The guarded AI step's parsed config (an `AIConfig`), when the guarded step is one.
    ai_config: Any = None
    # The steps completed before the guarded one ran: what its `input` expression saw.
    earlier: dict[str, StepView] = field(default_factory=dict)

    @property
    def reviewed(self) -> bool:
        return self.decision_id is not None

    @property
    def shown_output(self) -> Any:
        """The AI answer the reviewer saw (their snapshot), or the one auto-approved."""
        return self.shown.get("output", self.guarded_output)

    @property
    def final_output(self) -> Any:
        """What the gate passed on: the AI answer approved, the edit, or None when rejected."""
        if not self.reviewed:
            return self.guarded_output
        if self.action == "edit":
            return self.edited_output
        if self.action == "approve":
            return self.shown_output
        return None


def region_of(gate_meta: dict[str, Any]) -> str:
    """The gate region of an item, from what the gate recorded when it routed it."""
    if gate_meta.get("decision") == "auto_approved":
        return "auto"
    reason = gate_meta.get("reason") or ""
    if reason == "audit_sample":
        return "audit"
    if reason.startswith("rule:"):
        return "rule"
    return "below_threshold"


def prompt_version(config: Any) -> str:
    """A short digest of what an AI step asks: its prompt, input, examples and answer format.

    Two items with the same prompt version were asked the same question, whichever workflow
    version they ran on; the AI step records no such number itself, and its config is fixed
    by the version the run pinned.
    """
    asked = {
        "prompt": config.prompt,
        "input": config.input,
        "examples": [e.model_dump() for e in config.examples],
        "output": config.output.model_dump(by_alias=True, exclude_none=True),
    }
    return sha256_hex(canonical_json(asked))[:16]


def record(item: GateItem, split: str) -> dict[str, Any]:
    """The `records` line of an item."""
    final = item.final_output
    label = final.get("label") if isinstance(final, dict) else None
    shown, meta = item.shown, item.guarded_meta
    return {
        "run": item.run_id,
        "task": item.task_id,
        "decision": item.decision_id,
        "workflow": item.workflow,
        "workflow_version": item.workflow_version,
        "step": item.step,
        "guarded_step": item.guarded_step,
        "input": item.run_input,
        "shown_output": item.shown_output,
        "final_output": final,
        "label": label if isinstance(label, str) else None,
        "reviewed": item.reviewed,
        "action": item.action,
        "reason": item.reason if item.reviewed else None,
        "reviewer": item.reviewer,
        "escalated": item.escalated,
        "model": shown.get("model", meta.get("model")),
        "model_version": shown.get("model_version", meta.get("model_version")),
        "prompt_version": prompt_version(item.ai_config) if item.ai_config else None,
        "confidence": shown.get("confidence", item.guarded_confidence),
        "region": region_of(item.gate_meta),
        "gate_reason": item.gate_meta.get("reason"),
        "threshold": item.gate_meta.get("threshold"),
        "audit_rate": item.gate_meta.get("audit_rate"),
        "split": split,
        "created_at": _iso(item.created_at),
        "claimed_at": _iso(item.claimed_at),
        "decided_at": _iso(item.decided_at),
    }


class Skip(Exception):
    """Why an item has no chat line: `rejected` (no final output) or `no_prompt`."""


def chat(item: GateItem) -> dict[str, Any]:
    """The `chat` line of an item: the guarded AI step's own prompt, then the final output.

    The prompt is rebuilt with the step's builder (`build_messages`), so instructions, the
    answer format, the few-shot examples and the untrusted-data wrapping are exactly what the
    step sends; only the data block's random tag differs, as it does on every call.
    """
    final = item.final_output
    if final is None:
        raise Skip("rejected")
    config = item.ai_config
    data = step_data(item)
    messages = build_messages(
        instructions=config.prompt,
        answer_format=config.output.describe(),
        data=data,
        examples=[(e.input, e.output) for e in config.fixed_examples()],
    )
    answer = json.dumps(final, ensure_ascii=False)
    return {"messages": [*map(_message, messages), {"role": "assistant", "content": answer}]}


def step_data(item: GateItem) -> Any:
    """The data the guarded `ai` step put in its prompt: its `input` expression over the run's
    input and the steps it saw. Raises Skip("no_prompt") when there was no such prompt."""
    config = item.ai_config
    if config is None:
        raise Skip("no_prompt")
    context = {
        "input": item.run_input,
        "steps": {sid: view.as_context() for sid, view in item.earlier.items()},
    }
    try:
        return expressions.evaluate(config.input, expressions.prepare(context))
    except expressions.ExpressionError:
        # The step itself failed on this input, so there was no prompt to learn from.
        raise Skip("no_prompt") from None


def _message(message: BaseMessage) -> dict[str, str]:
    return {"role": _ROLES[message.type], "content": str(message.content)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
