"""Calibrated gate thresholds: the guarantee and the automation it leaves, old default vs new.

    python -m bench.calibration [--quick] [--json PATH]

Every scenario knows its truth. Scores and errors are drawn from a known model; a large
population drawn from the same model gives the true error rate above any threshold and the
share of traffic it covers. For each trial, a calibration set is drawn and `select_threshold`
(the real one) picks a threshold twice on the SAME items (common random numbers): with the old
default (`set_aside=0`: every distinct score tested from the strictest down) and with the grid
(`set_aside=SET_ASIDE`: a set-aside share chooses where to start; workflows/calibration_grid.py).

- violation: the chosen threshold's true error rate is above alpha (must happen in ≤ delta of
  the trials); shown with a 95% Clopper-Pearson interval.
- coverage vs hindsight: the true share of traffic the chosen threshold auto-approves (0 when
  none is chosen), averaged over trials, over the share the best threshold in hindsight covers
  (the lowest whose true error rate is ≤ alpha). "-" when that threshold covers nothing.

Scenarios: known-truth error curves over uniform scores (the ones tests/test_calibration.py
uses, and harder ones), one behind a gate (threshold and audit sample, so strata apply), and
a synthetic many-class classifier: dozens of labels with Zipf frequencies (a long tail), tail
labels harder, Gaussian logits that overlap, softmax confidence. Repetitions use different
seeds; the spread is the min and max over them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta as beta_dist

from bench.common import machine, parser, print_table, write_json
from workflows.calibration import ReviewedItem, select_threshold
from workflows.calibration_grid import SET_ASIDE

ALPHA, DELTA = 0.02, 0.05
ITEMS = 5000
POPULATION = 300_000
SEED = 20250612
TARGET_COVERAGE = 0.9

Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Scenario:
    name: str
    draw: Draw  # (scores, wrong) for `size` items of traffic
    gate: tuple[float, float] | None = None  # (threshold, audit rate) the data was reviewed under


def curve(model: Callable[[np.ndarray], np.ndarray], low: float = 0.0) -> Draw:
    def draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        scores = low + (1 - low) * rng.random(size)
        return scores, rng.random(size) < model(scores)

    return draw


def many_class(
    labels: int = 40, separation: float = 2.0, temperature: float = 1.0, zipf: float = 1.1
) -> Draw:
    """A softmax classifier over `labels` classes with a long tail of rare, harder labels."""
    freq = 1 / np.arange(1, labels + 1) ** zipf
    freq /= freq.sum()
    # The frequent labels are learnt best: their true logit stands out further.
    margin = separation * (1 + 1.5 * freq / freq.max())

    def draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        truth = rng.choice(labels, size=size, p=freq)
        logits = rng.normal(0.0, 1.0, (size, labels)) + np.log(freq)[None, :]
        logits[np.arange(size), truth] += margin[truth] + rng.normal(0.0, 0.8, size)
        z = logits / temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p.max(axis=1), p.argmax(axis=1) != truth

    return draw


SCENARIOS = [
    Scenario("falling 0.4(1-s)^2", curve(lambda s: 0.4 * (1 - s) ** 2)),
    Scenario("calibrated 1-s, s>0.5", curve(lambda s: 1 - s, low=0.5)),
    Scenario("flat 1%", curve(lambda s: np.full_like(s, 0.01))),
    Scenario("flat 5.5% (all bad)", curve(lambda s: np.full_like(s, 0.055))),
    Scenario("cliff 0.5% / 30% at 0.7", curve(lambda s: np.where(s > 0.7, 0.005, 0.3))),
    Scenario("falling, gate 0.8 audit 20%", curve(lambda s: 0.4 * (1 - s) ** 2), (0.8, 0.2)),
    Scenario("many-class 40 labels", many_class()),
    Scenario("many-class overconfident", many_class(temperature=0.7)),
    Scenario("many-class underconfident", many_class(temperature=1.5)),
    Scenario("many-class 80 labels, easy", many_class(labels=80, separation=3.0)),
    Scenario("many-class 40 labels, hard", many_class(separation=1.2)),
]


@dataclass(frozen=True)
class Truth:
    """The population, sorted by score: true coverage and error rate above any threshold."""

    scores: np.ndarray  # descending
    rate: np.ndarray  # error rate of the top i+1 items

    @classmethod
    def of(cls, scenario: Scenario, rng: np.random.Generator) -> Truth:
        scores, wrong = scenario.draw(rng, POPULATION)
        order = np.argsort(-scores, kind="stable")
        rate = np.cumsum(wrong[order]) / np.arange(1, POPULATION + 1)
        return cls(scores[order], rate)

    def at(self, threshold: float) -> tuple[float, float]:
        """(coverage, error rate) of auto-approving scores ≥ threshold."""
        count = int(np.searchsorted(-self.scores, -threshold, side="right"))
        return count / len(self.scores), float(self.rate[count - 1]) if count else 0.0

    def hindsight(self) -> float:
        """The coverage of the lowest threshold whose true error rate is ≤ alpha."""
        good = np.nonzero(self.rate <= ALPHA)[0]
        return (good[-1] + 1) / len(self.scores) if len(good) else 0.0


def reviewed(scenario: Scenario, rng: np.random.Generator, size: int) -> list[ReviewedItem]:
    """The calibration items: all of them, or what a gate sent to review."""
    if scenario.gate is None:
        scores, wrong = scenario.draw(rng, size)
        return [
            ReviewedItem(float(s), not w, None, "below") for s, w in zip(scores, wrong, strict=True)
        ]
    threshold, rate = scenario.gate
    items: list[ReviewedItem] = []
    while len(items) < size:  # traffic until `size` items were reviewed
        scores, wrong = scenario.draw(rng, size)
        drawn = rng.random(size) < rate
        for s, w, d in zip(scores, wrong, drawn, strict=True):
            if s < threshold:
                items.append(ReviewedItem(float(s), not w, None, "below", threshold))
            elif d:
                items.append(ReviewedItem(float(s), not w, rate, "audit", threshold))
    return items[:size]


def cp_interval(k: int, n: int) -> tuple[float, float]:
    low = 0.0 if k == 0 else float(beta_dist.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta_dist.ppf(0.975, k + 1, n - k))
    return low, high


def run_scenario(
    scenario: Scenario, seeds: Sequence[int], trials: int, size: int
) -> dict[str, Any]:
    truth = Truth.of(scenario, np.random.default_rng(SEED))
    best = truth.hindsight()
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        found = {"old": [0, 0.0], "new": [0, 0.0]}  # violations, summed coverage
        for _ in range(trials):
            items = reviewed(scenario, rng, size)
            for name, share in (("old", 0.0), ("new", SET_ASIDE)):
                picked = select_threshold(items, alpha=ALPHA, delta=DELTA, set_aside=share)
                chosen = picked.threshold
                if chosen is not None:
                    coverage, error = truth.at(chosen)
                    found[name][0] += error > ALPHA
                    found[name][1] += coverage
        per_seed.append(
            {name: {"violations": v, "coverage": c / trials} for name, (v, c) in found.items()}
        )
    result: dict[str, Any] = {"scenario": scenario.name, "hindsight_coverage": best}
    total = trials * len(seeds)
    for name in ("old", "new"):
        violations = sum(s[name]["violations"] for s in per_seed)
        coverages = [s[name]["coverage"] for s in per_seed]
        ratios = [c / best for c in coverages] if best > 0 else []
        result[name] = {
            "violation_rate": violations / total,
            "violation_ci95": cp_interval(violations, total),
            "coverage": float(np.mean(coverages)),
            "coverage_vs_hindsight": float(np.mean(ratios)) if ratios else None,
            "coverage_vs_hindsight_spread": [min(ratios), max(ratios)] if ratios else None,
        }
    return result


def fmt_ratio(entry: dict[str, Any]) -> str:
    ratio, spread = entry["coverage_vs_hindsight"], entry["coverage_vs_hindsight_spread"]
    if ratio is None:
        return "-"
    return f"{ratio:.2f} [{spread[0]:.2f}-{spread[1]:.2f}]"


def fmt_violations(entry: dict[str, Any]) -> str:
    low, high = entry["violation_ci95"]
    return f"{entry['violation_rate']:.3f} [{low:.3f}-{high:.3f}]"


def main(argv: Sequence[str] | None = None) -> None:
    args = parser("Calibrated gate thresholds: guarantee and coverage, old vs new.").parse_args(
        argv
    )
    started = time.perf_counter()
    seeds = [SEED + k for k in range(1, 3 if args.quick else 6)]
    trials = 50 if args.quick else 200
    info = machine()
    print(f"machine: {info['cpu_model']} x{info['cpu_count']}, Python {info['python']}")
    print(
        f"alpha={ALPHA}, delta={DELTA}, {ITEMS} calibration items, {len(seeds)} seeds x {trials}"
        f" trials = {len(seeds) * trials} per scenario, population {POPULATION}"
    )
    results = [run_scenario(s, seeds, trials, ITEMS) for s in SCENARIOS]
    rows = [
        [
            r["scenario"],
            f"{r['hindsight_coverage']:.3f}",
            fmt_violations(r["old"]),
            fmt_violations(r["new"]),
            fmt_ratio(r["old"]),
            fmt_ratio(r["new"]),
        ]
        for r in results
    ]
    print_table(
        [
            "scenario",
            "hindsight",
            "violations old [95% CI]",
            "violations new [95% CI]",
            "coverage/hindsight old [seeds]",
            "coverage/hindsight new [seeds]",
        ],
        rows,
        title=f"Every score (set_aside=0, default) vs grid (set_aside={SET_ASIDE}), same items",
    )
    violation_max = max(r["new"]["violation_rate"] for r in results)
    ratios = [
        r["new"]["coverage_vs_hindsight"]
        for r in results
        if r["new"]["coverage_vs_hindsight"] is not None
    ]
    coverage_min = min(ratios)
    print(
        f"\ngrid (set_aside={SET_ASIDE}): worst violation rate {violation_max:.3f} (target ≤"
        f" {DELTA}); worst coverage vs hindsight {coverage_min:.2f} (target ≥ {TARGET_COVERAGE})"
    )
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s{' (--quick)' if args.quick else ''}")
    if args.json:
        write_json(
            args.json,
            "calibration",
            {
                "violation_rate_max": violation_max,
                "coverage_vs_hindsight_min": coverage_min,
                "alpha": ALPHA,
                "delta": DELTA,
                "items": ITEMS,
                "seeds": seeds,
                "trials_per_seed": trials,
                "scenarios": results,
            },
        )


if __name__ == "__main__":
    main()
