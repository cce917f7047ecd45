"""`gate_calibrate` and `manage.py calibrate`: a threshold recommended from the review history,
and published with --apply (tests/calibrate_world.py builds the histories)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from tests.calibrate_world import ALPHA, DELTA, SPLIT_RATE, History, definition
from workflows.calibration import select_threshold
from workflows.errors import InvalidInput
from workflows.gate_calibration import TABLE_LEVELS
from workflows.models import AuditEvent, Workflow
from workflows.services.gates import gate_calibrate
from workflows.splits import TRAIN
from workflows.versions import step_config


@pytest.fixture(autouse=True)
def _split(settings: Any) -> None:
    settings.HITL_EVAL_SPLIT_RATE = SPLIT_RATE


def clean_top(history: History, count: int = 10, **kw: Any) -> None:
    """`count` approved items from 0.99 down by 0.01: audit-sampled at the 0.8 threshold."""
    for n in range(count):
        history.add(round(0.99 - n / 100, 2), **kw)


def mixed_history(make_workflow: Any, reviewer: User, slug: str = "tickets") -> History:
    """Ten clean audits at 0.90-0.99, an edit at 0.85, below-threshold reviews with errors;
    plus what must not count: train-side rejections and a rule hit at the top scores."""
    history = History(
        make_workflow(definition(slug), reviewer_group=reviewer.groups.get()), reviewer
    )
    clean_top(history)
    history.add(0.85, "edit")
    for score, action in [(0.79, "approve"), (0.7, "reject"), (0.6, "approve"), (0.5, "reject")]:
        history.add(score, action)
    history.add(0.99, "reject", side=TRAIN)
    history.add(0.98, "reject", side=TRAIN)
    history.add(0.97, "reject", flag=True)
    return history


def test_the_recommendation_is_select_threshold_on_the_unbiased_eval_sample(
    make_workflow: Any, reviewer: User
) -> None:
    history = mixed_history(make_workflow, reviewer)
    expected = select_threshold(history.expected, alpha=ALPHA, delta=DELTA)
    assert expected.threshold == 0.9  # the edit at 0.85 ends the walk

    [calibration] = gate_calibrate(workflow=history.workflow, now=history.clock)

    [result] = calibration.results
    assert (result.threshold, result.n, result.errors) == (0.9, expected.n, expected.errors)
    assert result.upper_bound == expected.upper_bound
    assert calibration.sample == len(history.expected) == 15
    assert calibration.left_out == {"rule": 1, "train": 2}
    assert (calibration.current, calibration.gate, calibration.version) == (0.8, "check", 1)
    assert (calibration.alpha, calibration.delta) == (ALPHA, DELTA)


def test_the_left_out_items_would_have_changed_the_answer(
    make_workflow: Any, reviewer: User
) -> None:
    history = mixed_history(make_workflow, reviewer)
    [calibration] = gate_calibrate(workflow=history.workflow)
    from workflows.calibration import ReviewedItem

    top_errors = [ReviewedItem(s, False, 1.0, "audit", 0.8) for s in (0.99, 0.98, 0.97)]
    polluted = select_threshold(history.expected + top_errors, alpha=ALPHA, delta=DELTA)
    assert polluted.threshold is None
    assert calibration.results[0].threshold == 0.9


def test_a_table_of_risk_and_coverage_at_a_handful_of_levels(
    make_workflow: Any, reviewer: User
) -> None:
    history = mixed_history(make_workflow, reviewer)
    [result] = gate_calibrate(workflow=history.workflow)[0].results

    rows = {row.threshold: row for row in result.table}
    assert sorted(rows) == sorted({*TABLE_LEVELS, 0.8, 0.9})
    # 15 items, audit rate 1 (weight 1): 10 score ≥ 0.9, all approved.
    assert (rows[0.9].n, rows[0.9].coverage, rows[0.9].observed_error) == (10, 10 / 15, 0.0)
    assert rows[0.8].observed_error == 1 / 11
    assert (rows[0.5].coverage, rows[0.5].observed_error) == (1.0, 3 / 15)
    assert rows[0.99].n == 1 and rows[0.99].upper_bound > ALPHA
    assert rows[0.9].upper_bound == result.upper_bound <= ALPHA
    assert result.automation == 10 / 15


def test_items_scored_by_an_older_model_version_do_not_count(
    make_workflow: Any, reviewer: User
) -> None:
    history = History(
        make_workflow(definition("versions"), reviewer_group=reviewer.groups.get()), reviewer
    )
    for score in (0.99, 0.98, 0.97):
        history.add(score, "reject", version="1", counts=False)
    clean_top(history, version="2")

    [calibration] = gate_calibrate(workflow=history.workflow)

    assert calibration.left_out == {"model_version": 3}
    expected = select_threshold(history.expected, alpha=ALPHA, delta=DELTA)
    assert calibration.results[0].threshold == expected.threshold == 0.9


def test_too_few_reviews_recommend_reviewing_everything_with_how_many_more(
    make_workflow: Any, reviewer: User
) -> None:
    history = History(
        make_workflow(definition("young"), reviewer_group=reviewer.groups.get()), reviewer
    )
    clean_top(history, 5)

    [result] = gate_calibrate(workflow=history.workflow)[0].results

    assert result.threshold is None and result.automation == 0.0
    assert result.reviews_needed == 3  # 8 clean reviews certify a level at alpha = delta = 20%


def test_per_label_splits_delta_across_the_labels(make_workflow: Any, reviewer: User) -> None:
    history = History(
        make_workflow(definition("labels", per_label=True), reviewer_group=reviewer.groups.get()),
        reviewer,
    )
    clean_top(history, 12, label="billing")
    clean_top(history, 3, label="refund")

    [calibration] = gate_calibrate(workflow=history.workflow)

    billing, refund = calibration.results
    assert (billing.label, refund.label) == ("billing", "refund")
    assert billing.delta == refund.delta == DELTA / 2
    billing_items = history.expected[:12]
    expected = select_threshold(billing_items, alpha=ALPHA, delta=DELTA / 2)
    assert billing.threshold == expected.threshold is not None
    assert refund.threshold is None


def test_errors_name_the_workflow_and_the_gate(make_workflow: Any, reviewer: User) -> None:
    workflow = make_workflow(definition("plain", calibrated=False))
    with pytest.raises(InvalidInput, match="no gate of plain declares calibrate"):
        gate_calibrate(workflow=workflow)
    with pytest.raises(InvalidInput, match="gate 'check' of plain does not declare calibrate"):
        gate_calibrate(workflow=workflow, gate_id="check")
    with pytest.raises(InvalidInput, match="plain has no gate 'classify'"):
        gate_calibrate(workflow=workflow, gate_id="classify")


def call(*args: str) -> str:
    out = StringIO()
    call_command("calibrate", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_the_recommendation_and_the_table(
    make_workflow: Any, reviewer: User
) -> None:
    mixed_history(make_workflow, reviewer)
    text = call("tickets")
    assert "tickets / check (version 1)" in text
    assert "recommended threshold 0.9 (now 0.8)" in text
    assert "15 items in the sample; left out: rule 1, train 2" in text
    assert "0.95" in text  # a table row
    assert Workflow.objects.get(slug="tickets").active_version.number == 1  # nothing applied


def test_apply_publishes_a_version_with_the_new_threshold_audited(
    make_workflow: Any, reviewer: User
) -> None:
    history = mixed_history(make_workflow, reviewer)
    text = call("tickets", "--gate", "check", "--apply")

    workflow = Workflow.objects.get(slug="tickets")
    assert workflow.active_version.number == 2
    config = step_config(workflow.active_version_id, "check")
    assert config.threshold == 0.9
    assert config.calibrate is not None and config.audit_rate == 1.0
    assert "published version 2" in text
    event = AuditEvent.objects.get(verb="gate.threshold_changed")
    payload = event.payload
    assert (payload["alpha"], payload["delta"], payload["gate"]) == (ALPHA, DELTA, "check")
    assert payload["old"]["threshold"] == 0.8 and payload["new"]["threshold"] == 0.9
    [result] = payload["results"]
    assert result["n"] == 10 and result["bound"] <= ALPHA  # the items scoring ≥ 0.9
    assert (payload["from_version"], payload["version"]) == (1, 2)
    assert event.object_id == str(history.workflow.pk)

    # The same history again: nothing to change, nothing published.
    call("tickets", "--apply")
    assert Workflow.objects.get(slug="tickets").active_version.number == 2


def test_apply_review_everything_publishes_no_threshold(make_workflow: Any, reviewer: User) -> None:
    history = History(
        make_workflow(definition("young"), reviewer_group=reviewer.groups.get()), reviewer
    )
    clean_top(history, 5)

    text = call("young", "--apply")

    workflow = Workflow.objects.get(slug="young")
    assert step_config(workflow.active_version_id, "check").threshold is None
    assert "review everything" in text and "3 more" in text


def test_the_command_refuses_unknown_names(make_workflow: Any, reviewer: User) -> None:
    make_workflow(definition("plain", calibrated=False))
    with pytest.raises(CommandError, match="no workflow 'nope'"):
        call("nope")
    with pytest.raises(CommandError, match="plain has no gate 'other'"):
        call("plain", "--gate", "other")
    with pytest.raises(CommandError, match="does not declare calibrate"):
        call("plain", "--gate", "check")
