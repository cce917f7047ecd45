"""Gate thresholds with a stated guarantee (docs/gates.md).

`select_threshold` picks the lowest score λ such that, with probability at least 1 - delta, the
error rate among the items the gate auto-approves (score ≥ λ) is at most alpha.

Each candidate λ is a hypothesis test of "the error rate above λ exceeds alpha", rejected when
the Clopper-Pearson upper bound U at confidence 1 - delta is ≤ alpha. The walk tests λ from the
strictest down and stops at the first failure (fixed-sequence testing, as in Learn-then-Test):
every level it accepts lies above the first truly bad level, so passing that one level is the
only way to go wrong, which happens with probability ≤ delta, with no multiplicity correction.

Only unbiased review data counts, and what biases it is an inclusion probability that varies
with the score inside the region being bounded. Under a policy (threshold τ, audit rate r) an
item was reviewed with probability 1 below τ and r above it: a step at τ, flat on either side.
So the region [λ, ∞) is cut at every threshold τ > λ that was in force. Inside each piece, every
policy reviewed a fixed fraction of the items whatever their score, so the reviewed items there
are exchangeable draws from that piece: they are pooled unweighted, whatever their sampling rate,
and bounded with an exact binomial bound. Pieces are never pooled with each other: that would
need 1/r weights, and weighted counts have no exact binomial bound (twenty clean audits at r=2%
would count as a thousand). Instead every piece must pass at the full delta. The error rate of
[λ, ∞) is a weighted mean of the pieces' rates, so it is ≤ alpha when each piece's is; and if it
is above alpha then some piece's is too, and that piece's test alone passes with probability
≤ delta (an intersection-union test, so no union bound on delta is needed).

In the common case this reads: above the threshold in force, the audit samples of all rates are
pooled; to go below it, the items reviewed for scoring under it must certify the new band on
their own, and the audit sample must still certify the region above. "Rule" items never count:
rules pick items by content, and the items they catch are never auto-approved anyway.

Which levels are tested: by default every distinct score; with `set_aside`, a share of the items
set aside by score rank chooses where the walk starts and the rest are tested on a grid
(workflows/calibration_grid.py says why; bench/calibration.py compares the two).

Assumptions: the reviewed window is representative of the traffic to come (no drift), and the
audit draw ignores content (it hashes ids). Costs: each piece needs its own `min_reviews_needed`
clean items, so a gate whose threshold moves often in small steps fragments its data, and a
threshold once in force above every reviewed score leaves an empty piece that blocks the levels
under it. tests/test_calibration.py checks the end-to-end guarantee by simulation.

The module is pure: no Django, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from scipy.special import betaincinv

from workflows.calibration_grid import grid_counts, predicted_bound, set_aside_ranks

REGIONS = ("audit", "below", "rule")
# The console shows the Greek letters; named escapes keep the source free of confusables.
_ALPHA, _DELTA = "\N{GREEK SMALL LETTER ALPHA}", "\N{GREEK SMALL LETTER DELTA}"


@dataclass(frozen=True)
class ReviewedItem:
    """One reviewed item.

    `correct`: the reviewer approved the AI's answer unchanged (reject or edit is an error).
    `sampling_rate`: the audit rate in force when an "audit" item was drawn; None otherwise. It
    is kept for the record; the bound does not need it (see the module docstring).
    `region`: "audit" (drawn by the audit sample among items that passed the threshold),
    "below" (reviewed because it scored under the threshold) or "rule" (sent by a hard rule).
    `threshold`: the gate threshold in force when the item was routed. None means that none was,
    so every item was reviewed; an audit item always has one.
    """

    score: float
    correct: bool
    sampling_rate: float | None
    region: str
    threshold: float | None = None

    def __post_init__(self) -> None:
        # Inconsistent rows would silently bias the bound, so they fail loudly here.
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, not {self.region!r}")
        if self.region == "rule":
            return
        if not math.isfinite(self.score):
            raise ValueError("a calibration item needs a finite score")
        if self.region == "audit":
            if self.threshold is None:
                raise ValueError("an audit item needs the threshold that was in force")
            if self.sampling_rate is None or not 0 < self.sampling_rate <= 1:
                raise ValueError("an audit item needs a sampling rate in (0, 1]")
            if self.score < self.threshold:
                raise ValueError("an audit item scores at or above the threshold in force")
        elif self.threshold is not None and self.score >= self.threshold:
            raise ValueError("a below item scores under the threshold in force")


Row = tuple[float, int, int, float]


@dataclass(frozen=True)
class CalibrationResult:
    """The outcome for one gate (or one label).

    With a threshold, `n`, `errors` and `upper_bound` describe the items at or above it. Without
    one, they describe the level `reviews_needed` is counted from: the one that ended the walk
    or, if every level lacked items, the loosest. `upper_bound` is the largest bound over the
    level's pieces; `curve` rows are (λ, n, k, U) for every candidate, strictest first, with the
    same convention.
    """

    threshold: float | None
    alpha: float
    delta: float
    n: int
    errors: int
    upper_bound: float
    reviews_needed: int
    reason: str
    curve: list[Row]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "alpha": self.alpha,
            "delta": self.delta,
            "n": self.n,
            "errors": self.errors,
            "upper_bound": self.upper_bound,
            "reviews_needed": self.reviews_needed,
            "reason": self.reason,
            "curve": [list(row) for row in self.curve],
        }


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided upper bound at confidence 1 - delta on the error rate, after k errors in n."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    _check_level("delta", delta)
    return _upper(k, n, delta)


@lru_cache(maxsize=65536)
def _upper(k: int, n: int, delta: float) -> float:
    # Cached: the walk asks for the same (k, n) pairs over and over.
    if n == 0 or k == n:
        return 1.0
    return float(betaincinv(k + 1, n - k, 1 - delta))


def min_reviews_needed(alpha: float, delta: float) -> int:
    """The fewest items that, all correct, bring the bound to alpha: ~ ln(delta) / ln(1 - alpha)."""
    _check_level("alpha", alpha)
    _check_level("delta", delta)
    return _min_items(0, alpha, delta)


def select_threshold(
    items: Iterable[ReviewedItem],
    *,
    alpha: float,
    delta: float,
    candidates: Iterable[float] | None = None,
    min_items: int = 0,
    set_aside: float = 0.0,
) -> CalibrationResult:
    """Walk down from a starting level while every piece's bound is ≤ alpha.

    With `set_aside` > 0 (e.g. `calibration_grid.SET_ASIDE`), that share of the items (by score
    rank) only chooses the levels: the walk starts where they predict the lowest bound and steps
    down through a grid (`workflows.calibration_grid`); the other items are tested, and
    `reviews_needed` counts items of both kinds, as they will arrive. It is used only when the
    set-aside would hold `min_reviews_needed` items, and never with `candidates` or `min_items`.

    Otherwise (the default) the walk tests the candidates, by default every distinct score,
    from the strictest down. A level where some piece holds
    fewer than `min_reviews_needed` items cannot pass even with no errors, so it is skipped
    rather than ending the walk (otherwise the strictest level, which holds a single item, would
    end every walk). Skipping depends only on where items scored, never on whether they were
    errors, so the order of the tests is still fixed before their outcomes are seen.

    The first level tested therefore rests on about `min_reviews_needed` items, and one error
    among them ends the walk. `min_items` raises that floor (any count fixed in advance keeps the
    guarantee): fewer strict thresholds are reachable, but a rare error among the most confident
    items no longer blocks everything.
    """
    _check_level("alpha", alpha)
    _check_level("delta", delta)
    usable = sorted((i for i in items if i.region != "rule"), key=lambda i: -i.score)
    floor = max(min_reviews_needed(alpha, delta), min_items)
    # A set-aside smaller than the floor could not tell a level that passes from one that fails.
    share = set_aside if candidates is None and min_items == 0 else 0.0
    share = share if len(usable) * share >= floor else 0.0
    if share:
        usable, levels = _grid(usable, share, floor, delta)
    elif candidates is None:
        levels = sorted({i.score for i in usable}, reverse=True)
    else:
        levels = sorted(set(candidates), reverse=True)

    curve: list[Row] = []
    chosen: tuple[float, list[_Piece]] | None = None
    stopped: tuple[float, list[_Piece]] | None = None
    for lam, pieces in _pieces_by_level(usable, levels):
        bound = max(clopper_pearson_upper(p.k, p.n, delta) for p in pieces)
        curve.append((lam, sum(p.n for p in pieces), sum(p.k for p in pieces), bound))
        if stopped is not None or any(p.n < floor for p in pieces):
            continue
        if bound <= alpha:
            chosen = (lam, pieces)
        else:
            stopped = (lam, pieces)  # the first tested level that fails ends the walk

    if chosen is not None:
        lam, pieces = chosen
        n, k, bound = _totals(pieces, delta)
        reason = (
            f"auto-approve scores ≥ {lam:g}: {_errors(k)} in {n} reviewed items bound the error"
            f" rate at {_pct(bound)} with {_pct(1 - delta)} confidence ({_ALPHA}={_pct(alpha)})"
        )
        return CalibrationResult(lam, alpha, delta, n, k, bound, 0, reason, curve)

    goal = f" to auto-approve at {_ALPHA}={_pct(alpha)}, {_DELTA}={_pct(delta)}"
    if not curve:
        need = _arriving(floor, share)
        reason = f"no reviewed items yet: need {need} with no errors" + goal
        return CalibrationResult(None, alpha, delta, 0, 0, 1.0, need, reason, curve)
    # Count from the level that failed or, when every level lacked items, from the loosest.
    lam, pieces = stopped or next(iter(_pieces_by_level(usable, [levels[-1]])))
    n, k, bound = _totals(pieces, delta)
    needs = [_need(piece, floor, alpha, delta) for piece in _split(usable, lam, pieces)]
    total = _arriving(sum(need.extra for need in needs), share)
    worst = max(needs, key=lambda need: need.extra)
    where = ""
    if worst.blocker is not None:
        where = f" scoring above {worst.blocker[1]:g}"
    elif len(pieces) > 1:
        # Say where: reviews elsewhere cannot stand in for the piece that lacks them.
        where = f" scoring ≥ {worst.piece.lower:g}"
    if where and len(pieces) > 1 and math.isfinite(worst.piece.upper):
        where += f" and < {worst.piece.upper:g}"
    reason = f"need {total} more reviewed items with no errors{where}{goal}"
    if worst.blocker is not None:
        errors, score = worst.blocker
        reason = f"{_errors(errors)} at scores ≥ {score:g}: {reason}"
    return CalibrationResult(None, alpha, delta, n, k, bound, total, reason, curve)


def select_thresholds_per_label(
    items_by_label: Mapping[str, Iterable[ReviewedItem]],
    *,
    alpha: float,
    delta: float,
    candidates: Iterable[float] | None = None,
    min_items: int = 0,
    set_aside: float = 0.0,
) -> dict[str, CalibrationResult]:
    """One independent threshold per predicted label.

    Each label holds its own guarantee at delta. The gate's whole auto-approved stream is a
    mixture of the labels, so it too stays ≤ alpha whenever every label does, which by a union
    bound holds with probability at least 1 - labels * delta; pass delta / labels for that.
    """
    chosen = None if candidates is None else list(candidates)
    return {
        label: select_threshold(
            items,
            alpha=alpha,
            delta=delta,
            candidates=chosen,
            min_items=min_items,
            set_aside=set_aside,
        )
        for label, items in items_by_label.items()
    }


def audit_draw(secret: bytes, run_id: int | str, step_id: str, rate: float) -> bool:
    """The gate's audit sample: deterministic per run and step, uniform across them."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    digest = hmac.new(secret, f"{run_id}:{step_id}".encode(), hashlib.sha256).digest()
    # 64 bits to [0, 1): rate 0 never samples and rate 1 always does.
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class _Piece:
    """Reviewed items in one piece of [λ, ∞) between consecutive thresholds in force."""

    lower: float
    upper: float
    n: int = 0
    k: int = 0


