"""Inter-rater agreement beyond chance: Cohen's kappa (two raters) and Fleiss' kappa (n).

Pure functions over ratings (any hashable categories); no ORM. The review side gathers the
ratings (`workflows.selectors_quorum.quorum_agreement`): a quorum's seats rate one item each.

kappa = (observed agreement - agreement expected by chance) / (1 - expected). It is 1 for
perfect agreement, 0 for agreement at chance level, negative below it, and undefined (None
here) when chance alone explains every agreement: everyone used one category only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

# Expected agreement this close to 1 leaves kappa's denominator at rounding noise.
_CERTAIN = 1e-12


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters, from one (rater A's, rater B's) pair per item.

    Chance agreement uses each rater's own category shares (Cohen 1960), so two raters who
    lean differently expect less agreement by chance than Fleiss' pooled shares would.
    """
    if not pairs:
        raise ValueError("no items to rate agreement on")
    total = len(pairs)
    observed = sum(1 for a, b in pairs if a == b) / total
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in first) / (total * total)
    return _kappa(observed, expected)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa (1971) of items that each have the same number n >= 2 of ratings.

    The raters need not be the same people from item to item, as with a quorum's seats.
    Per item, agreement is the share of agreeing pairs among its n(n-1) ordered pairs of
    ratings; chance agreement comes from the categories' shares over every rating.
    """
    if not items:
        raise ValueError("no items to rate agreement on")
    n = len(items[0])
    if n < 2:
        raise ValueError("kappa needs at least two ratings per item")
    if any(len(item) != n for item in items):
        raise ValueError("every item needs the same number of ratings for Fleiss' kappa")
    shares: Counter[Hashable] = Counter()
    observed = 0.0
    for item in items:
        counts = Counter(item)
        shares.update(counts)
        observed += (sum(c * c for c in counts.values()) - n) / (n * (n - 1))
    observed /= len(items)
    ratings = len(items) * n
    expected = sum((c / ratings) ** 2 for c in shares.values())
    return _kappa(observed, expected)


def _kappa(observed: float, expected: float) -> float | None:
    if expected >= 1 - _CERTAIN:
        return None
    return (observed - expected) / (1 - expected)
