"""Inference-time scaling on a SIMULATED model: adaptive vs fixed best-of-N, and a tier cascade.

    python -m bench.scaling [--quick] [--json PATH]

The strategies are the real ones from `workflows.ai.scaling`; only the model is simulated. Each
item has a fixed answer distribution and a sampler draws from it, as an LLM at temperature > 0
would. The figures therefore measure the strategies' stopping and voting, not any real model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import parser, print_table, write_json
from workflows.ai.scaling import (
    Batch,
    Sample,
    Sampler,
    ScalingResult,
    TierSpec,
    run_adaptive,
    run_best_of_n,
    run_cascade,
    run_tier,
)

SEED = 20250611
ITEMS = 5000
LABELS = ("A", "B", "C")  # "A" is the correct answer: the most likely one for the large model
ANSWERS = tuple(Sample.valid(label, raw=label) for label in LABELS)

# Answer distributions of the large model per difficulty.
DIFFICULTY = {
    "easy": (0.95, 0.03, 0.02),
    "medium": (0.65, 0.25, 0.10),
    "hard": (0.40, 0.35, 0.25),
}
PRODUCTION_MIX = {"easy": 0.80, "medium": 0.15, "hard": 0.05}
HARD_HEAVY_MIX = {"easy": 0.40, "medium": 0.30, "hard": 0.30}

# Usage per simulated call: one call per sample (no n>1), so calls = samples.
PROMPT_TOKENS = 600
OUTPUT_TOKENS = 150  # also max_tokens, so the budget look-ahead estimate is exact
EST_TOKENS_PER_CALL = PROMPT_TOKENS + OUTPUT_TOKENS

CAP, BATCH_SIZE, C = 40, 2, 0.95
FIXED_N = 40
TARGET_CALLS_RATIO = 5.0
TARGET_MAX_LOSS_PP = 0.5

# Cascade. Costs are in small-model calls; the local classifier runs in-process (no tokens): 0.
SMALL_COST = 1.0
SMALL_CAP = 8
# The small model sees the large model's answer distribution flattened towards uniform, and on
# some items it has a "blind spot": its favourite answer is a wrong one. Self-consistency cannot
# see a blind spot (the votes agree), so this rate is what limits a cascade.
SMALL_FLATTEN = 0.3
SMALL_BLIND_SPOT = {"easy": 0.02, "medium": 0.10, "hard": 0.25}
# The local classifier's predict_proba per difficulty (Beta parameters). It is overconfident:
# its error rate is LOCAL_ERROR_FACTOR times what predict_proba implies.
LOCAL_CONFIDENCE_BETA = {"easy": (12.0, 1.5), "medium": (4.0, 2.5), "hard": (2.5, 3.0)}
LOCAL_ERROR_FACTOR = 1.5
TOLERANCE_PP = 0.5  # cascade accuracy may trail large-only by this much on the calibration split
TARGET_SAVING = 0.60


@dataclass(frozen=True)
class Scenario:
    cost_ratio: float = 10.0  # large-model cost per call, in small-model calls
    small_flatten: float = SMALL_FLATTEN
    blind_spot_scale: float = 1.0  # multiplies SMALL_BLIND_SPOT

    def label(self) -> str:
        return (
            f"{self.cost_ratio:g}x, flatten {self.small_flatten:.0%}, "
            f"blind spots x{self.blind_spot_scale:g}"
        )


# The first is the headline; the others show what the saving hinges on.
SCENARIOS = (
    Scenario(),
    Scenario(cost_ratio=3.0),
    Scenario(cost_ratio=20.0),
    Scenario(blind_spot_scale=0.0),
    Scenario(small_flatten=0.15),
    Scenario(small_flatten=0.15, blind_spot_scale=0.5),
    Scenario(small_flatten=0.15, blind_spot_scale=0.0),
)

# Seed streams: (seed, split, item, stream) identifies every random draw, so a tier's answers for
# an item are the same whether it runs alone or inside a cascade.
TEST, CALIBRATION, HARD_HEAVY = 0, 1, 2
LARGE_ADAPTIVE, LARGE_FIXED, SMALL_DRAWS, SMALL_PROFILE, LOCAL_DRAWS = range(5)


def make_items(mix: dict[str, float], n: int, rng: np.random.Generator) -> list[str]:
    """Exactly the mix's proportions, in random order: less noise than drawing each class."""
    counts = {name: round(share * n) for name, share in mix.items()}
    counts[max(mix, key=lambda name: mix[name])] += n - sum(counts.values())
    items = [name for name, count in counts.items() for _ in range(count)]
    rng.shuffle(items)
    return items