def _pieces_by_level(
    usable: list[ReviewedItem], levels: list[float], cuts: list[float] | None = None
) -> Iterable[tuple[float, list[_Piece]]]:
    """For each λ (descending), the pieces of [λ, ∞) cut at the thresholds in force above λ.

    `cuts` defaults to the thresholds of `usable`; pass them to cut two samples alike."""
    if cuts is None:
        cuts = _cuts(usable)
    # Pieces top first; the last one is [λ, next cut up) and grows as λ walks down.
    pieces = [_Piece(lower=math.inf, upper=math.inf)]
    cut_at = taken = 0

    def take_down_to(bound: float) -> None:
        nonlocal taken
        while taken < len(usable) and usable[taken].score >= bound:
            pieces[-1].n += 1
            pieces[-1].k += not usable[taken].correct
            taken += 1

    for lam in levels:
        while cut_at < len(cuts) and cuts[cut_at] > lam:
            take_down_to(cuts[cut_at])
            pieces[-1].lower = cuts[cut_at]
            pieces.append(_Piece(lower=math.inf, upper=cuts[cut_at]))
            cut_at += 1
        take_down_to(lam)
        pieces[-1].lower = lam
        yield lam, [_Piece(p.lower, p.upper, p.n, p.k) for p in pieces]


