"""LangChain models as `Sampler`s for the scaling strategies, with usage, cost and errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from workflows.ai.output import OutputError, OutputSpec
from workflows.ai.scaling import Batch, Sample, canonical_key

# Exception class names (anywhere in the MRO) that mean "try again later", across providers.
_TRANSIENT_NAMES = frozenset(
    {
        "APITimeoutError",
        "APIConnectionError",
        "RateLimitError",
        "InternalServerError",
        "ServiceUnavailableError",
        "OverloadedError",
        "TimeoutError",
        "TimeoutException",
        "ConnectError",
        "ConnectionError",
        "ReadTimeout",
        "RateLimited",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Rate limits, timeouts and 5xx are worth retrying; a bad key or model name is not."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 425, 429) or status >= 500
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


@dataclass
class Spend:
    """What the samplers of one step spent, kept outside the strategies so that a provider
    error part-way through still reports the calls already made."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, spec: str, calls: int, input_tokens: int, output_tokens: int) -> None:
        self.calls += calls
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += price(spec, input_tokens, output_tokens)
        row = self.by_model.setdefault(spec, {"calls": 0, "input_tokens": 0, "output_tokens": 0})
        row["calls"] += calls
        row["input_tokens"] += input_tokens
        row["output_tokens"] += output_tokens


def price(spec: str, input_tokens: int, output_tokens: int) -> Decimal:
    """Money from the price table in settings (USD per million tokens); unknown models cost 0."""
    table = settings.HITL_AI_PRICES.get(spec)
    if not table:
        return Decimal("0")
    per_million = Decimal(1_000_000)
    return (
        Decimal(str(table.get("input", 0))) * input_tokens
        + Decimal(str(table.get("output", 0))) * output_tokens
    ) / per_million


def structured(model: BaseChatModel, output: OutputSpec) -> tuple[Runnable[Any, Any], bool]:
    """Structured output where the provider supports it; otherwise the plain model."""
    if getattr(model, "deterministic", False):
        return model, False
    try:
        return model.with_structured_output(output.json_schema(), include_raw=True), True
    except NotImplementedError:
        return model, False


def sample_confidence(message: AIMessage) -> float | None:
    """Per-call confidence: the local model's predict_proba, or exp(logprob) of the answer."""
    metadata = message.response_metadata or {}
    if isinstance(metadata.get("confidence"), int | float):
        return float(metadata["confidence"])
    logprobs = (metadata.get("logprobs") or {}).get("content") if metadata else None
    if logprobs:
        return math.exp(sum(float(token["logprob"]) for token in logprobs))
    return None


def chat_sampler(
    *,
    spec: str,
    runnable: Runnable[Any, Any],
    is_structured: bool,
    messages: list[BaseMessage],
    output: OutputSpec,
    spend: Spend,
    before_calls: Callable[[int], None] = lambda k: None,
) -> Callable[[int], Batch]:
    """A sampler drawing k answers as k calls in one `.batch` (threads, no event loop)."""

    def draw(k: int) -> Batch:
        before_calls(k)
        with get_usage_metadata_callback() as usage:
            results = runnable.batch([messages] * k, config={"max_concurrency": k})
        input_tokens = sum(u.get("input_tokens", 0) for u in usage.usage_metadata.values())
        output_tokens = sum(u.get("output_tokens", 0) for u in usage.usage_metadata.values())
        spend.add(spec, k, input_tokens, output_tokens)
        samples = [_sample(result, is_structured, output) for result in results]
        return Batch(samples, calls=k, input_tokens=input_tokens, output_tokens=output_tokens)

    return draw


def _sample(result: Any, is_structured: bool, output: OutputSpec) -> Sample:
    if is_structured:
        raw_message: AIMessage = result["raw"]
        parsed = result.get("parsed")
        raw_text = _text(raw_message) or _tool_args(raw_message)
        if parsed is None:
            error = result.get("parsing_error")
            return Sample.invalid(raw_text, f"unparseable: {error}" if error else "no answer")
        value: Any = parsed.model_dump() if hasattr(parsed, "model_dump") else parsed
    else:
        raw_message = result
        raw_text = _text(raw_message)
        try:
            value = output.parse_text(raw_text)
        except OutputError as exc:
            return Sample.invalid(raw_text, str(exc))
    try:
        value = output.validate_value(value)
    except OutputError as exc:
        return Sample.invalid(raw_text, str(exc))
    # Labels vote by their name, so votes read {"billing": 3}; objects by canonical JSON.
    key = value["label"] if output.labels is not None else canonical_key(value)
    return Sample(key=key, value=value, raw=raw_text, confidence=sample_confidence(raw_message))


def _text(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in content
    )


def _tool_args(message: AIMessage) -> str:
    import json

    calls = getattr(message, "tool_calls", None) or []
    return json.dumps(calls[0].get("args", {})) if calls else ""
