"""What the API answers, as frozen dataclasses (the server's schemas: `hitl/api/schemas.py`).

Times are aware `datetime`s, money is `Decimal` (the API sends it as text so that no digit is
lost), and the JSON values a workflow defines (inputs, outputs, a task's evidence) stay plain
JSON. Every object keeps the JSON it was read from in `raw`, so a field this version of the
client does not know yet is still reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

RunStatus = Literal["pending", "running", "waiting", "completed", "failed", "cancelled"]
TaskStatus = Literal["open", "claimed", "decided", "escalated", "cancelled"]
Action = Literal["approve", "reject", "edit", "escalate"]
# A run in one of these will not change again.
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

Json = dict[str, Any]


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time as the server writes it (`...Z` or `+00:00`); Python 3.10's
    `fromisoformat` does not take the `Z`."""
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _time_or_none(value: Any) -> datetime | None:
    return None if value is None else parse_time(value)


@dataclass(frozen=True, kw_only=True)
class Workflow:
    slug: str
    name: str
    description: str
    active_version: int | None
    # The active version's input schema (JSON Schema), or None without a published version.
    input_schema: Json | None
    created_at: datetime
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Workflow:
        return cls(
            slug=data["slug"],
            name=data["name"],
            description=data["description"],
            active_version=data["active_version"],
            input_schema=data["input_schema"],
            created_at=parse_time(data["created_at"]),
            raw=data,
        )


@dataclass(frozen=True, kw_only=True)
class Cost:
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    latency_ms: int | None

    @classmethod
    def from_json(cls, data: Json) -> Cost:
        return cls(
            calls=data["calls"],
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            cost_usd=Decimal(data["cost_usd"]),
            latency_ms=data["latency_ms"],
        )


@dataclass(frozen=True, kw_only=True)
class Step:
    step_id: str
    kind: str
    position: int
    status: str
    attempts: int
    outcome: str
    output: Any
    confidence: float | None
    cost: Cost
    # Why a waiting step waits (a `wait` step's reason), else None.
    waiting_for: str | None
    error: str
    started_at: datetime | None
    finished_at: datetime | None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Step:
        return cls(
            step_id=data["step_id"],
            kind=data["kind"],
            position=data["position"],
            status=data["status"],
            attempts=data["attempts"],
            outcome=data["outcome"],
            output=data["output"],
            confidence=data["confidence"],
            cost=Cost.from_json(data["cost"]),
            waiting_for=data["waiting_for"],
            error=data["error"],
            started_at=_time_or_none(data["started_at"]),
            finished_at=_time_or_none(data["finished_at"]),
            raw=data,
        )


@dataclass(frozen=True, kw_only=True)
class Decision:
    task: int
    action: Action
    reviewer: str
    reason: str
    edited_output: Any
    decided_at: datetime

    @classmethod
    def from_json(cls, data: Json) -> Decision:
        return cls(
            task=data["task"],
            action=cast(Action, data["action"]),
            reviewer=data["reviewer"],
            reason=data["reason"],
            edited_output=data["edited_output"],
            decided_at=parse_time(data["decided_at"]),
        )


@dataclass(frozen=True, kw_only=True)
class Review:
    """A run's review task, as the run shows it: which gate, and the decision if any."""

    task: int
    step: str
    status: TaskStatus
    reason: str
    created_at: datetime
    closed_at: datetime | None
    decision: Decision | None

    @classmethod
    def from_json(cls, data: Json) -> Review:
        decision = data["decision"]
        return cls(
            task=data["task"],
            step=data["step"],
            status=cast(TaskStatus, data["status"]),
            reason=data["reason"],
            created_at=parse_time(data["created_at"]),
            closed_at=_time_or_none(data["closed_at"]),
            decision=None if decision is None else Decision.from_json(decision),
        )


def _run_summary_fields(data: Json) -> Json:
    return {
        "id": data["id"],
        "workflow": data["workflow"],
        "version": data["version"],
        "status": cast(RunStatus, data["status"]),
        "outcome": data["outcome"],
        "source": data["source"],
        "started_by": data["started_by"],
        "created_at": parse_time(data["created_at"]),
        "updated_at": parse_time(data["updated_at"]),
        "finished_at": _time_or_none(data["finished_at"]),
        "raw": data,
    }


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """A run as lists show it (`list_runs`)."""

    id: int
    workflow: str
    version: int
    status: RunStatus
    # "approved", "rejected" or "" (no step has settled it yet).
    outcome: str
    # "api", "webhook", "desk" ...
    source: str
    started_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: Json) -> RunSummary:
        return cls(**_run_summary_fields(data))


