"""The one small interface every step kind implements.

A kind is one module in `workflows/steps/` exposing `KIND`, listed in `HITL_STEP_KINDS`.
The engine never changes for a new kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
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

    def expression_context(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "steps": {sid: view.as_context() for sid, view in self.steps.items()},
        }


class KindConfig(BaseModel):
    """Base for per-kind configuration: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StepKind:
    name: ClassVar[str]
    queue: ClassVar[str] = "default"
    # Outcomes the kind can produce, for validating `next:` branches; None means any string.
    outcomes: ClassVar[frozenset[str] | None] = frozenset()
    Config: ClassVar[type[KindConfig]] = KindConfig

    def validate(self, config: dict[str, Any]) -> KindConfig:
        """Parse and check the step's config; raise pydantic.ValidationError or ValueError."""
        return self.Config.model_validate(config)

    def execute(self, ctx: StepContext) -> Result:
        raise NotImplementedError

    def output_schema(self, config: Any) -> dict[str, Any] | None:
        """The JSON Schema of the step's output, if the kind knows it (used to check edits)."""
        return None

    def check_in_definition(
        self, config: Any, step_id: str, earlier: list[tuple[str, str]]
    ) -> list[str]:
        """Cross-step checks at validation time; `earlier` is (id, kind) of preceding steps."""
        return []

    def on_record(self, *, step_run: StepRun, result: Result, run: Run, now: datetime) -> None:
        """Runs inside the transaction that records `result`, for effects such as a review task.

        The caller holds the run's row lock; `step_run` is already updated.
        """

    def on_cancel(self, step_run: StepRun, now: datetime) -> None:
        """Runs inside the transaction that cancels the step's run."""
