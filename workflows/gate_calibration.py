"""A gate's calibration from its review history: which reviewed items count, and the answer.

`gate_sample` keeps the settled gate items (`workflows.datasets.GateItem`) that are unbiased
evidence about the gate's errors, as `workflows.calibration` requires: items reviewed because
they scored under the threshold in force, and the audit sample, each with the threshold and
audit rate the gate recorded when it routed them. It leaves out rule hits (picked by content),
items without a score, items on the training side of the evaluation split (a reviewed item
serves training or calibration, never both), and items scored by another version of the model
than the one in force. An item is correct when the final decision approved the AI's answer
unchanged; an edit or a rejection is an error (an escalation is never a final decision).

`recommend` calls `select_threshold` and adds a small risk-coverage table. Coverage and the
observed error there are weighted by how the items were drawn (an audit item drawn at rate r
stands for 1/r items), so they estimate shares of the traffic the sample came from; the bound
is the calibration's own, which needs no weights (calibration.py says why).

`auto_move` is the rule of `mode: auto`: tighten at once when the guarantee fails at the
threshold in force, loosen only by at least a minimum step, since every threshold that was
in force cuts the score range into pieces that must each pass on their own.

Pure: no ORM, no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.calibration import ReviewedItem, select_threshold
from workflows.datasets import GateItem, region_of
from workflows.splits import EVAL, split_of

# Levels the risk-coverage table always shows, with the threshold in force and the new one.
TABLE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
FINAL_ACTIONS = ("approve", "edit", "reject")
# Floating-point slack when comparing a move with the minimum step.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Counted:
    """One item of the calibration sample."""

    item: ReviewedItem
    label: str | None
    weight: float  # how many routed items it stands for: 1, or 1 / audit rate
    decision_id: int


@dataclass
class Sample:
    counted: list[Counted] = field(default_factory=list)
    # Reviewed items of the gate left out, by why: rule, no_score, train, model_version.
    left_out: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Level:
    """One row of the risk-coverage table: what auto-approving at `threshold` would mean."""

    threshold: float
    coverage: float  # weighted share of the sample scoring ≥ threshold
    observed_error: float | None  # weighted error rate among those; None if there are none
    upper_bound: float  # the calibration bound at this level (max over its pieces)
    n: int  # reviewed items scoring ≥ threshold


@dataclass(frozen=True)
class Recommendation:
    """The answer for the gate (label None) or for one predicted label."""

    label: str | None
    current: float | None  # the threshold in force; None reviews everything
    threshold: float | None  # the recommendation; None: review everything
    delta: float  # the delta this answer was computed at (split across labels)
    n: int
    errors: int
    upper_bound: float
    reviews_needed: int  # clean reviews still needed when threshold is None
    automation: float  # weighted share of the sample the recommendation auto-approves
    reason: str
    table: list[Level]


def model_key(item: GateItem) -> str:
    """Which model answered: the AI step's answering tier, or else the guarded step."""
    return str(item.guarded_meta.get("model") or item.guarded_step or "")


def latest_versions(items: Iterable[GateItem], known: Mapping[str, str]) -> dict[str, str]:
    """The model version in force per model: `known` (resolved by the caller, e.g. a local
    model's newest version), else the version recorded by the most recently routed item."""
    latest: dict[str, tuple[Any, int, str]] = {}
    for item in items:
        version = item.guarded_meta.get("model_version")
        if version is None:
            continue
        key, when = model_key(item), (item.created_at, item.run_id)
        if key not in latest or when > latest[key][:2]:
            latest[key] = (item.created_at, item.run_id, str(version))
    versions = {key: version for key, (_, _, version) in latest.items()}
    versions.update({key: known[key] for key in versions if key in known})
    return versions


