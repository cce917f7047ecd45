"""Which levels `select_threshold` tests by default: a grid chosen on a part set aside for it.

Testing every distinct score from the strictest down wastes the guarantee: the first level
tested holds only `min_reviews_needed` items, a single error among them fails it, and
fixed-sequence testing then ends the walk there, however clean the thousands of items below
are. Starting lower helps only if the start is chosen where the bound is likely to pass, and
that depends on how errors fall with the score, which only the data can say.

So a share of the reviewed items (every fifth by score rank, by default) is set aside: it only
chooses where the walk starts. For each candidate level the set-aside items give an error rate
per piece, and the bound the remaining items would get at that rate is predicted; the walk starts
at the level with the lowest predicted bound and walks down through levels spaced so that each
holds a few percent more items than the last. The remaining items alone are tested, so the
guarantee is the one of fixed-sequence testing, unchanged: the order of the tests depends only on
the scores and on the set-aside items' outcomes, which are independent of the tested items'
outcomes given their scores. Taking items by rank uses no outcome, so it keeps that independence.

The cost is the set-aside share of the data; tests/test_calibration.py and bench/calibration.py
measure what it buys. The module is pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from scipy.special import betaincinv

# Every fifth item by score rank chooses the start; the other four fifths are tested.
SET_ASIDE = 0.2
# Consecutive tested levels hold at least this many times the items of the previous one.
GROWTH = 1.05


def set_aside_ranks(count: int, share: float) -> list[bool]:
    """Which of `count` items, in score rank order, are set aside: evenly spread by rank."""
    if not 0 <= share < 1:
        raise ValueError(f"set_aside must be in [0, 1), got {share}")
    if share == 0:
        return [False] * count
    # Item i is set aside when the running share crosses a whole number at i.
    return [int((i + 1) * share) > int(i * share) for i in range(count)]


def grid_counts(count: int, floor: int, growth: float = GROWTH) -> list[int]:
    """Item counts at which to test, from `floor` up to `count`, each ≥ growth times the last."""
    counts: list[int] = []
    at = float(max(floor, 1))
    while at <= count:
        counts.append(int(at))
        at = max(at + 1, at * growth)
    if counts and counts[-1] != count:
        counts.append(count)
    return counts


def predicted_bound(tested: Sequence[int], aside: Sequence[tuple[int, int]], delta: float) -> float:
    """The bound a level would get if each piece's tested items had the set-aside error rate.

    `tested` holds the tested items per piece, `aside` the set-aside (errors, items) per piece,
    top first. A piece nothing was set aside from predicts nothing, so its bound is 1.
    """
    worst = 0.0
    for n, (k, m) in zip(tested, aside, strict=True):
        if n == 0 or m == 0:
            return 1.0
        errors = n * k / m
        worst = max(worst, float(betaincinv(errors + 1, n - errors, 1 - delta)))
    return worst
