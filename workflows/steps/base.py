"""The one small interface every step kind implements, and the hooks a kind may call.

A kind is one module in `workflows/steps/` exposing `KIND`, listed in `HITL_STEP_KINDS`.
The engine never changes for a new kind, and a kind never imports the services: what it may
ask of them is the narrow `StepHooks` interface below, handed to it in its context and to
its `on_record` / `on_cancel` hooks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from workflows import expressions

if TYPE_CHECKING:
    from workflows.ai.seam import LocalModelStore
    from workflows.models import Run, StepRun


@dataclass(frozen=True)
class Usage:
    """What a step spent: recorded on its StepRun."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    latency_ms: int | None = None


@dataclass(frozen=True)
class Completed:
    output: Any
    outcome: str = ""
    confidence: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    usage: Usage | None = None


@dataclass(frozen=True)
class Waiting:
    """Pause the run until `run_resume` completes this step."""

    reason: str
    meta: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    confidence: float | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Failed:
    error: str
    retryable: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    usage: Usage | None = None


Result = Completed | Waiting | Failed


@dataclass(frozen=True)
class StepView:
    """What later steps and expressions may see of an earlier step."""

    output: Any
    confidence: float | None
    outcome: str

    def as_context(self) -> dict[str, Any]:
        return {"output": self.output, "confidence": self.confidence, "outcome": self.outcome}


@dataclass(frozen=True)
class ReviewExample:
    """A past reviewed item given to an `ai` step as a few-shot example: the data its step
    saw, the final human output, and how similar it is to the item at hand (cosine, 0-1)."""

    run_id: int
    input: Any
    output: Any
    similarity: float


class StepHooks(Protocol):
    """What a step kind may ask of the engine's services, and nothing more.

    The services implement it (`workflows.services.hooks`) and pass it in; kinds never
    import the services, so the services can import the kinds' modules without a cycle.
    """

    def daily_cap(self, workflow_id: int) -> Decimal | None:
        """The workflow's daily model spend cap in USD, or None for no cap."""

    def spent_today(self, workflow_id: int, now: datetime) -> Decimal:
        """Model spend of the workflow's steps that finished on `now`'s day (UTC)."""

    @property
    def local_models(self) -> LocalModelStore:
        """Where `local:` model specs are looked up."""

    def review_examples(
        self, *, workflow_id: int, step_id: str, data: Any, k: int
    ) -> list[ReviewExample]:
        """The k reviewed items of the workflow's step most similar to `data`, most similar
        first: training side of the evaluation split only, rejections left out."""

    def gate_record(self, *, run: Run, step_run: StepRun, waiting: bool, now: datetime) -> None:
        """Audit a gate's routing and, when it waits, open its review task (in-transaction)."""

    def review_tasks_cancel(self, *, step_run: StepRun, now: datetime) -> int:
        """Close the live review task of a gate whose run is being cancelled."""


@dataclass(frozen=True)
class StepContext:
    run_id: int
    step_run_id: int
    workflow_id: int
    workflow_slug: str
    version_id: int
    step_id: str
    attempt: int
    config: Any
    input: Any
    steps: dict[str, StepView]
    now: datetime
    hooks: StepHooks

    def expression_context(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "steps": {sid: view.as_context() for sid, view in self.steps.items()},
        }

    @functools.cached_property
    def activation(self) -> expressions.Activation:
        """The expression context converted to CEL once, for every expression of the step."""
        return expressions.prepare(self.expression_context())


class KindConfig(BaseModel):
    """Base for per-kind configuration: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StepKind:
    name: ClassVar[str]
    queue: ClassVar[str] = "default"
    # Outcomes the kind can produce, for validating `next:` branches; None means any string.
    outcomes: ClassVar[frozenset[str] | None] = frozenset()
    Config: ClassVar[type[KindConfig]] = KindConfig
    # How a completed step is recorded. A kind without a record hook takes the fast path: one
    # SQL statement completes the step, advances the run, writes the next step and audits
    # (`workflows.services.fastpath`). A kind that needs effects inside the recording
    # transaction (a review task, say) overrides `on_record` AND sets `record_hook = True`:
    # its results then go through the ORM path, which calls the hook. Overriding one without
    # the other is refused when the class is defined, so a hook is never silently skipped.
    record_hook: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.on_record is not StepKind.on_record and not cls.record_hook:
            raise TypeError(
                f"{cls.__name__} overrides on_record: set `record_hook = True` so that its "
                "completed steps are recorded through the path that calls it"
            )

    def validate(self, config: dict[str, Any]) -> KindConfig:
        """Parse and check the step's config; raise pydantic.ValidationError or ValueError."""
        return self.Config.model_validate(config)

    def execute(self, ctx: StepContext) -> Result:
        raise NotImplementedError

    def output_schema(self, config: Any) -> dict[str, Any] | None:
        """The JSON Schema of the step's output, if the kind knows it (used to check edits)."""
        return None

    def check_in_definition(
        self, config: Any, step_id: str, earlier: Mapping[str, str]
    ) -> list[str]:
        """Cross-step checks at validation time; `earlier` maps the preceding steps' ids to
        their kinds, in order."""
        return []

    def on_record(
        self, *, step_run: StepRun, result: Result, run: Run, now: datetime, hooks: StepHooks
    ) -> None:
        """Runs inside the transaction that records `result`, for effects such as a review task.

        Only called for kinds that set `record_hook`. The caller holds the run's row lock;
        `step_run` is already updated.
        """

    def on_cancel(self, *, step_run: StepRun, now: datetime, hooks: StepHooks) -> None:
        """Runs inside the transaction that cancels the step's run."""
