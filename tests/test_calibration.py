"""Threshold calibration: the bound, the walk, the strata and the guarantee, by simulation."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import beta

from workflows.calibration import (
    ReviewedItem,
    audit_draw,
    clopper_pearson_upper,
    min_reviews_needed,
    select_threshold,
    select_thresholds_per_label,
)
from workflows.calibration_grid import SET_ASIDE, grid_counts, set_aside_ranks

ALPHA, DELTA = 0.05, 0.1
# How the console states the goal; named escapes keep the source free of confusables.
GOAL = "\N{GREEK SMALL LETTER ALPHA}=5%, \N{GREEK SMALL LETTER DELTA}=10%"
ErrorModel = Callable[[np.ndarray], np.ndarray]


def census(scores: list[float], *, errors_at: frozenset[float] = frozenset()) -> list[ReviewedItem]:
    """Items reviewed while no threshold was in force: every item was reviewed."""
    return [ReviewedItem(s, s not in errors_at, None, "below") for s in scores]


def audits(scores: list[float], *, threshold: float, rate: float) -> list[ReviewedItem]:
    return [ReviewedItem(s, True, rate, "audit", threshold) for s in scores]


def below(scores: list[float], *, threshold: float) -> list[ReviewedItem]:
    return [ReviewedItem(s, True, None, "below", threshold) for s in scores]


def steps(top: float, count: int, step: float = 0.001) -> list[float]:
    return [round(top - i * step, 6) for i in range(count)]


def pooled(items: list[ReviewedItem]) -> list[ReviewedItem]:
    """What mixing every stratum into one sample would see."""
    return [ReviewedItem(i.score, i.correct, None, "below") for i in items if i.region != "rule"]


# The bound


@pytest.mark.parametrize(
    ("k", "n", "delta"),
    [(0, 45, 0.1), (0, 10, 0.05), (1, 77, 0.1), (3, 200, 0.1), (5, 50, 0.01), (9, 10, 0.1)],
)
def test_it_matches_the_beta_quantile(k: int, n: int, delta: float) -> None:
    assert clopper_pearson_upper(k, n, delta) == pytest.approx(beta.ppf(1 - delta, k + 1, n - k))


def test_it_bounds_zero_errors_in_45_at_about_five_percent() -> None:
    # With k = 0 the bound has a closed form, 1 - delta ** (1 / n).
    assert clopper_pearson_upper(0, 45, 0.1) == pytest.approx(1 - 0.1 ** (1 / 45))
    assert clopper_pearson_upper(0, 45, 0.1) == pytest.approx(0.0499, abs=5e-5)


def test_it_knows_nothing_without_items_or_without_a_correct_one() -> None:
    assert clopper_pearson_upper(0, 0, 0.1) == 1.0
    assert clopper_pearson_upper(7, 7, 0.1) == 1.0


def test_it_rejects_more_errors_than_items() -> None:
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2, 0.1)


@pytest.mark.parametrize(
    ("alpha", "delta", "expected"), [(0.05, 0.1, 45), (0.1, 0.1, 22), (0.01, 0.05, 299)]
)
def test_it_counts_the_reviews_needed(alpha: float, delta: float, expected: int) -> None:
    assert min_reviews_needed(alpha, delta) == expected
    assert math.ceil(math.log(delta) / math.log(1 - alpha)) == expected
    assert clopper_pearson_upper(0, expected, delta) <= alpha
    assert clopper_pearson_upper(0, expected - 1, delta) > alpha


# The walk


def test_it_walks_down_to_the_last_clean_score() -> None:
    clean = steps(0.99, 80, 0.01)  # 0.99 .. 0.20
    items = census([*clean, 0.19, 0.19, *steps(0.18, 18, 0.01)], errors_at=frozenset({0.19}))
    # Two errors in 82 fail the bound, so 0.20 is the answer.
    assert beta.ppf(1 - DELTA, 3, 80) > ALPHA

    result = select_threshold(items, alpha=ALPHA, delta=DELTA)

    assert result.threshold == 0.20
    assert (result.n, result.errors, result.reviews_needed) == (80, 0, 0)
    assert result.upper_bound == pytest.approx(clopper_pearson_upper(0, 80, DELTA))
    assert result.reason.startswith("auto-approve scores ≥ 0.2:")


def test_it_stops_at_the_first_violation() -> None:
    items = [
        *census(steps(0.99, 60)),
        *census([0.9, 0.9], errors_at=frozenset({0.9})),
        *census(steps(0.89, 600)),
    ]

    result = select_threshold(items, alpha=ALPHA, delta=DELTA)

    assert result.threshold == min(steps(0.99, 60))
    # Further down the bound passes again, but the walk never skips a violation.
    lowest = result.curve[-1]
    assert lowest[1:3] == (662, 2)
    assert lowest[3] <= ALPHA


def test_it_approves_nothing_with_too_few_reviews() -> None:
    result = select_threshold(census(steps(0.99, 30)), alpha=ALPHA, delta=DELTA)

    assert result.threshold is None
    assert (result.n, result.errors, result.reviews_needed) == (30, 0, 15)
    assert result.reason == f"need 15 more reviewed items with no errors to auto-approve at {GOAL}"


def test_it_says_how_many_clean_reviews_must_outrank_an_error_at_the_top() -> None:
    items = census([0.99, *steps(0.98, 59)], errors_at=frozenset({0.99}))

    result = select_threshold(items, alpha=ALPHA, delta=DELTA)

    # The first level tested is the 45 strictest items, and the error is among them whatever
    # else arrives below it: only 45 clean reviews above it make a first level that passes.
    assert result.threshold is None
    assert (result.n, result.errors, result.reviews_needed) == (45, 1, 45)
    assert result.reason == (
        "1 error at scores ≥ 0.99: need 45 more reviewed items with no errors scoring above 0.99"
        f" to auto-approve at {GOAL}"
    )
    more = census(steps(0.9999, 45, 0.0001))
    assert select_threshold([*items, *more], alpha=ALPHA, delta=DELTA).threshold is not None
    assert select_threshold([*items, *more[:44]], alpha=ALPHA, delta=DELTA).threshold is None


def test_it_tests_a_bigger_first_level_when_asked() -> None:
    items = census([0.99, *steps(0.98, 300)], errors_at=frozenset({0.99}))

    blocked = select_threshold(items, alpha=ALPHA, delta=DELTA)
    diluted = select_threshold(items, alpha=ALPHA, delta=DELTA, min_items=150)

    assert blocked.threshold is None
    assert diluted.threshold == min(steps(0.98, 300))
    assert (diluted.n, diluted.errors) == (301, 1)


def test_it_asks_for_45_reviews_when_there_are_none() -> None:
    result = select_threshold([], alpha=ALPHA, delta=DELTA)

    assert (result.threshold, result.n, result.reviews_needed) == (None, 0, 45)
    assert result.curve == []


def test_it_ignores_rule_items() -> None:
    clean = census(steps(0.99, 60))
    ruled = [ReviewedItem(0.995 - i / 1000, False, None, "rule") for i in range(20)]

    assert select_threshold([*ruled, *clean], alpha=ALPHA, delta=DELTA) == select_threshold(
        clean, alpha=ALPHA, delta=DELTA
    )
    assert select_threshold(ruled, alpha=ALPHA, delta=DELTA).threshold is None


def test_it_walks_given_candidates_only() -> None:
    items = census([*steps(0.99, 100), 0.6, 0.6], errors_at=frozenset({0.6}))

    result = select_threshold(items, alpha=ALPHA, delta=DELTA, candidates=[0.5, 0.95, 0.9])

    assert result.threshold == 0.9
    assert [row[0] for row in result.curve] == [0.95, 0.9, 0.5]


def test_it_serialises_to_json() -> None:
    result = select_threshold(census(steps(0.99, 50)), alpha=ALPHA, delta=DELTA)

    data = json.loads(json.dumps(result.to_dict()))

    assert data["threshold"] == result.threshold
    assert data["curve"][-1] == list(result.curve[-1])


# Strata


def test_it_pools_audits_of_different_rates_above_the_threshold_in_force() -> None:
    # Neither stratum alone reaches 45 items; within one piece the rate does not matter.
    items = [
        *audits(steps(0.99, 30, 0.002), threshold=0.9, rate=0.1),
        *audits(steps(0.989, 30, 0.002), threshold=0.9, rate=0.02),
    ]

    result = select_threshold(items, alpha=ALPHA, delta=DELTA)

    assert result.threshold == min(i.score for i in items)
    assert result.n == 60


def test_it_lowers_the_threshold_only_with_enough_reviews_below_it() -> None:
    above = audits(steps(0.99, 100, 0.0009), threshold=0.9, rate=0.05)
    band = steps(0.899, 60)

    few = select_threshold([*above, *below(band[:30], threshold=0.9)], alpha=ALPHA, delta=DELTA)
    enough = select_threshold([*above, *below(band, threshold=0.9)], alpha=ALPHA, delta=DELTA)

    # 30 clean items cannot certify the band [λ, 0.9) on their own.
    assert few.threshold == min(i.score for i in above)
    assert enough.threshold == min(band)
    assert enough.n == 160


def test_it_keeps_errors_under_the_threshold_out_of_the_audit_sample() -> None:
    above = audits(steps(0.99, 100, 0.0009), threshold=0.9, rate=0.05)
    band = [
        ReviewedItem(s, i % 10 != 0, None, "below", 0.9) for i, s in enumerate(steps(0.899, 60))
    ]

    result = select_threshold([*above, *band], alpha=ALPHA, delta=DELTA)

    # Pooled, 6 errors in 160 would pass just under 0.9; the band alone has 1 error in 10.
    assert clopper_pearson_upper(1, 110, DELTA) <= ALPHA
    assert result.threshold == min(i.score for i in above)


def test_it_never_lets_weights_inflate_a_small_audit_sample() -> None:
    top = audits(steps(0.99, 20, 0.004), threshold=0.9, rate=0.02)
    items = [*top, *below(steps(0.899, 500), threshold=0.9)]
    # Weighted by 1 / rate, 20 clean audits would count as 1000 and pass easily.
    assert clopper_pearson_upper(0, 20 * 50 + 500, DELTA) <= ALPHA

    result = select_threshold(items, alpha=ALPHA, delta=DELTA)

    assert result.threshold is None
    assert result.reviews_needed == 25
    assert result.reason == (
        f"need 25 more reviewed items with no errors scoring ≥ 0.9 to auto-approve at {GOAL}"
    )


def test_it_rejects_rows_that_would_bias_the_bound() -> None:
    with pytest.raises(ValueError):
        ReviewedItem(0.95, True, 0.05, "audit")  # no threshold in force
    with pytest.raises(ValueError):
        ReviewedItem(0.85, True, 0.05, "audit", 0.9)
    with pytest.raises(ValueError):
        ReviewedItem(0.95, True, None, "below", 0.9)
    with pytest.raises(ValueError):
        ReviewedItem(0.95, True, None, "elsewhere")


# Labels


def test_it_calibrates_each_label_on_its_own() -> None:
    spam = census(steps(0.99, 60))
    ham = census([0.99, *steps(0.98, 200)], errors_at=frozenset({0.99}))

    results = select_thresholds_per_label({"spam": spam, "ham": ham}, alpha=ALPHA, delta=DELTA)

    assert results["spam"] == select_threshold(spam, alpha=ALPHA, delta=DELTA)
    assert results["spam"].threshold == min(steps(0.99, 60))
    assert results["ham"].threshold is None
    alone = select_thresholds_per_label({"spam": spam}, alpha=ALPHA, delta=DELTA)
    assert alone["spam"] == results["spam"]


# The guarantee, by simulation


def true_error_rate(model: ErrorModel, threshold: float, low: float = 0.0) -> float:
    # Scores are uniform on [low, 1): the rate above λ is the mean of the model over [λ, 1).
    grid = np.linspace(max(threshold, low), 1, 20001)
    return float(model(grid).mean())


def simulate_census(rng: np.random.Generator, model: ErrorModel, size: int) -> list[ReviewedItem]:
    scores = rng.random(size)
    wrong = rng.random(size) < model(scores)
    return [
        ReviewedItem(float(s), not w, None, "below") for s, w in zip(scores, wrong, strict=True)
    ]


def simulate_gate(
    rng: np.random.Generator,
    model: ErrorModel,
    size: int,
    *,
    threshold: float,
    rate: float,
    low: float = 0.0,
) -> list[ReviewedItem]:
    """Traffic through a gate: all items under the threshold reviewed, a sample of the rest."""
    scores = low + (1 - low) * rng.random(size)
    wrong = rng.random(size) < model(scores)
    drawn = rng.random(size) < rate
    items = []
    for s, w, d in zip(scores, wrong, drawn, strict=True):
        if s < threshold:
            items.append(ReviewedItem(float(s), not w, None, "below", threshold))
        elif d:
            items.append(ReviewedItem(float(s), not w, rate, "audit", threshold))
    return items


def failure_rate(
    draw: Callable[[np.random.Generator], list[ReviewedItem]], model: ErrorModel, runs: int
) -> tuple[float, float]:
    """How often the chosen threshold breaks alpha, and how often there is one at all."""
    rng = np.random.default_rng(20240611)
    broken = chosen = 0
    for _ in range(runs):
        threshold = select_threshold(draw(rng), alpha=ALPHA, delta=DELTA).threshold
        if threshold is not None:
            chosen += 1
            broken += true_error_rate(model, threshold) > ALPHA
    return broken / runs, chosen / runs


def tolerance(runs: int) -> float:
    return 3 * math.sqrt(DELTA * (1 - DELTA) / runs)


def steady(rate: float) -> ErrorModel:
    return lambda scores: np.full_like(scores, rate)


def falling(scores: np.ndarray) -> np.ndarray:
    return 0.4 * (1 - scores) ** 2


def test_it_keeps_its_promise_when_every_threshold_is_bad() -> None:
    # Errors at 5.5% everywhere: any threshold at all breaks alpha, the hardest case there is.
    runs = 400
    broken, _ = failure_rate(
        lambda rng: simulate_census(rng, steady(0.055), 400), steady(0.055), runs
    )

    assert broken <= DELTA + tolerance(runs)
    assert broken > 0.03  # and the bound is not so loose that the test proves nothing


def test_it_keeps_its_promise_on_a_calibrated_model() -> None:
    runs = 400
    broken, chosen = failure_rate(lambda rng: simulate_census(rng, falling, 500), falling, runs)

    assert broken <= DELTA + tolerance(runs)
    assert chosen > 0.8


def test_it_keeps_its_promise_behind_a_gate() -> None:
    runs = 200

    def draw(rng: np.random.Generator) -> list[ReviewedItem]:
        return simulate_gate(rng, falling, 2000, threshold=0.8, rate=0.2)

    broken, chosen = failure_rate(draw, falling, runs)

    assert broken <= DELTA + tolerance(runs)
    assert chosen > 0.5


def test_it_keeps_its_promise_where_mixing_strata_breaks_it() -> None:
    # Scores in [0.8, 1) behind a gate at 0.95 auditing 5%: 8% errors above the gate, a clean
    # band under it, and half wrong below 0.93. The dozen audits are often all correct; mixed
    # with the band they then certify 0.93, where the true error rate is 5.7%.
    def model(scores: np.ndarray) -> np.ndarray:
        return np.where(scores >= 0.95, 0.08, np.where(scores >= 0.93, 0.0, 0.5))

    runs = 200
    broken = {"strata": 0, "mixed": 0}
    rng = np.random.default_rng(7)
    for _ in range(runs):
        items = simulate_gate(rng, model, 1000, threshold=0.95, rate=0.05, low=0.8)
        for name, sample in (("strata", items), ("mixed", pooled(items))):
            threshold = select_threshold(sample, alpha=ALPHA, delta=DELTA).threshold
            if threshold is not None:
                broken[name] += true_error_rate(model, threshold, low=0.8) > ALPHA

    assert broken["mixed"] / runs > DELTA + tolerance(runs)
    assert broken["strata"] / runs <= DELTA + tolerance(runs)


# The grid: a set-aside share chooses where the walk starts


def test_the_grid_walks_past_an_error_among_the_most_confident() -> None:
    items = census([0.99, *steps(0.98, 300)], errors_at=frozenset({0.99}))

    every_score = select_threshold(items, alpha=ALPHA, delta=DELTA)
    grid = select_threshold(items, alpha=ALPHA, delta=DELTA, set_aside=SET_ASIDE)

    # The error is the strictest item, which is tested (rank 0 is never set aside); the
    # clean set-aside says start low, where one error in 241 passes.
    assert every_score.threshold is None
    assert grid.threshold == min(steps(0.98, 300))
    assert (grid.n, grid.errors) == (241, 1)


def test_the_grid_tests_only_what_was_not_set_aside() -> None:
    items = census(steps(0.99, 500, 0.0019))

    result = select_threshold(items, alpha=ALPHA, delta=DELTA, set_aside=SET_ASIDE)

    assert max(row[1] for row in result.curve) == 400
    counts = [row[1] for row in result.curve]
    assert all(b >= a * 1.05 - 1 for a, b in itertools.pairwise(counts))


def test_a_set_aside_too_small_to_tell_is_not_used() -> None:
    # 200 items set aside at 20% would hold 40, under the 45 that can pass at all.
    items = census([*steps(0.99, 180), *steps(0.5, 20)], errors_at=frozenset({0.5}))

    assert select_threshold(items, alpha=ALPHA, delta=DELTA, set_aside=SET_ASIDE) == (
        select_threshold(items, alpha=ALPHA, delta=DELTA)
    )


def test_the_grid_counts_the_reviews_to_wait_for_with_the_set_aside() -> None:
    # 300 items, an error in every ten: nothing passes. The tested 240 need some number of
    # clean reviews more, and a fifth of what arrives is set aside again.
    items = census(steps(0.99, 300, 0.003), errors_at=frozenset(steps(0.99, 300, 0.03)))

    grid = select_threshold(items, alpha=ALPHA, delta=DELTA, set_aside=SET_ASIDE)

    assert grid.threshold is None
    assert grid.n == 240
    assert grid.errors == 30
    enough = next(n for n in range(240, 5000) if clopper_pearson_upper(30, n, DELTA) <= ALPHA)
    assert grid.reviews_needed == math.ceil((enough - 240) / (1 - SET_ASIDE))
    assert f"need {grid.reviews_needed} more" in grid.reason


def test_it_refuses_a_set_aside_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="set_aside"):
        set_aside_ranks(10, 1.0)
    with pytest.raises(ValueError, match="set_aside"):
        set_aside_ranks(10, -0.1)


def test_the_set_aside_spreads_evenly_by_rank() -> None:
    flags = set_aside_ranks(1000, 0.2)

    assert sum(flags) == 200
    assert all(sum(flags[i : i + 5]) == 1 for i in range(0, 1000, 5))
    counts = grid_counts(100, 45)
    assert (counts[0], counts[-1]) == (45, 100)
    # Each count at least 5% above the last (give or take the rounding down); the last is all.
    assert all(b >= a * 1.05 - 1 for a, b in itertools.pairwise(counts[:-1]))
    assert counts[-1] > counts[-2]
    assert grid_counts(30, 45) == []


def cliff(scores: np.ndarray) -> np.ndarray:
    return np.where(scores > 0.7, 0.01, 0.3)


GRID_SCENARIOS = {
    "every threshold bad": (steady(0.055), None),
    "calibrated model": (falling, None),
    "clean top, bad bottom": (cliff, None),
    "behind a gate": (falling, (0.8, 0.2)),
}


@pytest.mark.parametrize("scenario", sorted(GRID_SCENARIOS))
def test_the_grid_keeps_its_promise_in_every_scenario(scenario: str) -> None:
    model, gate = GRID_SCENARIOS[scenario]
    runs = 1000
    rng = np.random.default_rng(20250612)
    broken = 0
    for _ in range(runs):
        if gate is None:
            items = simulate_census(rng, model, 500)
        else:
            items = simulate_gate(rng, model, 1200, threshold=gate[0], rate=gate[1])
        threshold = select_threshold(items, alpha=ALPHA, delta=DELTA, set_aside=SET_ASIDE).threshold
        if threshold is not None:
            broken += true_error_rate(model, threshold) > ALPHA

    assert broken / runs <= DELTA + tolerance(runs)


# The audit draw


def test_it_draws_the_same_audit_sample_every_time() -> None:
    first = [audit_draw(b"secret", run, "gate", 0.3) for run in range(200)]

    assert first == [audit_draw(b"secret", run, "gate", 0.3) for run in range(200)]
    assert first == [audit_draw(b"secret", str(run), "gate", 0.3) for run in range(200)]
    assert first != [audit_draw(b"other", run, "gate", 0.3) for run in range(200)]
    assert first != [audit_draw(b"secret", run, "check", 0.3) for run in range(200)]


def test_it_maps_the_hmac_to_a_uniform_number() -> None:
    digest = hmac.new(b"secret", b"41:gate", hashlib.sha256).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64

    assert audit_draw(b"secret", 41, "gate", u + 1e-12)
    assert not audit_draw(b"secret", 41, "gate", u)


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.5])
def test_it_samples_at_the_stated_rate(rate: float) -> None:
    runs = 20000
    drawn = sum(audit_draw(b"secret", run, "gate", rate) for run in range(runs))

    assert abs(drawn / runs - rate) < 4 * math.sqrt(rate * (1 - rate) / runs)


def test_it_never_samples_at_rate_zero_and_always_at_rate_one() -> None:
    assert not any(audit_draw(b"secret", run, "gate", 0.0) for run in range(2000))
    assert all(audit_draw(b"secret", run, "gate", 1.0) for run in range(2000))
