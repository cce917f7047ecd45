"""`mode: auto`: the beat's recalibration tightens at once and loosens only by the minimum
step, after every `every` new calibration-side reviews, and only for gates that ask."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.calibrate_world import SPLIT_RATE, History, definition
from workflows.gate_calibration import auto_move
from workflows.models import AuditEvent, GateRecalibration, Workflow
from workflows.services.gates import gates_calibrate_due
from workflows.versions import step_config


@pytest.fixture(autouse=True)
def _split(settings: Any) -> None:
    settings.HITL_EVAL_SPLIT_RATE = SPLIT_RATE
    settings.HITL_CALIBRATE_MIN_STEP = 0.02


def history(make_workflow: Any, reviewer: User, slug: str, **gate: Any) -> History:
    workflow = make_workflow(definition(slug, **gate), reviewer_group=reviewer.groups.get())
    return History(workflow, reviewer)


def threshold_now(slug: str) -> float | None:
    workflow = Workflow.objects.get(slug=slug)
    return step_config(workflow.active_version_id, "check").threshold


def test_auto_move_rules() -> None:
    assert auto_move(0.8, 0.9, min_step=0.02) == "tighten"
    assert auto_move(0.8, None, min_step=0.02) == "tighten"
    assert auto_move(0.9, 0.89, min_step=0.02) == "keep"
    assert auto_move(0.9, 0.88, min_step=0.02) == "loosen"
    assert auto_move(None, 0.95, min_step=0.02) == "loosen"
    assert auto_move(None, None, min_step=0.02) == "keep"


def test_it_tightens_at_once_when_the_bound_fails_at_the_threshold_in_force(
    make_workflow: Any, reviewer: User
) -> None:
    h = history(make_workflow, reviewer, "tight", mode="auto", every=5)
    for n in range(10):
        h.add(round(0.99 - n / 100, 2))
    h.add(0.85, "edit")  # the level 0.85 fails: 0.8 is too loose

    assert gates_calibrate_due(now=h.clock) == {"tight/check": "tightened"}

    assert threshold_now("tight") == 0.9
    event = AuditEvent.objects.get(verb="gate.threshold_changed")
    assert (event.payload["old"]["threshold"], event.payload["new"]["threshold"]) == (0.8, 0.9)
    record = GateRecalibration.objects.get()
    assert (record.outcome, record.version) == ("tightened", 2)
    # Nothing new since: nothing is read, recorded or published.
    assert gates_calibrate_due(now=h.clock) == {}
    assert GateRecalibration.objects.count() == 1


def test_it_loosens_only_by_the_minimum_step(make_workflow: Any, reviewer: User) -> None:
    h = history(make_workflow, reviewer, "loose", threshold=0.95, mode="auto", every=5)
    for n in range(8):
        h.add(round(0.99 - n / 200, 3))  # audit sample above 0.95: 0.99 … 0.955
    for n in range(8):
        h.add(round(0.947 - n / 1000, 3))  # below it, clean: 0.947 … 0.94
    h.add(0.935, "reject")  # the walk stops here: the lowest passing level is 0.94

    assert gates_calibrate_due(now=h.clock) == {"loose/check": "kept"}
    assert threshold_now("loose") == 0.95  # 0.01 lower is less than the minimum step
    assert GateRecalibration.objects.get().outcome == "kept"

    # Five more reviews are needed before it looks again.
    for n in range(4):
        h.add(round(0.93 - n / 100, 2))
    assert gates_calibrate_due(now=h.clock) == {}


def test_it_loosens_when_a_level_a_step_lower_passes(make_workflow: Any, reviewer: User) -> None:
    h = history(make_workflow, reviewer, "looser", threshold=0.95, mode="auto", every=5)
    for n in range(8):
        h.add(round(0.99 - n / 200, 3))
    for n in range(8):
        h.add(round(0.94 - n / 100, 2))  # clean below 0.95: 0.94 … 0.87

    assert gates_calibrate_due(now=h.clock) == {"looser/check": "loosened"}
    assert threshold_now("looser") == 0.87


def test_recommend_mode_never_publishes(make_workflow: Any, reviewer: User) -> None:
    h = history(make_workflow, reviewer, "advice", every=1)
    for n in range(10):
        h.add(round(0.99 - n / 100, 2))
    h.add(0.85, "edit")

    assert gates_calibrate_due(now=h.clock) == {}
    assert threshold_now("advice") == 0.8
    assert not GateRecalibration.objects.exists()