def gate_sample(items: Iterable[GateItem], *, rate: float, versions: Mapping[str, str]) -> Sample:
    """The calibration sample among one gate's settled items (see the module docstring)."""
    sample = Sample()
    for item in items:
        if item.decision_id is None or item.action not in FINAL_ACTIONS:
            continue
        region = region_of(item.gate_meta)
        if region not in ("audit", "below_threshold"):
            sample.left_out[region] += 1
            continue
        score = item.gate_meta.get("confidence")
        if score is None:
            sample.left_out["no_score"] += 1
            continue
        if split_of(item.workflow, item.run_input, run_id=item.run_id, rate=rate) != EVAL:
            sample.left_out["train"] += 1
            continue
        version = item.guarded_meta.get("model_version")
        if version is not None and versions.get(model_key(item), str(version)) != str(version):
            sample.left_out["model_version"] += 1
            continue
        audit = region == "audit"
        audit_rate = float(item.gate_meta.get("audit_rate") or 0)
        reviewed = ReviewedItem(
            score=float(score),
            correct=item.action == "approve",
            sampling_rate=audit_rate if audit else None,
            region="audit" if audit else "below",
            threshold=item.gate_meta.get("threshold"),
        )
        label = item.gate_meta.get("label")
        weight = 1 / audit_rate if audit else 1.0
        sample.counted.append(Counted(reviewed, label, weight, item.decision_id))
    return sample


def recommend_gate(
    sample: Sample,
    *,
    alpha: float,
    delta: float,
    per_label: bool,
    current: float | None,
    current_by_label: Mapping[str, float],
) -> list[Recommendation]:
    """One recommendation for the gate or, `per_label`, one per label seen in the sample,
    each at delta / labels so that the whole gate holds its guarantee at delta."""
    if not per_label:
        return [recommend(sample.counted, alpha=alpha, delta=delta, current=current)]
    groups: dict[str, list[Counted]] = {}
    for counted in sample.counted:
        if counted.label is not None:
            groups.setdefault(counted.label, []).append(counted)
    each = delta / max(1, len(groups))
    return [
        recommend(
            groups[label],
            alpha=alpha,
            delta=each,
            current=current_by_label.get(label, current),
            label=label,
        )
        for label in sorted(groups)
    ]


def recommend(
    counted: list[Counted],
    *,
    alpha: float,
    delta: float,
    current: float | None,
    label: str | None = None,
) -> Recommendation:
    items = [c.item for c in counted]
    result = select_threshold(items, alpha=alpha, delta=delta)
    shown = {*TABLE_LEVELS, *(x for x in (current, result.threshold) if x is not None)}
    levels = sorted(shown, reverse=True)
    curve = select_threshold(items, alpha=alpha, delta=delta, candidates=levels).curve
    table = [_level(counted, lam, n, bound) for lam, n, _, bound in curve]
    automation = 0.0
    if result.threshold is not None:
        automation = _level(counted, result.threshold, 0, 1.0).coverage
    return Recommendation(
        label=label,
        current=current,
        threshold=result.threshold,
        delta=delta,
        n=result.n,
        errors=result.errors,
        upper_bound=result.upper_bound,
        reviews_needed=result.reviews_needed,
        automation=automation,
        reason=result.reason,
        table=table,
    )


def _level(counted: list[Counted], lam: float, n: int, bound: float) -> Level:
    total = sum(c.weight for c in counted)
    above = [c for c in counted if c.item.score >= lam]
    weight = sum(c.weight for c in above)
    wrong = sum(c.weight for c in above if not c.item.correct)
    return Level(
        threshold=lam,
        coverage=weight / total if total else 0.0,
        observed_error=wrong / weight if weight else None,
        upper_bound=bound,
        n=n,
    )


def auto_move(current: float | None, recommended: float | None, *, min_step: float) -> str:
    """`tighten`, `loosen` or `keep`, for a gate in `mode: auto`.

    The guarantee holds at the threshold in force when it is at or above the lowest level that
    passed (or when there is none, which reviews everything). When it does not hold, the gate
    tightens at once, to the recommendation or to reviewing everything. It loosens only when a
    lower level passed at least `min_step` below the one in force (from reviewing everything,
    any passing level is a step).
    """
    if current is not None and (recommended is None or recommended > current):
        return "tighten"
    if recommended is not None and (
        current is None or current - recommended >= min_step - _EPSILON
    ):
        return "loosen"
    return "keep"
