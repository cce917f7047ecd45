"""Agreement among a workflow's quorum seats: the selector and `manage.py review agreement`."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from tests.review.conftest import T0, minutes
from workflows import services
from workflows.models import ReviewTask, Run, Workflow
from workflows.selectors_quorum import quorum_agreement

pytestmark = pytest.mark.django_db

T1 = T0 + minutes(1)
REFUND = {"label": "refund"}


def answer(task: ReviewTask, user: User, action: str, output: object = None) -> None:
    services.review_decide(
        task=task,
        user=user,
        action=action,
        output=output,
        reason="" if action == "approve" else "because",
        claim=True,
        now=T1,
    )


@pytest.fixture
def rated(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    reviewer: User,
    second_reviewer: User,
) -> Workflow:
    """Five gates, two seats each: (billing, billing), (billing, refund), (refund, refund),
    (billing, reject), and one escalated by its first seat (no rating)."""
    workflow = make_gate_workflow({"threshold": 0.8, "quorum": {"required": 2, "of": 2}})
    plans: list[list[tuple[str, object]]] = [
        [("approve", None), ("approve", None)],
        [("approve", None), ("edit", REFUND)],
        [("edit", REFUND), ("edit", REFUND)],
        [("approve", None), ("reject", None)],
        [("escalate", None)],
    ]
    for plan in plans:
        run = start(workflow)
        seats = list(ReviewTask.objects.filter(run=run, seat__gt=0).order_by("seat"))
        for (action, output), task, user in zip(
            plan, seats, [reviewer, second_reviewer], strict=False
        ):
            answer(task, user, action, output)
    return workflow


def test_kappa_over_the_seats_answers(rated: Workflow) -> None:
    report = quorum_agreement(workflow=rated)
    assert (report.items, report.raters) == (4, 2)
    # Pairs (seat 1, seat 2): (B, B), (B, R), (R, R), (B, X). Observed agreement 2/4 = 0.5.
    # Cohen: seat 1 gave B 3, R 1; seat 2 gave B 1, R 2, X 1: p_e = (3 + 2) / 16 = 0.3125,
    # kappa = 0.1875 / 0.6875. Fleiss: pooled B 4, R 3, X 1 of 8: p_e = 26 / 64 = 0.40625,
    # kappa = 0.09375 / 0.59375.
    assert report.cohen == pytest.approx(0.1875 / 0.6875)
    assert report.fleiss == pytest.approx(0.09375 / 0.59375)


def test_the_command_prints_kappa_and_the_item_count(rated: Workflow) -> None:
    out = StringIO()
    call_command("review", "agreement", "triage", stdout=out)
    assert out.getvalue().strip() == (
        "triage: 4 items, 2 answers each; Fleiss' kappa 0.158; "
        "Cohen's kappa 0.273 (lower seat first)"
    )
    out = StringIO()
    call_command("review", "agreement", "triage", "--raters", "3", stdout=out)
    assert out.getvalue().strip() == "triage: no quorum gate has 3 answers yet; kappa unknown"


def test_one_same_answer_everywhere_leaves_kappa_undefined(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    reviewer: User,
    second_reviewer: User,
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "quorum": {"required": 2, "of": 2}})
    one, two = ReviewTask.objects.filter(run=start(workflow), seat__gt=0).order_by("seat")
    answer(one, reviewer, "approve")
    answer(two, second_reviewer, "approve")
    out = StringIO()
    call_command("review", "agreement", "triage", stdout=out)
    assert "1 items" in out.getvalue()
    assert "Fleiss' kappa undefined (every answer the same)" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no workflow 'nope'"),
        (["triage", "--raters", "1"], "--raters must be from 2 to 9"),
        (["triage", "--raters", "10"], "--raters must be from 2 to 9"),
    ],
)
def test_the_command_refuses_what_it_cannot_answer(
    workflow: Workflow, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("review", "agreement", *args, stdout=StringIO())


def test_the_selector_refuses_fewer_than_two_raters(workflow: Workflow) -> None:
    with pytest.raises(ValueError, match="at least two raters"):
        quorum_agreement(workflow=workflow, raters=1)