def _cuts(usable: list[ReviewedItem]) -> list[float]:
    return sorted({i.threshold for i in usable if i.threshold is not None}, reverse=True)


def _grid(
    usable: list[ReviewedItem], share: float, floor: int, delta: float
) -> tuple[list[ReviewedItem], list[float]]:
    """The items to test and the levels to test them at, strictest first (calibration_grid)."""
    cuts = _cuts(usable)
    flags = set_aside_ranks(len(usable), share)
    aside = [item for item, flag in zip(usable, flags, strict=True) if flag]
    tested = [item for item, flag in zip(usable, flags, strict=True) if not flag]
    counts = grid_counts(len(tested), floor) or ([len(tested)] if tested else [])
    levels = sorted({tested[c - 1].score for c in counts}, reverse=True)
    predicted = [
        predicted_bound([p.n for p in mine], [(p.k, p.n) for p in theirs], delta)
        for (_, mine), (_, theirs) in zip(
            _pieces_by_level(tested, levels, cuts),
            _pieces_by_level(aside, levels, cuts),
            strict=True,
        )
    ]
    start = predicted.index(min(predicted)) if predicted else 0
    return tested, levels[start:]


def _arriving(count: int, share: float) -> int:
    """Reviews to wait for so that `count` of them are tested, the share set aside apart."""
    return math.ceil(count / (1 - share))


