"""The API's bodies: what clients send (`*In`, `*Filters`) and what they get back (`*Out`).

Inputs are strict: unknown fields are refused (a misspelt field is a 422, not ignored), ids
and numbers stay within their columns' ranges, and text that PostgreSQL cannot store is
refused, so that nothing a client sends reaches the database as an error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from workflows.models import Decision, ReviewTask, Run, StepRun, Workflow, WorkflowVersion
from workflows.models.review import REVIEW_ACTIONS
from workflows.selectors_quorum import QuorumView

BIGINT = 2**63 - 1
INT = 2**31 - 1
SLUG_PATTERN = r"^[-a-zA-Z0-9_]{1,80}$"
STEP_PATTERN = r"^[-a-zA-Z0-9_]{1,64}$"


def _utc(value: datetime) -> datetime:
    """An aware time in UTC: a naive one is read as UTC, and one that UTC cannot hold (year
    1 with a positive offset) is refused rather than overflowing in the query."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range in UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
# Text PostgreSQL can store: no NUL. A pattern rather than a check in code, so that the
# OpenAPI document says so too (and fuzzers try it).
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
RunStatus = Literal["pending", "running", "waiting", "completed", "failed", "cancelled"]
TaskStatus = Literal["open", "claimed", "decided", "escalated", "cancelled"]
Action = Literal["approve", "reject", "edit", "escalate"]
assert set(Action.__args__) == set(REVIEW_ACTIONS)  # type: ignore[attr-defined]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- Errors and pages ----------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: `not_found`, `missing_scope` ...")
    message: str = Field(description="For people; safe to show.")
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorDetail


# --- Workflows -----------------------------------------------------------------------------


class WorkflowOut(BaseModel):
    slug: str
    name: str
    description: str
    active_version: int | None
    input_schema: dict[str, Any] | None = Field(description="The active version's input schema.")
    created_at: datetime

    @classmethod
    def of(cls, workflow: Workflow) -> WorkflowOut:
        active = workflow.active_version
        return cls(
            slug=workflow.slug,
            name=workflow.name,
            description=workflow.description,
            active_version=active.number if active else None,
            input_schema=active.definition.get("input_schema") if active else None,
            created_at=workflow.created_at,
        )


class WorkflowPage(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None


class VersionOut(BaseModel):
    number: int
    status: str
    active: bool
    content_hash: str
    created_at: datetime
    published_at: datetime | None

    @classmethod
    def of(cls, version: WorkflowVersion, workflow: Workflow) -> VersionOut:
        return cls(
            number=version.number,
            status=version.status,
            active=version.pk == workflow.active_version_id,
            content_hash=version.content_hash,
            created_at=version.created_at,
            published_at=version.published_at,
        )


class VersionDetailOut(VersionOut):
    definition: dict[str, Any]
    source: str


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None


# --- Runs ----------------------------------------------------------------------------------


class RunStartIn(In):
    input: Any = Field(description="The run's input; validated against the input schema.")
    version: int | None = Field(
        None, ge=1, le=INT, description="A published version number; the active one if omitted."
    )
    callback_url: str | None = Field(
        None,
        max_length=2000,
        description="Where this run's events go: must be exactly the URL of one of the "
        "workflow's active webhook endpoints (an admin configures them and their secrets).",
    )


class RunCancelIn(In):
    reason: Text = Field("", max_length=2000)


class RunResumeIn(In):
    output: Any = None
    outcome: Text = Field("", max_length=32, description="Routes the run (`next:` branches).")
    step: str | None = Field(
        None, pattern=STEP_PATTERN, description="The wait step; the run's waiting one if omitted."
    )


class RunFilters(In):
    workflow: Slug | None = None
    status: RunStatus | None = None
    outcome: Literal["approved", "rejected", "none"] | None = Field(
        None, description="`none`: runs no step has settled yet."
    )
    created_after: UtcDatetime | None = Field(None, description="Inclusive.")
    created_before: UtcDatetime | None = Field(None, description="Exclusive.")
    cursor: str | None = Field(None, max_length=1000)
    limit: int = Field(50, ge=1, le=100)


class CostOut(BaseModel):
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: str = Field(description="A decimal number, as text so that no digit is lost.")
    latency_ms: int | None

    @classmethod
    def of(cls, step: StepRun) -> CostOut:
        return cls(
            calls=step.calls,
            input_tokens=step.input_tokens,
            output_tokens=step.output_tokens,
            cost_usd=f"{Decimal(step.cost_usd):f}",
            latency_ms=step.latency_ms,
        )


class StepOut(BaseModel):
    step_id: str
    kind: str
    position: int
    status: str
    attempts: int
    outcome: str
    output: Any
    confidence: float | None
    cost: CostOut
    waiting_for: str | None = Field(description="Why a waiting step waits.")
    error: str
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, step: StepRun) -> StepOut:
        return cls(
            step_id=step.step_id,
            kind=step.kind,
            position=step.position,
            status=step.status,
            attempts=step.attempts,
            outcome=step.outcome,
            output=step.output,
            confidence=step.confidence,
            cost=CostOut.of(step),
            waiting_for=(step.meta or {}).get("waiting_for")
            if step.status == StepRun.Status.WAITING
            else None,
            error=step.error,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )


class DecisionOut(BaseModel):
    task: int
    action: str
    reviewer: str
    reason: str
    edited_output: Any
    decided_at: datetime

    @classmethod
    def of(cls, decision: Decision) -> DecisionOut:
        return cls(
            task=decision.task_id,
            action=decision.action,
            reviewer=decision.reviewer.get_username(),
            reason=decision.reason,
            edited_output=decision.edited_output,
            decided_at=decision.decided_at,
        )