def simulated_llm(probs: Sequence[float], key: list[int]) -> Sampler:
    rng = np.random.default_rng(key)

    def sample(k: int, /) -> Batch:
        picks = rng.choice(len(LABELS), size=k, p=probs)
        return Batch(
            samples=[ANSWERS[i] for i in picks],
            calls=k,
            input_tokens=k * PROMPT_TOKENS,
            output_tokens=k * OUTPUT_TOKENS,
        )

    return sample


def small_probs(difficulty: str, key: list[int], scenario: Scenario) -> tuple[float, ...]:
    large = np.array(DIFFICULTY[difficulty])
    probs = (1 - scenario.small_flatten) * large + scenario.small_flatten / len(LABELS)
    # One uniform draw per item, so a larger scale only adds blind spots (the sweep is nested).
    blind_spot = scenario.blind_spot_scale * SMALL_BLIND_SPOT[difficulty]
    if np.random.default_rng(key).random() < blind_spot:
        probs[[0, 1]] = probs[[1, 0]]
    return tuple(float(p) for p in probs)


def simulated_classifier(difficulty: str, key: list[int]) -> Sampler:
    """Deterministic: the same item always gets the same label and predict_proba."""
    rng = np.random.default_rng(key)
    confidence = float(np.clip(rng.beta(*LOCAL_CONFIDENCE_BETA[difficulty]), 1 / 3, 1.0))
    right = rng.random() >= LOCAL_ERROR_FACTOR * (1 - confidence)
    label = "A" if right else str(rng.choice(["B", "C"]))
    answer = Sample.valid(label, raw=label, confidence=confidence)

    def sample(k: int, /) -> Batch:
        return Batch(samples=[answer] * k, calls=k, input_tokens=0, output_tokens=0)

    return sample


def tokens(result: ScalingResult) -> int:
    return result.input_tokens + result.output_tokens


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# -- adaptive vs fixed best-of-N ------------------------------------------------------------


def compare_adaptive_fixed(mix: dict[str, float], n: int, seed: int, split: int) -> dict[str, Any]:
    items = make_items(mix, n, np.random.default_rng([seed, split]))
    rows: dict[str, list[tuple[int, int, bool, int, int, bool]]] = {d: [] for d in DIFFICULTY}
    for i, difficulty in enumerate(items):
        probs = DIFFICULTY[difficulty]
        adaptive = run_adaptive(
            simulated_llm(probs, [seed, split, i, LARGE_ADAPTIVE]),
            cap=CAP,
            batch_size=BATCH_SIZE,
            c=C,
            est_tokens_per_call=EST_TOKENS_PER_CALL,
        )
        fixed = run_best_of_n(simulated_llm(probs, [seed, split, i, LARGE_FIXED]), n=FIXED_N)
        rows[difficulty].append(
            (
                adaptive.calls,
                tokens(adaptive),
                adaptive.value == "A",
                fixed.calls,
                tokens(fixed),
                fixed.value == "A",
            )
        )

    def summary(data: np.ndarray) -> dict[str, Any]:
        loss = data[:, 5] - data[:, 2]  # per item: fixed right and adaptive wrong = 1
        return {
            "items": len(data),
            "adaptive_calls_per_item": float(data[:, 0].mean()),
            "adaptive_calls_p50": float(np.percentile(data[:, 0], 50)),
            "adaptive_calls_p90": float(np.percentile(data[:, 0], 90)),
            "adaptive_tokens_per_item": float(data[:, 1].mean()),
            "adaptive_accuracy": float(data[:, 2].mean()),
            "fixed_calls_per_item": float(data[:, 3].mean()),
            "fixed_tokens_per_item": float(data[:, 4].mean()),
            "fixed_accuracy": float(data[:, 5].mean()),
            "calls_ratio": float(data[:, 3].mean() / data[:, 0].mean()),
            "accuracy_loss_pp": float(100 * loss.mean()),
            # Paired standard error: both strategies answer the same items.
            "accuracy_loss_se_pp": float(100 * loss.std(ddof=1) / np.sqrt(len(loss))),
        }

    per_class = {d: np.array(r, dtype=float) for d, r in rows.items() if r}
    result = summary(np.concatenate(list(per_class.values())))
    result["by_difficulty"] = {d: summary(data) for d, data in per_class.items()}
    return result