@dataclass(frozen=True, kw_only=True)
class Run(RunSummary):
    """A run with its steps: `output` is the last step's output once it has completed."""

    input: Any
    output: Any
    error: str
    steps: list[Step]
    reviews: list[Review]
    # The endpoint the run named for its events (`start_run(callback_url=...)`), if any.
    callback_url: str | None = None

    @classmethod
    def from_json(cls, data: Json) -> Run:
        return cls(
            **_run_summary_fields(data),
            callback_url=data.get("callback_url"),
            input=data["input"],
            output=data["output"],
            error=data["error"],
            steps=[Step.from_json(step) for step in data["steps"]],
            reviews=[Review.from_json(review) for review in data["reviews"]],
        )


def _task_summary_fields(data: Json) -> Json:
    return {
        "id": data["id"],
        "workflow": data["workflow"],
        "run": data["run"],
        "step": data["step"],
        "status": cast(TaskStatus, data["status"]),
        "audience": data["audience"],
        "reason": data["reason"],
        "priority": data["priority"],
        "due_at": _time_or_none(data["due_at"]),
        "created_at": parse_time(data["created_at"]),
        "closed_at": _time_or_none(data["closed_at"]),
        "assignee": data["assignee"],
        "claimed_by": data["claimed_by"],
        "claim_expires_at": _time_or_none(data["claim_expires_at"]),
        "can_decide": data["can_decide"],
        "raw": data,
    }


@dataclass(frozen=True, kw_only=True)
class TaskSummary:
    """A review task as the queue lists it (`list_tasks`)."""

    id: int
    workflow: str
    run: int
    # The gate that waits for the decision.
    step: str
    status: TaskStatus
    audience: str
    reason: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    closed_at: datetime | None
    assignee: str | None
    claimed_by: str | None
    claim_expires_at: datetime | None
    can_decide: bool
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> TaskSummary:
        return cls(**_task_summary_fields(data))


@dataclass(frozen=True, kw_only=True)
class Task(TaskSummary):
    """A task as the desk shows it: the input, the AI's answer and evidence (`shown`), what
    the token's user may do with it (`actions`), and the decisions so far."""

    input: Any
    shown: Json
    cost: Json
    # What an edited output must match.
    output_schema: Json | None
    actions: list[Action]
    claimed_by_me: bool
    can_reassign: bool
    waits_for: str
    escalated_from: int | None
    escalated_to: int | None
    decisions: list[Decision]
    # The output the decision sent on to the gate.
    final_output: Any
    steps: list[Step]

    @classmethod
    def from_json(cls, data: Json) -> Task:
        return cls(
            **_task_summary_fields(data),
            input=data["input"],
            shown=data["shown"],
            cost=data["cost"],
            output_schema=data["output_schema"],
            actions=[cast(Action, action) for action in data["actions"]],
            claimed_by_me=data["claimed_by_me"],
            can_reassign=data["can_reassign"],
            waits_for=data["waits_for"],
            escalated_from=data["escalated_from"],
            escalated_to=data["escalated_to"],
            decisions=[Decision.from_json(d) for d in data["decisions"]],
            final_output=data["final_output"],
            steps=[Step.from_json(step) for step in data["steps"]],
        )


@dataclass(frozen=True, kw_only=True)
class WebhookAccepted:
    """hitl's answer to a signed webhook: the run it started, or (`duplicate`) the run an
    earlier delivery with the same webhook-id started."""

    run: int
    status: RunStatus
    duplicate: bool
    # The delivery's webhook-id: send it again with the same payload to retry it later.
    webhook_id: str
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json, *, webhook_id: str) -> WebhookAccepted:
        return cls(
            webhook_id=webhook_id,
            run=data["run"],
            status=cast(RunStatus, data["status"]),
            duplicate=data["duplicate"],
            raw=data,
        )


@dataclass(frozen=True, kw_only=True)
class Event:
    """A verified callback: `id` is its webhook-id (the same on every attempt and on a
    redelivery: deduplicate on it), `type` e.g. "run.completed", `data` the event's body."""

    id: str
    type: str
    timestamp: datetime
    data: Json
    raw: Json = field(default_factory=dict, repr=False, compare=False)