class ReviewOut(BaseModel):
    task: int
    step: str = Field(description="The gate that waits for the decision.")
    status: TaskStatus
    reason: str
    created_at: datetime
    closed_at: datetime | None
    decision: DecisionOut | None


class RunSummaryOut(BaseModel):
    id: int
    workflow: str
    version: int
    status: RunStatus
    outcome: str
    source: str
    started_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def fields_of(cls, run: Run) -> dict[str, Any]:
        return {
            "id": run.pk,
            "workflow": run.workflow.slug,
            "version": run.version.number,
            "status": run.status,
            "outcome": run.outcome,
            "source": run.source,
            "started_by": run.started_by.get_username() if run.started_by else None,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "finished_at": run.finished_at,
        }

    @classmethod
    def of(cls, run: Run) -> RunSummaryOut:
        return cls(**cls.fields_of(run))


class RunOut(RunSummaryOut):
    callback_url: str | None = Field(description="The endpoint the run named, if it did.")
    input: Any
    output: Any = Field(description="The last step's output once the run has completed.")
    error: str
    steps: list[StepOut]
    reviews: list[ReviewOut] = Field(description="The run's review tasks and their decisions.")


class RunPage(BaseModel):
    items: list[RunSummaryOut]
    next_cursor: str | None


# --- Review tasks --------------------------------------------------------------------------


class TaskFilters(In):
    workflow: Slug | None = None
    status: TaskStatus | None = Field(None, description="Open and claimed tasks if omitted.")
    min_priority: int | None = Field(None, ge=-INT - 1, le=INT)
    reason: Text | None = Field(
        None, max_length=120, description="`rule` matches every `rule:<name>`."
    )
    mine: bool = Field(False, description="Tasks claimed by or assigned to you.")
    actionable: bool = Field(False, description="Only the tasks you may decide.")
    cursor: str | None = Field(None, max_length=1000)
    limit: int = Field(50, ge=1, le=100)


class TaskSummaryOut(BaseModel):
    id: int
    workflow: str
    run: int
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

    @classmethod
    def fields_of(cls, task: ReviewTask, *, can_decide: bool) -> dict[str, Any]:
        return {
            "id": task.pk,
            "workflow": task.workflow.slug,
            "run": task.run_id,
            "step": task.step_run.step_id,
            "status": task.status,
            "audience": task.audience,
            "reason": task.reason,
            "priority": task.priority,
            "due_at": task.due_at,
            "created_at": task.created_at,
            "closed_at": task.closed_at,
            "assignee": task.assignee.get_username() if task.assignee else None,
            "claimed_by": task.claimed_by.get_username() if task.claimed_by else None,
            "claim_expires_at": task.claim_expires_at,
            "can_decide": can_decide,
        }


class TaskPage(BaseModel):
    items: list[TaskSummaryOut]
    next_cursor: str | None


class AnswerOut(BaseModel):
    seat: int
    reviewer: str
    action: str
    output: Any = Field(description="The AI's answer approved, the edit, or null.")
    reason: str
    decided_at: datetime


class QuorumOut(BaseModel):
    seat: int = Field(description="This task's seat, 1 to `of`; 0 for the group's escalation.")
    of: int
    required: int = Field(description="How many seats must give the same answer.")
    decided: int = Field(description="How many seats have been decided.")
    answers: list[AnswerOut] | None = Field(
        description="Every seat's answer; null until you have decided a seat of this review"
        " yourself (or it has settled), so that no reviewer is anchored by another."
    )

    @classmethod
    def of_view(cls, view: QuorumView | None) -> QuorumOut | None:
        if view is None:
            return None
        answers = view.answers
        return cls(
            seat=view.seat,
            of=view.of,
            required=view.required,
            decided=view.decided,
            answers=None
            if answers is None
            else [
                AnswerOut(
                    seat=a.seat,
                    reviewer=a.reviewer,
                    action=a.action,
                    output=a.output,
                    reason=a.reason,
                    decided_at=a.decided_at,
                )
                for a in answers
            ],
        )


class TaskOut(TaskSummaryOut):
    input: Any
    shown: dict[str, Any] = Field(
        description="The AI's answer and the evidence behind it, as a reviewer sees it."
    )
    cost: dict[str, Any]
    output_schema: dict[str, Any] | None = Field(description="What an edited output must match.")
    actions: list[Action] = Field(description="What may be done with the task.")
    claimed_by_me: bool
    can_reassign: bool
    waits_for: str
    escalated_from: int | None
    escalated_to: int | None
    decisions: list[DecisionOut]
    final_output: Any = Field(description="The output the decision sent on to the gate.")
    steps: list[StepOut]
    quorum: QuorumOut | None = Field(
        None, description="For a seat of a k-of-m review (or its escalation): where it stands."
    )


class DecideIn(In):
    action: Action
    reason: Text = Field("", max_length=Decision.MAX_REASON)
    output: Any = Field(None, description="Only for `edit`: the whole edited output.")


def responses(ok: Any, *errors: int, status: int = 200) -> dict[int, Any]:
    """An operation's documented answers: `ok`, and the error body for each status in
    `errors` plus those every operation can give (401 without a usable token, 403 without
    the scope, 422 for a request that does not validate)."""
    return {status: ok, **{code: ErrorOut for code in sorted({401, 403, 422, *errors})}}