def print_comparison(title: str, mix: dict[str, float], result: dict[str, Any]) -> None:
    header = ["", "calls/item", "tokens/item", "accuracy", "p50 calls", "p90 calls"]
    rows: list[list[object]] = [
        [
            f"adaptive (cap {CAP}, batch {BATCH_SIZE}, c={C})",
            f"{result['adaptive_calls_per_item']:.2f}",
            f"{result['adaptive_tokens_per_item']:,.0f}",
            pct(result["adaptive_accuracy"]),
            f"{result['adaptive_calls_p50']:.0f}",
            f"{result['adaptive_calls_p90']:.0f}",
        ],
        [
            f"best_of_n (N={FIXED_N})",
            f"{result['fixed_calls_per_item']:.2f}",
            f"{result['fixed_tokens_per_item']:,.0f}",
            pct(result["fixed_accuracy"]),
            str(FIXED_N),
            str(FIXED_N),
        ],
    ]
    print_table(header, rows, title=f"{title}: {result['items']} items")
    by_class: list[list[object]] = [
        [
            d,
            f"{mix[d]:.0%}",
            f"{r['adaptive_calls_per_item']:.2f}",
            pct(r["adaptive_accuracy"]),
            pct(r["fixed_accuracy"]),
            f"{r['accuracy_loss_pp']:+.2f}",
        ]
        for d, r in result["by_difficulty"].items()
    ]
    print_table(
        ["difficulty", "share", "adaptive calls", "adaptive acc", "fixed acc", "loss pp"], by_class
    )
    print(
        f"fixed ÷ adaptive calls: {result['calls_ratio']:.2f}x; accuracy loss "
        f"{result['accuracy_loss_pp']:+.2f} pp (paired SE {result['accuracy_loss_se_pp']:.2f} pp)"
    )


# -- cascade --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one tier, run alone, answers for one item."""

    correct: bool
    confidence: float | None
    calls: int
    tokens: int


def tiers_for(
    difficulty: str,
    key: list[int],
    scenario: Scenario,
    local: float | None,
    small: float | None,
) -> list[TierSpec]:
    """The cascade for one item (key = seed, split, item); a tier without threshold is left out."""
    tiers = []
    if local is not None:
        sampler = simulated_classifier(difficulty, [*key, LOCAL_DRAWS])
        tiers.append(TierSpec("local", sampler, "single", threshold=local, deterministic=True))
    if small is not None:
        probs = small_probs(difficulty, [*key, SMALL_PROFILE], scenario)
        small_llm = simulated_llm(probs, [*key, SMALL_DRAWS])
        tiers.append(
            TierSpec(
                "small",
                small_llm,
                "adaptive",
                cap=SMALL_CAP,
                c=C,
                threshold=small,
                est_tokens_per_call=EST_TOKENS_PER_CALL,
            )
        )
    # The same stream as the standalone adaptive run: escalated items get identical answers.
    large = simulated_llm(DIFFICULTY[difficulty], [*key, LARGE_ADAPTIVE])
    tiers.append(
        TierSpec("large", large, "adaptive", cap=CAP, c=C, est_tokens_per_call=EST_TOKENS_PER_CALL)
    )
    return tiers


def tier_outcomes(
    items: list[str], seed: int, split: int, scenario: Scenario
) -> dict[str, list[Outcome]]:
    """Every tier run alone on every item (the thresholds do not change what a tier answers)."""
    outcomes: dict[str, list[Outcome]] = {"local": [], "small": [], "large": []}
    for i, difficulty in enumerate(items):
        for spec in tiers_for(difficulty, [seed, split, i], scenario, 0.0, 0.0):
            result = run_tier(spec)
            outcome = Outcome(result.value == "A", result.confidence, result.calls, tokens(result))
            outcomes[spec.name].append(outcome)
    return outcomes


