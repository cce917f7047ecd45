"""Review histories for the gate calibration tests: a scripted classifier (`probe` with
`answer`) guarded by a real gate, every review decided through the review services, on the
tests' clock. Plain functions and a small class, shared by the calibration test modules.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User

from tests.helpers import drive
from workflows import services
from workflows.calibration import ReviewedItem
from workflows.models import ReviewTask, Workflow
from workflows.splits import EVAL, split_of

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
# Loose enough that 8 clean reviews certify a level: histories stay small.
ALPHA = DELTA = 0.2
SPLIT_RATE = 0.5


def definition(
    slug: str,
    *,
    threshold: float | None = 0.8,
    audit_rate: float = 1.0,
    calibrated: bool = True,
    **calibrate: Any,
) -> dict[str, Any]:
    """classify (scripted by the run input) → check (a gate with a `flagged` rule)."""
    gate: dict[str, Any] = {
        "threshold": threshold,
        "audit_rate": audit_rate,
        "rules": [{"name": "flagged", "when": "has(input.flag)"}],
    }
    if calibrated:
        gate["calibrate"] = {"alpha": ALPHA, "delta": DELTA, **calibrate}
    return {
        "slug": slug,
        "name": slug.title(),
        "steps": [
            {"id": "classify", "kind": "probe", "config": {"answer": True}},
            {"id": "check", "kind": "gate", "config": gate},
        ],
    }


@dataclass
class History:
    """Items routed by `workflow`'s gate and decided by `reviewer`, one minute apart."""

    workflow: Workflow
    reviewer: User
    clock: datetime = T0
    # What the calibration should count, as the tests build it by hand.
    expected: list[ReviewedItem] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def add(
        self,
        score: float,
        action: str = "approve",
        *,
        label: str = "billing",
        side: str = EVAL,
        flag: bool = False,
        version: str | None = None,
        counts: bool | None = None,
    ) -> None:
        """Route one item and decide it; `counts` says whether calibration should use it
        (by default: on the eval side and not flagged)."""
        self.clock += timedelta(minutes=1)
        data: dict[str, Any] = {"id": self._id(side), "label": label, "score": score}
        if flag:
            data["flag"] = True
        if version is not None:
            data["model_version"] = version
        run = services.run_start(
            workflow=self.workflow, input=data, actor=services.Actor.system("tests"), now=self.clock
        )
        drive(run, now=self.clock)
        task = ReviewTask.objects.get(run=run, status__in=ReviewTask.LIVE)
        gate = task.step_run.meta
        extra: dict[str, Any] = {}
        if action != "approve":
            extra["reason"] = "wrong"
        if action == "edit":
            extra["output"] = {"label": "other"}
        services.review_decide(
            task=task, user=self.reviewer, action=action, claim=True, now=self.clock, **extra
        )
        if counts if counts is not None else (side == EVAL and not flag):
            audit = gate["reason"] == "audit_sample"
            self.expected.append(
                ReviewedItem(
                    score=score,
                    correct=action == "approve",
                    sampling_rate=gate["audit_rate"] if audit else None,
                    region="audit" if audit else "below",
                    threshold=gate["threshold"],
                )
            )

    def _id(self, side: str) -> str:
        # The split hashes the input's id: try ids until one falls on the wanted side.
        while True:
            candidate = f"t{next(self._ids)}"
            where = split_of(self.workflow.slug, {"id": candidate}, run_id=0, rate=SPLIT_RATE)
            if where == side:
                return candidate