@dataclass(frozen=True)
class _Split:
    piece: _Piece
    items: list[ReviewedItem]


def _split(usable: list[ReviewedItem], lam: float, pieces: list[_Piece]) -> list[_Split]:
    """The items of each piece at level λ, strictest first."""
    split = [_Split(piece, []) for piece in pieces]
    for item in usable:
        if item.score < lam:
            break
        # Pieces run top first, so an item belongs to the first whose lower end it reaches.
        next(s for s in split if item.score >= s.piece.lower).items.append(item)
    return split


@dataclass(frozen=True)
class _Need:
    piece: _Piece
    extra: int
    blocker: tuple[int, float] | None  # (errors so far, score) of the error that blocks


def _need(split: _Split, floor: int, alpha: float, delta: float) -> _Need:
    """Correct reviews to add to a piece, scoring above its current ones, so that it passes.

    A piece no bigger than the walk's floor is tested first on its `floor` strictest items, so
    new reviews must push out the error that makes those fail. A bigger one is only diluted.
    """
    items, piece = split.items, split.piece
    if len(items) > floor:
        return _Need(piece, max(0, _min_items(piece.k, alpha, delta) - len(items)), None)
    allowed = _max_errors(floor, alpha, delta)
    errors = 0
    for rank, item in enumerate(items, 1):
        errors += not item.correct
        if errors > allowed:
            return _Need(piece, floor - rank + 1, (errors, item.score))
    return _Need(piece, floor - len(items), None)


def _max_errors(n: int, alpha: float, delta: float) -> int:
    """The most errors n items may hold with a bound still ≤ alpha (n ≥ min_reviews_needed)."""
    k = 0
    while _min_items(k + 1, alpha, delta) <= n:
        k += 1
    return k


@lru_cache(maxsize=4096)
def _min_items(k: int, alpha: float, delta: float) -> int:
    """The fewest items whose bound, with k errors among them, is ≤ alpha."""
    # The bound falls as items are added with k fixed, and lies above k / n, so the answer is
    # past k / alpha: double from there, then bisect.
    low = max(k, math.floor(k / alpha))
    high = low + 1
    while _upper(k, high, delta) > alpha:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if _upper(k, mid, delta) > alpha else (low, mid)
    return high


def _totals(pieces: list[_Piece], delta: float) -> tuple[int, int, float]:
    n = sum(p.n for p in pieces)
    k = sum(p.k for p in pieces)
    return n, k, max(_upper(p.k, p.n, delta) for p in pieces)


def _errors(k: int) -> str:
    return "1 error" if k == 1 else f"{k} errors"


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


def _check_level(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