def calibrate(outcomes: dict[str, list[Outcome]], cost_ratio: float) -> dict[str, Any]:
    """The cheapest (local, small) thresholds whose accuracy is within tolerance of large-only.

    A threshold of None leaves the tier out, so large-only is always a candidate.
    """

    def column(tier: str, field: str) -> np.ndarray:
        values = [getattr(o, field) for o in outcomes[tier]]
        # NaN for no confidence: every comparison with it is False, so it escalates.
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    local_conf, small_conf = column("local", "confidence"), column("small", "confidence")
    right = {tier: column(tier, "correct") for tier in outcomes}
    small_calls, large_calls = column("small", "calls"), column("large", "calls")
    baseline = float(right["large"].mean())

    local_grid = [None, *np.round(np.arange(0.50, 1.0001, 0.01), 2).tolist()]
    small_grid = [None, *sorted({float(x) for x in small_conf if not np.isnan(x)})]
    never = np.zeros(len(local_conf), dtype=bool)
    best: dict[str, Any] | None = None
    for t_local in local_grid:
        at_local = never if t_local is None else local_conf >= t_local
        for t_small in small_grid:
            reach_small = never if t_small is None else ~at_local
            at_small = never if t_small is None else reach_small & (small_conf >= t_small)
            at_large = ~at_local & ~at_small
            correct = np.select(
                [at_local, at_small], [right["local"], right["small"]], right["large"]
            )
            accuracy = float(correct.mean())
            if 100 * (baseline - accuracy) > TOLERANCE_PP:
                continue
            spend = float(
                (SMALL_COST * np.where(reach_small, small_calls, 0)).mean()
                + (cost_ratio * SMALL_COST * np.where(at_large, large_calls, 0)).mean()
            )
            if best is None or spend < best["cost_per_item"]:
                best = {
                    "local": t_local,
                    "small": t_small,
                    "accuracy": accuracy,
                    "cost_per_item": spend,
                }
    assert best is not None
    best["baseline_accuracy"] = baseline
    return best


def evaluate_cascade(
    items: list[str], seed: int, thresholds: dict[str, Any], scenario: Scenario
) -> dict[str, Any]:
    """The real run_cascade on the test split, against the large tier alone on the same items."""
    prices = {"local": 0.0, "small": SMALL_COST, "large": scenario.cost_ratio * SMALL_COST}
    spend = base_spend = 0.0
    right = base_right = used_tokens = base_tokens = 0
    answered = {"local": 0, "small": 0, "large": 0}
    for i, difficulty in enumerate(items):
        key = [seed, TEST, i]
        result = run_cascade(
            tiers_for(difficulty, key, scenario, thresholds["local"], thresholds["small"])
        )
        baseline = run_tier(tiers_for(difficulty, key, scenario, None, None)[0])
        spend += sum(prices[t.name] * t.calls for t in result.tiers)
        base_spend += prices["large"] * baseline.calls
        right += result.value == "A"
        base_right += baseline.value == "A"
        used_tokens += tokens(result)
        base_tokens += tokens(baseline)
        answered[result.tier] += 1
    n = len(items)
    return {
        "scenario": dataclasses.asdict(scenario),
        "thresholds": {"local": thresholds["local"], "small": thresholds["small"]},
        "calibration_accuracy": thresholds["accuracy"],
        "calibration_large_only_accuracy": thresholds["baseline_accuracy"],
        "cascade_cost_per_item": spend / n,
        "large_only_cost_per_item": base_spend / n,
        "saving": 1 - spend / base_spend,
        "cascade_tokens_per_item": used_tokens / n,
        "large_only_tokens_per_item": base_tokens / n,
        "cascade_accuracy": right / n,
        "large_only_accuracy": base_right / n,
        "accuracy_loss_pp": 100 * (base_right - right) / n,
        "answered_by": {tier: count / n for tier, count in answered.items()},
    }


