"""`ai`: an answer from a model, with inference-time scaling, confidence and cost.

Easy items get one cheap answer; hard ones get more samples (adaptive stopping) or a bigger
model (cascade), within a token budget and a call cap. Every result records the answer, its
confidence, all samples and votes, the tier that answered, and what it cost.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from workflows import expressions
from workflows.ai import seam
from workflows.ai.limits import RateLimited, take_calls
from workflows.ai.output import OutputError, OutputSpec
from workflows.ai.prompting import build_messages, estimate_tokens, render_data, shot_tokens
from workflows.ai.sampling import Spend, chat_sampler, is_transient, structured
from workflows.ai.scaling import Budget, TierSpec, run_cascade, validate_strategy
from workflows.steps.base import (
    Completed,
    Failed,
    KindConfig,
    Result,
    ReviewExample,
    StepContext,
    StepKind,
    Usage,
    Waiting,
)

Strategy = Literal["single", "best_of_n", "adaptive"]


class Tier(KindConfig):
    model: str = Field(min_length=3)
    strategy: Strategy = "single"
    n: int = Field(default=5, ge=1, le=64)
    cap: int = Field(default=16, ge=1, le=128)
    batch_size: int = Field(default=2, ge=1, le=32)
    c: float = Field(default=0.95, gt=0, le=1)
    threshold: float | None = Field(default=None, ge=0, le=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_000)

    def deterministic(self) -> bool:
        return seam.is_local(self.model) or self.temperature == 0


class Example(KindConfig):
    input: Any
    output: Any


class FromReviews(KindConfig):
    """Few-shot examples picked per item from past reviewed decisions (the services pick
    the `from_reviews` most similar; the step adds them while they fit in `max_tokens`)."""

    from_reviews: int = Field(ge=1, le=20)
    max_tokens: int = Field(default=1000, ge=1, le=32_000)


# How much of an example's input the step's record keeps, for the review desk.
_EXCERPT = 300


class AIConfig(KindConfig):
    # A `provider:model` spec, or tiers in order for a cascade.
    model: str | list[Tier]
    prompt: str = Field(min_length=1, description="Instructions; the item goes in as data.")
    # CEL over the run context: the data the model sees (default: the run's input).
    input: str = "input"
    # Fixed examples, optionally ending with one `{from_reviews: k, max_tokens: T}`.
    examples: list[Example | FromReviews] = Field(default_factory=list)
    output: OutputSpec
    strategy: Strategy | Literal["cascade"] = "single"
    n: int = Field(default=5, ge=1, le=64)
    cap: int = Field(default=16, ge=1, le=128)
    batch_size: int = Field(default=2, ge=1, le=32)
    c: float = Field(default=0.95, gt=0, le=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=32_000)
    token_budget: int | None = Field(default=None, ge=1)
    max_calls: int = Field(default=64, ge=1, le=1000)
    timeout: float | None = Field(default=None, gt=0, le=600)
    logprobs: bool = False

    @field_validator("examples", mode="before")
    @classmethod
    def _one_mapping(cls, value: Any) -> Any:
        # `examples: {from_reviews: 3}` alone, without fixed examples.
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check(self) -> AIConfig:
        expressions.check(self.input)
        for example in self.fixed_examples():
            self.output.validate_value(example.output)
        picked = [i for i, e in enumerate(self.examples) if isinstance(e, FromReviews)]
        if picked and picked != [len(self.examples) - 1]:
            raise ValueError("examples: from_reviews must come last, once, after fixed examples")
        if picked and all(seam.is_local(tier.model) for tier in self.tiers()):
            raise ValueError(
                "examples: from_reviews is useless here, a local model reads no examples"
            )
        for index, tier in enumerate(self.tiers()):
            where = f"tier {index} ({tier.model})" if isinstance(self.model, list) else "model"
            if tier.model.startswith(seam.LOCAL_PREFIX):
                seam.parse_local_spec(tier.model)
            elif ":" not in tier.model:
                raise ValueError(f"{where}: name the provider, e.g. openai:gpt-4o-mini")
            try:
                validate_strategy(tier.strategy, tier.deterministic())
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if isinstance(self.model, list):
            if self.strategy not in ("single", "cascade"):
                raise ValueError("with a list of tiers, set the strategy per tier")
            if not self.model:
                raise ValueError("a cascade needs at least one tier")
            for index, tier in enumerate(self.model[:-1]):
                if tier.threshold is None:
                    raise ValueError(f"tier {index} ({tier.model}) needs a threshold")
        elif self.strategy == "cascade":
            raise ValueError("strategy cascade needs `model` to be a list of tiers")
        return self

    def fixed_examples(self) -> list[Example]:
        return [e for e in self.examples if isinstance(e, Example)]

    def from_reviews(self) -> FromReviews | None:
        return next((e for e in self.examples if isinstance(e, FromReviews)), None)

    def tiers(self) -> list[Tier]:
        if isinstance(self.model, list):
            return self.model
        return [
            Tier(
                model=self.model,
                strategy=self.strategy,
                n=self.n,
                cap=self.cap,
                batch_size=self.batch_size,
                c=self.c,
                temperature=self.temperature,
            )
        ]


class AIKind(StepKind):
    name = "ai"
    queue = "ai"
    outcomes = frozenset()
    Config = AIConfig

    def output_schema(self, config: Any) -> dict[str, Any] | None:
        return config.output.json_schema()

    def execute(self, ctx: StepContext) -> Result:
        config: AIConfig = ctx.config
        cap = ctx.hooks.daily_cap(ctx.workflow_id)
        if cap is not None:
            spent = ctx.hooks.spent_today(ctx.workflow_id, ctx.now)
            if spent >= cap:
                return Waiting(
                    reason="budget",
                    meta={"budget": {"spent_usd": str(spent), "cap_usd": str(cap)}},
                )
        try:
            data = expressions.evaluate(config.input, ctx.activation)
        except expressions.ExpressionError as exc:
            return Failed(str(exc), retryable=False)
        shots = [(e.input, e.output) for e in config.fixed_examples()]
        picked = _review_examples(ctx, config, data)
        shots += [(e.input, e.output) for e in picked]
        messages = build_messages(
            instructions=config.prompt,
            answer_format=config.output.describe(),
            data=data,
            examples=shots,
        )
        spend = Spend()
        versions: dict[str, str] = {}
        started = time.monotonic()
        try:
            tiers = [
                self._tier(t, config, messages, spend, versions, ctx.hooks.local_models)
                for t in config.tiers()
            ]
            result = run_cascade(
                tiers, Budget(max_tokens=config.token_budget, max_calls=config.max_calls)
            )
        except seam.ModelSpecError as exc:
            return Failed(str(exc), retryable=False, usage=_usage(spend, started))
        except RateLimited as exc:
            return Failed(str(exc), retryable=True, usage=_usage(spend, started))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            return Failed(message, retryable=is_transient(exc), usage=_usage(spend, started))
        usage = _usage(spend, started)
        meta = {
            "answer": result.key,
            "votes": result.votes,
            "samples": result.samples,
            "tier": result.tier,
            "tiers": [t.__dict__ for t in result.tiers],
            "invalid": result.invalid,
            "stopped": result.stopped,
            "models": spend.by_model,
            "model": result.tier,
            "model_version": versions.get(result.tier),
            "model_versions": versions,
            "strategy": config.strategy,
        }
        if config.from_reviews() is not None:
            meta["review_examples"] = [
                {
                    "run": e.run_id,
                    "similarity": round(e.similarity, 4),
                    "input": render_data(e.input)[:_EXCERPT],
                    "output": e.output,
                }
                for e in picked
            ]
        if result.key is None:
            # Every sample was invalid: no answer, no confidence; the gate sends it to review.
            return Completed(output=None, confidence=None, meta=meta, usage=usage)
        return Completed(output=result.value, confidence=result.confidence, meta=meta, usage=usage)

    def _tier(
        self,
        tier: Tier,
        config: AIConfig,
        messages: list[Any],
        spend: Spend,
        versions: dict[str, str],
        local_models: seam.LocalModelStore,
    ) -> TierSpec:
        options = seam.ModelOptions(
            temperature=tier.temperature if tier.temperature is not None else config.temperature,
            max_tokens=tier.max_tokens or config.max_tokens,
            timeout=config.timeout,
            logprobs=config.logprobs,
        )
        model = seam.build_chat_model(tier.model, options, local_models=local_models)
        version = getattr(model, "model_version", None)
        if version is not None:
            versions[tier.model] = str(version)
        runnable, is_structured = structured(model, config.output)
        provider = tier.model.split(":", 1)[0]
        est = _estimate_tokens(messages) + (tier.max_tokens or config.max_tokens)
        sampler = chat_sampler(
            spec=tier.model,
            runnable=runnable,
            is_structured=is_structured,
            messages=messages,
            output=config.output,
            spend=spend,
            before_calls=lambda k: take_calls(provider, k),
        )
        return TierSpec(
            name=tier.model,
            sampler=sampler,
            strategy=tier.strategy,
            n=tier.n,
            cap=tier.cap,
            batch_size=tier.batch_size,
            c=tier.c,
            threshold=tier.threshold,
            deterministic=tier.deterministic() or getattr(model, "deterministic", False),
            est_tokens_per_call=est,
        )


def _review_examples(ctx: StepContext, config: AIConfig, data: Any) -> list[ReviewExample]:
    """The services' most similar past decisions, in their order, while they fit the budget.

    An example whose answer the step's output spec no longer accepts (a label since removed)
    is passed over; the first one that would overrun `max_tokens` ends the list, so the
    examples given are always the most similar ones.
    """
    spec = config.from_reviews()
    if spec is None:
        return []
    found = ctx.hooks.review_examples(
        workflow_id=ctx.workflow_id, step_id=ctx.step_id, data=data, k=spec.from_reviews
    )
    picked: list[ReviewExample] = []
    budget = spec.max_tokens
    for example in found:
        try:
            config.output.validate_value(example.output)
        except OutputError:
            continue
        cost = shot_tokens(example.input, example.output)
        if cost > budget:
            break
        budget -= cost
        picked.append(example)
    return picked


def _estimate_tokens(messages: list[Any]) -> int:
    # Only used to look ahead at the token budget.
    return estimate_tokens("".join(str(m.content) for m in messages))


def _usage(spend: Spend, started: float) -> Usage:
    return Usage(
        calls=spend.calls,
        input_tokens=spend.input_tokens,
        output_tokens=spend.output_tokens,
        cost_usd=spend.cost_usd,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


KIND = AIKind()
