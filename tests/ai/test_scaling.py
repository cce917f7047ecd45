"""Inference-time scaling strategies, driven by scripted samplers (no model, no database)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from scipy.stats import beta

from workflows.ai.scaling import (
    Batch,
    Budget,
    Sample,
    TierSpec,
    beta_stop_probability,
    canonical_key,
    majority,
    run_adaptive,
    run_best_of_n,
    run_cascade,
    run_single,
    tally,
    validate_strategy,
)

INVALID = object()  # scripts use it for "the model returned something unparseable"


def as_sample(item: Any) -> Sample:
    if isinstance(item, Sample):
        return item
    if item is INVALID:
        return Sample.invalid(raw="I think it's probably...", error="not one of the labels")
    raw = item if isinstance(item, str) else json.dumps(item)
    return Sample.valid(item, raw=raw)


class ScriptedSampler:
    """Hands out pre-scripted samples and records every request.

    Usage is reported per batch, as a provider does for one call with n=k: `calls_per_batch`,
    `input_per_batch` and `output_per_sample` let a test tell per-batch from per-sample sums.
    """

    def __init__(
        self,
        script: list[Any],
        *,
        one_call_per_batch: bool = False,
        input_per_call: int = 100,
        output_per_sample: int = 10,
    ) -> None:
        self.script = [as_sample(item) for item in script]
        self.one_call_per_batch = one_call_per_batch
        self.input_per_call = input_per_call
        self.output_per_sample = output_per_sample
        self.requests: list[int] = []

    @property
    def drawn(self) -> int:
        return sum(self.requests)

    def __call__(self, k: int) -> Batch:
        start = self.drawn
        self.requests.append(k)
        samples = self.script[start : start + k]
        assert len(samples) == k, "the strategy drew more samples than the script holds"
        calls = 1 if self.one_call_per_batch else k
        return Batch(
            samples=samples,
            calls=calls,
            input_tokens=calls * self.input_per_call,
            output_tokens=k * self.output_per_sample,
        )


def test_beta_stop_probability_matches_scipy_beta() -> None:
    # Computed independently: P(p > 1/2) for p ~ Beta(a+1, b+1), the posterior of the leader's
    # share of the top two answers under a uniform prior.
    for a, b in [(0, 0), (2, 0), (4, 0), (3, 1), (5, 1), (7, 1), (10, 3), (3, 3), (20, 12)]:
        expected = float(beta.sf(0.5, a + 1, b + 1))
        assert beta_stop_probability(a, b) == pytest.approx(expected, abs=1e-12)


def test_beta_stop_probability_known_values() -> None:
    # With b = 0 the rule reduces to 1 - 2^-(a+1).
    assert beta_stop_probability(2, 0) == pytest.approx(0.875)
    assert beta_stop_probability(4, 0) == pytest.approx(0.96875)
    assert beta_stop_probability(3, 3) == pytest.approx(0.5)
    # 1 - P(Binomial(9, 1/2) >= 8) = 1 - 10/512
    assert beta_stop_probability(7, 1) == pytest.approx(1 - 10 / 512)


def test_unanimous_answers_stop_after_exactly_four_samples() -> None:
    # P(2,0) = 0.875 < 0.95 <= P(4,0) = 0.96875: two batches of two.
    sampler = ScriptedSampler(["A"] * 40)

    result = run_adaptive(sampler, cap=40, batch_size=2, c=0.95)

    assert sampler.requests == [2, 2]
    assert result.value == "A"
    assert result.confidence == 1.0
    assert result.stopped == "confident"
    assert result.votes == {"A": 4}


def test_split_answers_run_to_the_cap() -> None:
    sampler = ScriptedSampler(["A", "B"] * 20)

    result = run_adaptive(sampler, cap=10, batch_size=2, c=0.95)

    assert sampler.drawn == 10
    assert result.stopped == "cap"
    assert result.value == "A"  # 5-5 tie: the answer seen first
    assert result.confidence == 0.5


def test_last_batch_is_trimmed_to_the_cap() -> None:
    sampler = ScriptedSampler(["A", "B"] * 5)

    run_adaptive(sampler, cap=5, batch_size=2, c=0.95)

    assert sampler.requests == [2, 2, 1]


def test_token_budget_stops_before_a_batch_that_could_exceed_it() -> None:
    # Look-ahead uses the estimate (prompt + max_tokens per call), not what the last batch used:
    # after 2 batches 220 tokens are spent, and 220 + 2 x 150 > 450.
    sampler = ScriptedSampler(["A", "B"] * 20, input_per_call=45, output_per_sample=10)

    result = run_adaptive(
        sampler, cap=40, batch_size=2, budget=Budget(max_tokens=450), est_tokens_per_call=150
    )

    assert sampler.requests == [2, 2]
    assert result.stopped == "budget"
    assert result.input_tokens + result.output_tokens == 220
    assert result.value == "A"


def test_token_budget_allows_a_batch_that_fits_exactly() -> None:
    sampler = ScriptedSampler(["A", "B"] * 20, input_per_call=90, output_per_sample=10)

    run_adaptive(
        sampler, cap=40, batch_size=2, budget=Budget(max_tokens=600), est_tokens_per_call=100
    )

    assert sampler.requests == [2, 2, 2]  # 400 + 2 x 100 = 600 fits, 600 + 200 does not


def test_call_cap_stops_adaptive_before_a_batch_that_would_exceed_it() -> None:
    sampler = ScriptedSampler(["A", "B"] * 20)

    result = run_adaptive(sampler, cap=40, batch_size=2, budget=Budget(max_calls=5))

    assert sampler.requests == [2, 2]
    assert result.calls == 4
    assert result.stopped == "budget"


def test_best_of_n_draws_what_the_budget_allows() -> None:
    sampler = ScriptedSampler(["A", "B", "A", "A", "B"])

    result = run_best_of_n(sampler, n=5, budget=Budget(max_calls=3))

    assert sampler.requests == [3]
    assert result.value == "A"
    assert result.stopped == "budget"


def test_nothing_drawn_when_the_budget_allows_nothing() -> None:
    for run in (
        lambda s: run_single(s, budget=Budget(max_calls=0)),
        lambda s: run_best_of_n(s, n=3, budget=Budget(max_tokens=50), est_tokens_per_call=100),
        lambda s: run_adaptive(s, cap=8, budget=Budget(max_tokens=150), est_tokens_per_call=100),
    ):
        sampler = ScriptedSampler(["A"] * 8)

        result = run(sampler)

        assert sampler.requests == []
        assert result.value is None
        assert result.confidence is None
        assert result.stopped == "budget"
        assert result.calls == 0


def test_best_of_n_takes_the_majority_in_one_request() -> None:
    sampler = ScriptedSampler(["A", "B", "A", "C", "A"])

    result = run_best_of_n(sampler, n=5)

    assert sampler.requests == [5]
    assert result.value == "A"
    assert result.votes == {"A": 3, "B": 1, "C": 1}
    assert result.confidence == pytest.approx(3 / 5)
    assert result.stopped == "fixed"


def test_best_of_n_breaks_ties_by_the_answer_seen_first() -> None:
    result = run_best_of_n(ScriptedSampler(["B", "A", "A", "B"]), n=4)

    assert result.value == "B"
    assert result.confidence == 0.5


def test_tally_and_majority() -> None:
    samples = [as_sample(x) for x in ["C", INVALID, "A", "A", "C"]]

    votes = tally(samples)

    assert votes == {"C": 2, "A": 2}
    assert list(votes) == ["C", "A"]  # first-seen order is what breaks ties
    assert majority(votes) == "C"
    assert majority({}) is None


def test_json_answers_vote_in_canonical_form() -> None:
    first = {"vendor": "Acme", "amount": 12.5, "note": "café"}
    reordered = {"note": "café", "amount": 12.5, "vendor": "Acme"}
    sampler = ScriptedSampler([first, reordered, {"vendor": "Other", "amount": 1}])

    result = run_best_of_n(sampler, n=3)

    assert result.value == first
    assert result.key == canonical_key(reordered)
    assert result.key == '{"amount":12.5,"note":"café","vendor":"Acme"}'
    assert result.votes[result.key] == 2
    # What the model said is kept as it said it, for reviewers.
    assert result.samples[1]["raw"] == json.dumps(reordered)


def test_labels_compare_exactly() -> None:
    assert canonical_key("Refund") == "Refund"
    assert canonical_key("Refund") != canonical_key("refund")


def test_invalid_samples_are_counted_and_recorded_not_voted() -> None:
    sampler = ScriptedSampler(["A", INVALID, "A", INVALID, "B"])

    result = run_best_of_n(sampler, n=5)

    assert result.votes == {"A": 2, "B": 1}
    assert result.invalid == 2
    assert result.value == "A"
    # The share is over everything drawn, so unparseable answers lower the confidence.
    assert result.confidence == pytest.approx(2 / 5)
    errors = [s["error"] for s in result.samples]
    assert errors == [None, "not one of the labels", None, "not one of the labels", None]


def test_all_invalid_gives_no_answer_and_no_confidence() -> None:
    result = run_best_of_n(ScriptedSampler([INVALID] * 3), n=3)

    assert result.value is None
    assert result.key is None
    assert result.confidence is None
    assert result.votes == {}
    assert result.invalid == 3
    assert len(result.samples) == 3


def test_adaptive_with_only_invalid_samples_runs_to_the_cap() -> None:
    sampler = ScriptedSampler([INVALID] * 6)

    result = run_adaptive(sampler, cap=6)

    assert sampler.drawn == 6
    assert result.stopped == "cap"
    assert result.confidence is None


def test_single_passes_the_sample_confidence_through() -> None:
    sure = run_single(ScriptedSampler([Sample.valid("A", raw="A", confidence=0.83)]))
    unknown = run_single(ScriptedSampler(["A"]))
    broken = run_single(ScriptedSampler([INVALID]))

    assert (sure.value, sure.confidence, sure.stopped) == ("A", 0.83, "single")
    assert (unknown.value, unknown.confidence) == ("A", None)
    assert (broken.value, broken.confidence, broken.invalid) == (None, None, 1)


def tier(name: str, script: list[Any], **kwargs: Any) -> tuple[TierSpec, ScriptedSampler]:
    sampler = ScriptedSampler(script)
    kwargs.setdefault("strategy", "single")
    return TierSpec(name=name, sampler=sampler, **kwargs), sampler


def test_cascade_escalates_when_confidence_is_below_the_threshold() -> None:
    local, _ = tier("local", [Sample.valid("A", raw="A", confidence=0.79)], threshold=0.8)
    large, large_sampler = tier("large", ["B"] * 4, strategy="adaptive", cap=8)

    result = run_cascade([local, large])

    assert large_sampler.drawn == 4
    assert (result.tier, result.value, result.confidence) == ("large", "B", 1.0)
    assert [(t.name, t.escalated) for t in result.tiers] == [("local", True), ("large", False)]
    assert [s["tier"] for s in result.samples] == ["local", "large", "large", "large", "large"]


def test_cascade_stops_at_a_tier_whose_confidence_reaches_the_threshold() -> None:
    local, _ = tier("local", [Sample.valid("A", raw="A", confidence=0.8)], threshold=0.8)
    large, large_sampler = tier("large", ["B"] * 4, strategy="adaptive")

    result = run_cascade([local, large])

    assert large_sampler.requests == []
    assert (result.tier, result.value, result.confidence) == ("local", "A", 0.8)
    assert [t.name for t in result.tiers] == ["local"]
    assert not result.tiers[0].escalated


def test_cascade_escalates_on_no_confidence() -> None:
    small, _ = tier("small", ["A"], threshold=0.0)  # a single call without logprobs
    large, large_sampler = tier("large", ["A", "A"], strategy="best_of_n", n=2)

    result = run_cascade([small, large])

    assert large_sampler.drawn == 2
    assert result.tier == "large"


def test_cascade_keeps_the_last_tier_answer_whatever_its_confidence() -> None:
    small, _ = tier("small", ["A", "B"], strategy="best_of_n", n=2, threshold=0.9)
    large, _ = tier("large", ["B", "C", "A"], strategy="best_of_n", n=3, threshold=0.9)

    result = run_cascade([small, large])

    assert (result.tier, result.value) == ("large", "B")
    assert result.confidence == pytest.approx(1 / 3)
    assert result.votes == {"B": 1, "C": 1, "A": 1}  # the answering tier's votes
    assert not result.tiers[-1].escalated


def test_cascade_requires_thresholds_on_all_but_the_last_tier() -> None:
    small, _ = tier("small", ["A"])
    large, _ = tier("large", ["A"])

    with pytest.raises(ValueError, match=r"small.*threshold"):
        run_cascade([small, large])


def test_usage_is_counted_once_per_batch() -> None:
    # One call with n=2 per batch: the response's usage covers both samples.
    sampler = ScriptedSampler(
        ["A", "B"] * 3, one_call_per_batch=True, input_per_call=100, output_per_sample=10
    )

    result = run_adaptive(sampler, cap=6, batch_size=2)

    assert (result.calls, result.input_tokens, result.output_tokens) == (3, 300, 60)


def test_usage_adds_up_across_tiers_and_the_budget_is_shared() -> None:
    small, _ = tier("small", ["A", "B"] * 3, strategy="adaptive", cap=6, threshold=0.9)
    small_usage = (6, 600, 60)
    # 660 tokens spent; the large tier's first batch (2 x 200) would exceed 1000.
    large_sampler = ScriptedSampler(["A"] * 4)
    large = TierSpec("large", large_sampler, "adaptive", est_tokens_per_call=200)

    result = run_cascade([small, large], Budget(max_tokens=1000))

    assert (result.calls, result.input_tokens, result.output_tokens) == small_usage
    assert large_sampler.requests == []
    assert (result.tier, result.value, result.confidence, result.stopped) == (
        "large",
        None,
        None,
        "budget",
    )
    trace = result.tiers[0]
    assert (trace.calls, trace.input_tokens, trace.output_tokens) == small_usage


def test_usage_sums_over_tiers() -> None:
    small, _ = tier("small", ["A", "B"], strategy="best_of_n", n=2, threshold=0.9)
    large, _ = tier("large", ["A"] * 4, strategy="adaptive")

    result = run_cascade([small, large])

    assert result.calls == 2 + 4
    assert result.input_tokens == 100 * 6
    assert result.output_tokens == 10 * 6
    assert [t.calls for t in result.tiers] == [2, 4]


def test_result_is_json_serialisable() -> None:
    small, _ = tier("small", [{"b": 1, "a": [1, 2]}, INVALID], strategy="best_of_n", n=2)

    data = json.loads(json.dumps(run_cascade([small]).to_dict()))

    assert data["value"] == {"a": [1, 2], "b": 1}
    assert data["tiers"][0]["name"] == "small"
    assert data["samples"][1]["error"] == "not one of the labels"
    assert data["stopped"] == "fixed"


@pytest.mark.parametrize("strategy", ["best_of_n", "adaptive"])
def test_it_refuses_sampling_on_a_deterministic_tier(strategy: str) -> None:
    with pytest.raises(ValueError, match="deterministic"):
        validate_strategy(strategy, deterministic=True)
    with pytest.raises(ValueError, match="deterministic"):
        TierSpec("local", ScriptedSampler([]), strategy, deterministic=True)  # type: ignore[arg-type]


def test_single_is_allowed_on_a_deterministic_tier_and_asks_once() -> None:
    sampler = ScriptedSampler(["billing"])
    local = TierSpec("local", sampler, "single", deterministic=True)  # type: ignore[arg-type]
    result = run_cascade([local])
    assert (result.key, result.calls, sampler.requests) == ("billing", 1, [1])
    # Sampling is refused only because the tier is deterministic, not for its own sake.
    adaptive = TierSpec("llm", ScriptedSampler([]), "adaptive", deterministic=False)  # type: ignore[arg-type]
    assert adaptive.strategy == "adaptive"


def test_it_refuses_unknown_strategies() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        validate_strategy("cascade", deterministic=False)