def run_cascades(n: int, seed: int, scenarios: Sequence[Scenario]) -> dict[str, Any]:
    test_items = make_items(PRODUCTION_MIX, n, np.random.default_rng([seed, TEST]))
    calibration_items = make_items(PRODUCTION_MIX, n, np.random.default_rng([seed, CALIBRATION]))
    # What a tier answers depends on the small model's quality, not on the cost ratio.
    calibrations: dict[tuple[float, float], dict[str, list[Outcome]]] = {}
    runs = []
    for scenario in scenarios:
        quality = (scenario.small_flatten, scenario.blind_spot_scale)
        if quality not in calibrations:
            calibrations[quality] = tier_outcomes(calibration_items, seed, CALIBRATION, scenario)
        thresholds = calibrate(calibrations[quality], scenario.cost_ratio)
        runs.append(evaluate_cascade(test_items, seed, thresholds, scenario))
    profiles = [
        {
            "tier": tier,
            "accuracy": float(np.mean([o.correct for o in rows])),
            "calls_per_item": float(np.mean([o.calls for o in rows])),
        }
        for tier, rows in tier_outcomes(test_items, seed, TEST, scenarios[0]).items()
    ]
    return {"tiers": profiles, "runs": runs}


def print_cascades(result: dict[str, Any]) -> None:
    blind = "/".join(f"{v:.0%}" for v in SMALL_BLIND_SPOT.values())
    how = {
        "local": "deterministic classifier, single, conf = predict_proba; errors "
        f"{LOCAL_ERROR_FACTOR:g}x what it implies",
        "small": f"adaptive cap {SMALL_CAP}; large's answers flattened {SMALL_FLATTEN:.0%} to "
        f"uniform; blind spots (mode wrong) on {blind} of easy/medium/hard",
        "large": f"adaptive cap {CAP}; the mix's distributions",
    }
    costs = {"local": "0", "small": f"{SMALL_COST:g}", "large": "ratio"}
    print_table(
        ["tier", "cost/call", "alone: acc", "calls/item", "how simulated"],
        [
            [
                p["tier"],
                costs[p["tier"]],
                pct(p["accuracy"]),
                f"{p['calls_per_item']:.2f}",
                how[p["tier"]],
            ]
            for p in result["tiers"]
        ],
        title="Cascade tiers, each alone (production mix, test split, headline scenario)",
    )
    rows: list[list[object]] = []
    for run in result["runs"]:
        th = run["thresholds"]
        rows.append(
            [
                Scenario(**run["scenario"]).label(),
                "skip" if th["local"] is None else f"{th['local']:.2f}",
                "skip" if th["small"] is None else f"{th['small']:.3f}",
                "/".join(f"{run['answered_by'][t]:.0%}" for t in ("local", "small", "large")),
                f"{run['cascade_cost_per_item']:.2f}",
                f"{run['large_only_cost_per_item']:.2f}",
                f"{run['saving']:.1%}",
                pct(run["cascade_accuracy"]),
                pct(run["large_only_accuracy"]),
                f"{run['accuracy_loss_pp']:+.2f}",
            ]
        )
    print_table(
        [
            "large cost, small model",
            "t_local",
            "t_small",
            "answered l/s/L",
            "cost/item",
            "large-only",
            "saving",
            "cascade acc",
            "large acc",
            "loss pp",
        ],
        rows,
        title="Cascade local -> small -> large vs the large tier alone (test split; cost in "
        "small-model calls; first row is the headline)",
    )


# -- main -----------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def print_setup() -> None:
    print("SIMULATED MODEL: answers are drawn from fixed per-item distributions; the strategies")
    print("are the real workflows.ai.scaling code. Figures measure the strategies, not an LLM.")
    print(
        f"{ITEMS} items per mix, seed {SEED}; {PROMPT_TOKENS} prompt + {OUTPUT_TOKENS} output "
        "tokens per call, one call per sample (no n>1)."
    )
    print_table(
        ["difficulty", "answer distribution", "production mix", "hard-heavy mix"],
        [
            [
                d,
                "/".join(f"{p:.2f}" for p in probs),
                f"{PRODUCTION_MIX[d]:.0%}",
                f"{HARD_HEAVY_MIX[d]:.0%}",
            ]
            for d, probs in DIFFICULTY.items()
        ],
        title="Mix (the correct answer is the most likely one)",
    )


