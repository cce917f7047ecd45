"""Inference-time scaling: single call, best-of-N, adaptive sampling and tier cascades.

Pure strategy code: no Django, no LangChain, no I/O. A model is reached through a `Sampler`
(draw k samples, report the usage), so the same code serves AI steps, tests and benchmarks.
docs/ai.md explains the strategies and where confidence comes from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from scipy.special import betainc

Strategy = Literal["single", "best_of_n", "adaptive"]
StopReason = Literal["single", "fixed", "confident", "cap", "budget"]

STRATEGIES: frozenset[str] = frozenset({"single", "best_of_n", "adaptive"})
SAMPLING_STRATEGIES: frozenset[str] = frozenset({"best_of_n", "adaptive"})


def canonical_key(value: Any) -> str:
    """The form in which answers are compared: labels exactly, objects as canonical JSON."""
    if isinstance(value, str):
        return value
    # Key order and whitespace in the model's output must never split a vote.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Sample:
    """One answer from the model. `key` is None when the answer could not be used."""

    key: str | None
    value: Any
    raw: str
    error: str | None = None
    confidence: float | None = None  # exp(logprob) or predict_proba, when the source gives one

    @classmethod
    def valid(cls, value: Any, raw: str, confidence: float | None = None) -> Sample:
        return cls(key=canonical_key(value), value=value, raw=raw, confidence=confidence)

    @classmethod
    def invalid(cls, raw: str, error: str) -> Sample:
        return cls(key=None, value=None, raw=raw, error=error)

    def to_dict(self, tier: str) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy dominated the cost of a 40-sample vote.
        return {
            "tier": tier,
            "key": self.key,
            "value": self.value,
            "raw": self.raw,
            "error": self.error,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class Batch:
    """The samples of one draw and the usage of the whole draw.

    With n>1 one response carries the usage of all its samples, so usage is reported per batch
    and never summed per sample.
    """

    samples: list[Sample]
    calls: int
    input_tokens: int
    output_tokens: int


class Sampler(Protocol):
    def __call__(self, k: int, /) -> Batch:
        """Draw k samples: k model calls, or one call with n=k."""
        ...


@dataclass(frozen=True)
class Budget:
    """Limits shared by every tier of one step; None means unlimited."""

    max_tokens: int | None = None
    max_calls: int | None = None


def validate_strategy(strategy: str, deterministic: bool) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {sorted(STRATEGIES)}")
    if deterministic and strategy in SAMPLING_STRATEGIES:
        raise ValueError(
            f"strategy {strategy!r} samples the model several times, but this tier is "
            "deterministic (a local classifier or temperature 0): every sample would be the "
            "same answer and the vote share would always be 1. Use 'single'."
        )


@dataclass(frozen=True)
class TierSpec:
    """One model and how to scale it. A step without a cascade is a single tier."""

    name: str
    sampler: Sampler
    strategy: Strategy
    n: int = 5  # best_of_n: samples drawn
    cap: int = 16  # adaptive: most samples drawn
    batch_size: int = 2  # adaptive: samples per draw
    c: float = 0.95  # adaptive: stop when the Beta rule gives at least this
    threshold: float | None = None  # cascade: escalate below this confidence
    deterministic: bool = False
    est_tokens_per_call: int = 0  # prompt tokens + max_tokens, for the budget look-ahead

    def __post_init__(self) -> None:
        validate_strategy(self.strategy, self.deterministic)
        if min(self.n, self.cap, self.batch_size) < 1:
            raise ValueError(f"tier {self.name!r}: n, cap and batch_size must be at least 1")
        if not 0 < self.c <= 1:
            raise ValueError(f"tier {self.name!r}: c must be in (0, 1]")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"tier {self.name!r}: threshold must be in [0, 1]")
        if self.est_tokens_per_call < 0:
            raise ValueError(f"tier {self.name!r}: est_tokens_per_call must not be negative")


@dataclass(frozen=True)
class TierTrace:
    """What one tier of a run did, for the record and for cost dashboards."""

    name: str
    strategy: str
    samples: int
    invalid: int
    calls: int
    input_tokens: int
    output_tokens: int
    key: str | None
    confidence: float | None
    threshold: float | None
    stopped: StopReason
    escalated: bool


@dataclass(frozen=True)
class ScalingResult:
    """The answer of the answering (last run) tier; usage, samples and `invalid` over all tiers."""

    value: Any
    key: str | None
    confidence: float | None
    votes: dict[str, int]
    samples: list[dict[str, Any]]
    tier: str
    tiers: list[TierTrace]
    calls: int
    input_tokens: int
    output_tokens: int
    invalid: int
    stopped: StopReason

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def beta_stop_probability(a: int, b: int) -> float:
    """Adaptive-Consistency's stopping rule: P(leader's share of the top two > 1/2).

    With a uniform prior the share is Beta(a+1, b+1), so P = 1 - I_½(a+1, b+1).
    """
    return 1.0 - float(betainc(a + 1, b + 1, 0.5))


def tally(samples: Sequence[Sample]) -> dict[str, int]:
    """Votes per key in first-seen order; invalid samples do not vote."""
    votes: dict[str, int] = {}
    for sample in samples:
        if sample.key is not None:
            votes[sample.key] = votes.get(sample.key, 0) + 1
    return votes


def majority(votes: dict[str, int]) -> str | None:
    # max() keeps the first of equal counts, so ties go to the answer seen first.
    return max(votes, key=lambda key: votes[key]) if votes else None


def _top_two(votes: dict[str, int]) -> tuple[int, int]:
    counts = [*sorted(votes.values(), reverse=True), 0, 0]
    return counts[0], counts[1]


@dataclass
class _Usage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, batch: Batch) -> None:
        self.calls += batch.calls
        self.input_tokens += batch.input_tokens
        self.output_tokens += batch.output_tokens


@dataclass
class _Meter:
    """Usage spent so far in one step, across tiers, against the shared budget."""

    budget: Budget
    spent: _Usage = dataclasses.field(default_factory=_Usage)

    def affordable(self, want: int, est_tokens_per_call: int) -> int:
        """How many of `want` samples fit, assuming one call per sample (the worst case)."""
        fit = want
        if self.budget.max_calls is not None:
            fit = min(fit, self.budget.max_calls - self.spent.calls)
        if self.budget.max_tokens is not None:
            room = self.budget.max_tokens - self.spent.input_tokens - self.spent.output_tokens
            if room < 0:
                return 0
            if est_tokens_per_call > 0:
                fit = min(fit, room // est_tokens_per_call)
        return max(fit, 0)


class _TierRun:
    """Draws for one tier and keeps its samples and usage."""

    def __init__(self, tier: TierSpec, meter: _Meter) -> None:
        self.tier = tier
        self.meter = meter
        self.samples: list[Sample] = []
        self.usage = _Usage()

    def affordable(self, want: int) -> int:
        return self.meter.affordable(want, self.tier.est_tokens_per_call)

    def draw(self, k: int) -> None:
        batch = self.tier.sampler(k)
        self.samples.extend(batch.samples)
        self.usage.add(batch)
        self.meter.spent.add(batch)


def _single(run: _TierRun) -> StopReason:
    if run.affordable(1) < 1:
        return "budget"
    run.draw(1)
    return "single"


def _best_of_n(run: _TierRun) -> StopReason:
    # One request for all n lets a provider serve them as one call with n=k.
    k = run.affordable(run.tier.n)
    if k > 0:
        run.draw(k)
    return "fixed" if k == run.tier.n else "budget"


def _adaptive(run: _TierRun) -> StopReason:
    tier = run.tier
    requested = 0
    while requested < tier.cap:
        k = min(tier.batch_size, tier.cap - requested)
        if run.affordable(k) < k:
            return "budget"
        run.draw(k)
        requested += k
        if beta_stop_probability(*_top_two(tally(run.samples))) >= tier.c:
            return "confident"
    return "cap"


_RUNNERS: dict[str, Callable[[_TierRun], StopReason]] = {
    "single": _single,
    "best_of_n": _best_of_n,
    "adaptive": _adaptive,
}


def _confidence(strategy: str, samples: list[Sample], votes: dict[str, int]) -> float | None:
    winner = majority(votes)
    if winner is None:
        return None
    if strategy == "single":
        return next(s.confidence for s in samples if s.key == winner)
    # Over everything drawn, invalid included: answers we could not use are not agreement.
    return votes[winner] / len(samples)


def run_cascade(tiers: Sequence[TierSpec], budget: Budget | None = None) -> ScalingResult:
    """Run tiers in order until one is confident enough; the last tier's answer is final.

    A tier escalates when its confidence is None or below its threshold. The last tier's answer
    stands whatever its confidence: what stays uncertain is the gate's business.
    """
    if not tiers:
        raise ValueError("a cascade needs at least one tier")
    for spec in tiers[:-1]:
        if spec.threshold is None:
            raise ValueError(f"tier {spec.name!r} needs a threshold: it is not the last tier")

    meter = _Meter(budget or Budget())
    traces: list[TierTrace] = []
    all_samples: list[dict[str, Any]] = []
    for index, spec in enumerate(tiers):
        run = _TierRun(spec, meter)
        stopped = _RUNNERS[spec.strategy](run)
        votes = tally(run.samples)
        key = majority(votes)
        confidence = _confidence(spec.strategy, run.samples, votes)
        is_last = index == len(tiers) - 1
        # Only the last tier may lack a threshold, and it never escalates.
        threshold = spec.threshold if spec.threshold is not None else 0.0
        escalated = not is_last and (confidence is None or confidence < threshold)
        invalid = sum(1 for s in run.samples if s.key is None)
        all_samples.extend(s.to_dict(spec.name) for s in run.samples)
        traces.append(
            TierTrace(
                name=spec.name,
                strategy=spec.strategy,
                samples=len(run.samples),
                invalid=invalid,
                calls=run.usage.calls,
                input_tokens=run.usage.input_tokens,
                output_tokens=run.usage.output_tokens,
                key=key,
                confidence=confidence,
                threshold=spec.threshold,
                stopped=stopped,
                escalated=escalated,
            )
        )
        if not escalated:
            break

    # The loop ran at least once; `spec`, `run` and the answer are the last tier run's.
    return ScalingResult(
        value=next((s.value for s in run.samples if s.key == key), None),
        key=key,
        confidence=confidence,
        votes=votes,
        samples=all_samples,
        tier=spec.name,
        tiers=traces,
        calls=meter.spent.calls,
        input_tokens=meter.spent.input_tokens,
        output_tokens=meter.spent.output_tokens,
        invalid=sum(t.invalid for t in traces),
        stopped=stopped,
    )


def run_tier(tier: TierSpec, budget: Budget | None = None) -> ScalingResult:
    return run_cascade([tier], budget)


def run_single(
    sampler: Sampler, *, budget: Budget | None = None, est_tokens_per_call: int = 0
) -> ScalingResult:
    spec = TierSpec("single", sampler, "single", est_tokens_per_call=est_tokens_per_call)
    return run_tier(spec, budget)


def run_best_of_n(
    sampler: Sampler, n: int, *, budget: Budget | None = None, est_tokens_per_call: int = 0
) -> ScalingResult:
    spec = TierSpec("best_of_n", sampler, "best_of_n", n=n, est_tokens_per_call=est_tokens_per_call)
    return run_tier(spec, budget)


def run_adaptive(
    sampler: Sampler,
    *,
    cap: int = 16,
    batch_size: int = 2,
    c: float = 0.95,
    budget: Budget | None = None,
    est_tokens_per_call: int = 0,
) -> ScalingResult:
    spec = TierSpec(
        "adaptive",
        sampler,
        "adaptive",
        cap=cap,
        batch_size=batch_size,
        c=c,
        est_tokens_per_call=est_tokens_per_call,
    )
    return run_tier(spec, budget)