def seed_sweep(seeds: Sequence[int]) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        r = compare_adaptive_fixed(PRODUCTION_MIX, ITEMS, seed, TEST)
        runs.append(
            {
                "seed": seed,
                "calls_ratio": r["calls_ratio"],
                "accuracy_loss_pp": r["accuracy_loss_pp"],
            }
        )
    print_table(
        ["seed", "calls ratio", "loss pp"],
        [[r["seed"], f"{r['calls_ratio']:.2f}", f"{r['accuracy_loss_pp']:+.2f}"] for r in runs],
        title="Production mix, adaptive vs best_of_n, other seeds",
    )
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    args = parser("Inference-time scaling on a simulated model.").parse_args(argv)
    started = time.perf_counter()
    print_setup()

    production = compare_adaptive_fixed(PRODUCTION_MIX, ITEMS, SEED, TEST)
    print_comparison("Production-like mix", PRODUCTION_MIX, production)
    hard_heavy = compare_adaptive_fixed(HARD_HEAVY_MIX, ITEMS, SEED, HARD_HEAVY)
    print_comparison("Hard-heavy mix", HARD_HEAVY_MIX, hard_heavy)
    ratio_met = production["calls_ratio"] >= TARGET_CALLS_RATIO
    loss_met = production["accuracy_loss_pp"] <= TARGET_MAX_LOSS_PP
    print(
        f"\nTarget (production mix): >= {TARGET_CALLS_RATIO:g}x fewer calls: "
        f"{production['calls_ratio']:.2f}x, {verdict(ratio_met)}; <= {TARGET_MAX_LOSS_PP} pp "
        f"accuracy loss: {production['accuracy_loss_pp']:+.2f} pp, {verdict(loss_met)}"
    )
    seeds = [] if args.quick else seed_sweep([SEED + k for k in range(1, 5)])

    print(
        f"\nCascade thresholds: chosen on a separate calibration split of {ITEMS} items as the "
        f"cheapest pair whose accuracy is\nwithin {TOLERANCE_PP} pp of the large tier alone, "
        "then measured on the test split (the items above)."
    )
    cascades = run_cascades(ITEMS, SEED, SCENARIOS)
    print_cascades(cascades)
    primary = cascades["runs"][0]
    saving_met = primary["saving"] >= TARGET_SAVING
    print(
        f"Target: >= {TARGET_SAVING:.0%} cheaper than the large tier alone ({SCENARIOS[0].label()})"
        f": {primary['saving']:.1%}, {verdict(saving_met)}"
    )
    print(
        "Sampling does not apply to the deterministic local classifier: it runs with 'single' and "
        "its confidence\nis predict_proba (validate_strategy refuses best_of_n and adaptive on it)."
    )
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s{' (--quick)' if args.quick else ''}")

    if args.json:
        setup = {
            "items": ITEMS,
            "seed": SEED,
            "difficulty": DIFFICULTY,
            "production_mix": PRODUCTION_MIX,
            "hard_heavy_mix": HARD_HEAVY_MIX,
            "tokens_per_call": {"prompt": PROMPT_TOKENS, "output": OUTPUT_TOKENS},
            "adaptive": {"cap": CAP, "batch_size": BATCH_SIZE, "c": C},
            "fixed_n": FIXED_N,
            "cascade": {
                "cost_per_call": {"local": 0, "small": SMALL_COST, "large": "cost_ratio x small"},
                "headline_scenario": dataclasses.asdict(SCENARIOS[0]),
                "small_cap": SMALL_CAP,
                "small_flatten": SMALL_FLATTEN,
                "small_blind_spot": SMALL_BLIND_SPOT,
                "local_confidence_beta": LOCAL_CONFIDENCE_BETA,
                "local_error_factor": LOCAL_ERROR_FACTOR,
                "tolerance_pp": TOLERANCE_PP,
            },
        }
        write_json(
            args.json,
            "scaling",
            {
                "simulated": True,
                "quick": args.quick,
                "calls_ratio": production["calls_ratio"],
                "accuracy_loss_pp": production["accuracy_loss_pp"],
                "cascade_saving": primary["saving"],
                "cascade_accuracy_loss_pp": primary["accuracy_loss_pp"],
                "hard_heavy_calls_ratio": hard_heavy["calls_ratio"],
                "hard_heavy_accuracy_loss_pp": hard_heavy["accuracy_loss_pp"],
                "targets_met": {
                    "calls_ratio": ratio_met,
                    "accuracy_loss": loss_met,
                    "cascade_saving": saving_met,
                },
                "seconds": elapsed,
                "setup": setup,
                "production": production,
                "hard_heavy": hard_heavy,
                "other_seeds": seeds,
                "cascade": cascades,
            },
        )


if __name__ == "__main__":
    main()
