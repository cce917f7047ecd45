"""k-of-m review: a gate with `quorum` opens m seats, and k agreeing answers settle it.

Every transition runs under the run's row lock (the races are in test_quorum_concurrency).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction

from tests.datasets_world import export
from tests.factories import UserFactory
from tests.helpers import drive
from tests.review.conftest import T0, gated_definition, minutes
from workflows import services
from workflows.definitions import DefinitionError, validate_definition
from workflows.errors import Conflict
from workflows.models import AuditEvent, Decision, ReviewTask, Run, StepRun, Workflow

pytestmark = pytest.mark.django_db

Start = Callable[..., Run]
T1 = T0 + minutes(1)
QUORUM = {"threshold": 0.8, "quorum": {"required": 2, "of": 3}}


@pytest.fixture
def quorum_workflow(make_gate_workflow: Callable[..., Workflow]) -> Workflow:
    return make_gate_workflow(QUORUM)


@pytest.fixture
def third_reviewer(reviewers: Group) -> User:
    return UserFactory(username="third", groups=[reviewers])


@pytest.fixture
def panel(reviewer: User, second_reviewer: User, third_reviewer: User) -> list[User]:
    return [reviewer, second_reviewer, third_reviewer]


def seats(run: Run) -> list[ReviewTask]:
    return list(ReviewTask.objects.filter(run=run, seat__gt=0).order_by("seat"))


def escalations(run: Run) -> list[ReviewTask]:
    return list(ReviewTask.objects.filter(run=run, audience=ReviewTask.Audience.ESCALATION))


def gate_of(run: Run) -> StepRun:
    return StepRun.objects.get(run=run, step_id="check")


def decide(task: ReviewTask, user: User, action: str = "approve", **kw: Any) -> Decision:
    kw.setdefault("now", T1)
    if action != "approve":
        kw.setdefault("reason", f"{user.username} says {action}")
    return services.review_decide(task=task, user=user, action=action, claim=True, **kw)


def statuses(run: Run) -> list[str]:
    return [t.status for t in seats(run)]


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quorum", "where", "message"),
    [
        ({"required": 0, "of": 3}, "config.quorum.required", "greater than or equal to 1"),
        ({"required": 2, "of": 10}, "config.quorum.of", "less than or equal to 9"),
        ({"required": 3, "of": 2}, "config.quorum", "required (3) cannot be more than of (2)"),
        ({"required": 2}, "config.quorum.of", "Field required"),
        ({"required": 2, "of": 3, "min": 1}, "config.quorum.min", "Extra inputs"),
        ({"required": "two", "of": 3}, "config.quorum.required", "valid integer"),
    ],
)
def test_a_bad_quorum_is_refused_at_the_step_and_field(
    quorum: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(gated_definition("bad", {"threshold": 0.8, "quorum": quorum}))
    locations = [loc for loc, _ in info.value.errors]
    assert f"steps[1] (check).{where}" in locations, info.value.errors
    assert message in str(info.value)


def test_a_valid_quorum_is_part_of_the_definition() -> None:
    definition = validate_definition(gated_definition("ok", QUORUM))
    assert definition.steps[1].config["quorum"] == {"required": 2, "of": 3}


def test_without_a_quorum_the_gate_opens_one_task_as_before(
    workflow: Workflow, start: Start
) -> None:
    run = start(workflow)
    (task,) = ReviewTask.objects.filter(run=run)
    assert task.seat == 0
    assert "quorum" not in gate_of(run).meta


# --- opening the seats -------------------------------------------------------------------------


def test_the_gate_opens_m_seats_for_its_one_step(quorum_workflow: Workflow, start: Start) -> None:
    run = start(quorum_workflow)
    tasks = seats(run)
    assert [t.seat for t in tasks] == [1, 2, 3]
    assert {t.step_run_id for t in tasks} == {gate_of(run).pk}
    assert {t.audience for t in tasks} == {ReviewTask.Audience.REVIEWERS}
    assert {t.status for t in tasks} == {ReviewTask.Status.OPEN}
    assert gate_of(run).meta["quorum"] == {"required": 2, "of": 3}
    created = AuditEvent.objects.filter(verb="review.created").order_by("id")
    assert [e.payload["seat"] for e in created] == [1, 2, 3]
    assert ReviewTask.objects.filter(run=run).count() == 3


def test_an_auto_approved_item_opens_no_seat(quorum_workflow: Workflow, start: Start) -> None:
    run = start(quorum_workflow, confidence=0.95)
    assert not ReviewTask.objects.filter(run=run).exists()


# --- agreement -------------------------------------------------------------------------------


def test_k_approvals_pass_the_gate_and_cancel_the_other_seats(
    quorum_workflow: Workflow, start: Start, panel: list[User]
) -> None:
    run = start(quorum_workflow)
    one, two, three = seats(run)
    decide(one, panel[0])
    assert gate_of(run).status == StepRun.Status.WAITING
    assert statuses(run) == ["decided", "open", "open"]
    decide(three, panel[2], now=T1 + minutes(2))
    gate = gate_of(run)
    assert (gate.status, gate.outcome, gate.output) == (
        "completed",
        "approved",
        {"label": "billing"},
    )
    review = gate.meta["review"]
    assert review["action"] == "approve"
    assert review["quorum"]["required"] == 2 and review["quorum"]["of"] == 3
    assert len(review["quorum"]["agreed"]) == 2
    assert statuses(run) == ["decided", "cancelled", "decided"]
    cancelled = AuditEvent.objects.get(verb="review.cancelled", object_id=str(two.pk))
    assert cancelled.payload["reason"] == "quorum_agreed"
    assert escalations(run) == []
    run = drive(run, now=T1 + minutes(2))
    assert StepRun.objects.get(run=run, step_id="book").output == {"booked": "billing"}
    with pytest.raises(Conflict, match="its quorum settled"):
        decide(two, panel[1], now=T1 + minutes(3))


def test_equal_edits_agree_as_canonical_json(
    make_gate_workflow: Callable[..., Workflow], start: Start, panel: list[User]
) -> None:
    definition = gated_definition("nested", {"threshold": 0.8, "quorum": {"required": 2, "of": 2}})
    definition["steps"][0]["config"] = {"output_schema": {"type": "object"}}
    run = start(make_gate_workflow(definition=definition))
    one, two = seats(run)
    decide(one, panel[0], "edit", output={"label": "refund", "note": {"a": 1, "b": 2}})
    decide(two, panel[1], "edit", output={"note": {"b": 2, "a": 1}, "label": "refund"})
    gate = gate_of(run)
    assert (gate.status, gate.outcome) == ("completed", "approved")
    assert gate.output == {"label": "refund", "note": {"a": 1, "b": 2}}
    assert gate.meta["review"]["action"] == "edit"


def test_an_approval_and_an_edit_wait_for_the_third_answer(
    quorum_workflow: Workflow, start: Start, panel: list[User]
) -> None:
    run = start(quorum_workflow)
    one, two, three = seats(run)
    decide(one, panel[0])
    decide(two, panel[1], "edit", output={"label": "refund"})
    assert gate_of(run).status == StepRun.Status.WAITING
    assert escalations(run) == []
    decide(three, panel[2], "edit", output={"label": "refund"})
    gate = gate_of(run)
    assert (gate.status, gate.output) == ("completed", {"label": "refund"})


# --- escalation --------------------------------------------------------------------------------


def test_a_reject_escalates_once_with_every_answer_shown(
    quorum_workflow: Workflow, start: Start, panel: list[User], escalator: User
) -> None:
    run = start(quorum_workflow)
    one, two, _ = seats(run)
    decide(one, panel[0], reason="looks right")
    decide(two, panel[1], "reject", now=T1 + minutes(1))
    # A seat's decision keeps its place in the quorum, never the other answers.
    assert Decision.objects.get(task=two).shown["quorum"] == {"seat": 2, "required": 2, "of": 3}
    (escalation,) = escalations(run)
    assert escalation.escalated_from_id == two.pk
    assert escalation.reason == "quorum_split"
    assert escalation.seat == 0
    assert statuses(run) == ["decided", "decided", "cancelled"]
    assert gate_of(run).status == StepRun.Status.WAITING
    event = AuditEvent.objects.get(verb="review.escalated", object_id=str(two.pk))
    assert event.payload["to"] == escalation.pk
    answers = event.payload["answers"]
    assert [(a["seat"], a["reviewer"], a["action"]) for a in answers] == [
        (1, "reviewer", "approve"),
        (2, "second", "reject"),
    ]
    assert answers[0]["output"] == {"label": "billing"} and answers[0]["reason"] == "looks right"
    assert answers[1]["output"] is None and answers[1]["reason"] == "second says reject"
    # The escalation's decision keeps what it was shown: every answer.
    decision = decide(escalation, escalator, "edit", output={"label": "bug"})
    assert [a["reviewer"] for a in decision.shown["quorum"]["answers"]] == ["reviewer", "second"]
    gate = gate_of(run)
    assert (gate.status, gate.outcome, gate.output) == ("completed", "approved", {"label": "bug"})
    assert len(escalations(run)) == 1
    # The seats' answers differ from the gate's final output: the audit trail still holds up.
    services.audit_seal()
    report = services.audit_verify()
    assert report.ok, report


def test_the_escalations_rejection_is_the_gates_outcome(
    quorum_workflow: Workflow, start: Start, panel: list[User], escalator: User
) -> None:
    run = start(quorum_workflow)
    decide(seats(run)[0], panel[0], "reject")
    (escalation,) = escalations(run)
    assert statuses(run) == ["decided", "cancelled", "cancelled"]
    decide(escalation, escalator, "reject")
    gate = gate_of(run)
    assert (gate.status, gate.outcome, gate.output) == ("completed", "rejected", None)


def test_answers_that_can_no_longer_reach_k_escalate(
    quorum_workflow: Workflow, start: Start, panel: list[User]
) -> None:
    run = start(quorum_workflow)
    one, two, three = seats(run)
    decide(one, panel[0])
    decide(two, panel[1], "edit", output={"label": "refund"})
    decide(three, panel[2], "edit", output={"label": "bug"})
    (escalation,) = escalations(run)
    assert escalation.escalated_from_id == three.pk and escalation.reason == "quorum_split"
    answers = AuditEvent.objects.get(verb="review.escalated").payload["answers"]
    assert [a["output"] for a in answers] == [
        {"label": "billing"},
        {"label": "refund"},
        {"label": "bug"},
    ]
    assert gate_of(run).status == StepRun.Status.WAITING


def test_differing_answers_escalate_as_soon_as_k_is_out_of_reach(
    make_gate_workflow: Callable[..., Workflow], start: Start, panel: list[User]
) -> None:
    workflow = make_gate_workflow({"threshold": 0.8, "quorum": {"required": 3, "of": 3}})
    run = start(workflow)
    one, two, _ = seats(run)
    decide(one, panel[0])
    decide(two, panel[1], "edit", output={"label": "refund"})
    (escalation,) = escalations(run)
    assert escalation.escalated_from_id == two.pk
    assert statuses(run) == ["decided", "decided", "cancelled"]


def test_escalate_by_one_seat_escalates_the_whole_group(
    quorum_workflow: Workflow, start: Start, panel: list[User]
) -> None:
    run = start(quorum_workflow)
    one, two, three = seats(run)
    decide(one, panel[0])
    decide(three, panel[2], "escalate")
    (escalation,) = escalations(run)
    assert escalation.escalated_from_id == three.pk and escalation.reason == "escalated"
    assert statuses(run) == ["decided", "cancelled", "escalated"]
    answers = AuditEvent.objects.get(verb="review.escalated").payload["answers"]
    assert [a["action"] for a in answers] == ["approve", "escalate"]
    with pytest.raises(Conflict, match="its quorum settled"):
        decide(two, panel[1])


# --- one seat per reviewer ---------------------------------------------------------------------


def test_a_reviewer_holding_a_seat_cannot_claim_another(
    quorum_workflow: Workflow, start: Start, reviewer: User
) -> None:
    run = start(quorum_workflow)
    one, two, _ = seats(run)
    services.review_claim(task=one, user=reviewer, now=T1)
    with pytest.raises(Conflict, match=f"you hold seat 1 of this review \\(task {one.pk}\\)"):
        services.review_claim(task=two, user=reviewer, now=T1)
    with pytest.raises(Conflict, match="you hold seat 1"):
        decide(two, reviewer)
    two.refresh_from_db()
    assert two.status == ReviewTask.Status.OPEN


def test_a_reviewer_who_decided_a_seat_cannot_take_another(
    quorum_workflow: Workflow, start: Start, reviewer: User
) -> None:
    run = start(quorum_workflow)
    one, two, _ = seats(run)
    decide(one, reviewer, "edit", output={"label": "refund"})
    with pytest.raises(Conflict, match=f"you decided seat 1 of this review \\(task {one.pk}\\)"):
        decide(two, reviewer, "edit", output={"label": "refund"})
    with pytest.raises(Conflict, match="you decided seat 1"):
        services.review_claim(task=two, user=reviewer, now=T1)
    assert gate_of(run).status == StepRun.Status.WAITING


def test_a_released_seat_frees_the_reviewer_for_another(
    quorum_workflow: Workflow, start: Start, reviewer: User
) -> None:
    run = start(quorum_workflow)
    one, two, _ = seats(run)
    services.review_claim(task=one, user=reviewer, now=T1)
    services.review_release(task=one, user=reviewer, now=T1)
    assert services.review_claim(task=two, user=reviewer, now=T1).claimed_by == reviewer


def test_next_task_never_offers_a_second_seat(
    quorum_workflow: Workflow, start: Start, reviewer: User, settings: Any
) -> None:
    settings.HITL_REVIEW_MAX_CLAIMS = 10
    first = start(quorum_workflow)
    second = start(quorum_workflow)
    taken = [services.review_claim_next(user=reviewer, now=T1) for _ in range(3)]
    assert taken[2] is None
    assert sorted(t.run_id for t in taken[:2] if t) == [first.pk, second.pk]


def test_the_database_refuses_two_seats_for_one_reviewer(
    quorum_workflow: Workflow, start: Start, reviewer: User
) -> None:
    run = start(quorum_workflow)
    one, two, _ = seats(run)
    decide(one, reviewer)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewTask.objects.filter(pk=two.pk).update(
            status="claimed", claimed_by=reviewer, claimed_at=T1, claim_expires_at=T1 + minutes(5)
        )


# --- the rest of a seat's life -------------------------------------------------------------------


def test_cancelling_the_run_cancels_every_seat(
    quorum_workflow: Workflow, start: Start, system: services.Actor
) -> None:
    run = start(quorum_workflow)
    services.run_cancel(run=run, actor=system, now=T1)
    assert statuses(run) == ["cancelled"] * 3


def test_an_overdue_group_nobody_holds_escalates_once(
    make_gate_workflow: Callable[..., Workflow], start: Start, panel: list[User]
) -> None:
    workflow = make_gate_workflow({**QUORUM, "sla_minutes": 30})
    run = start(workflow)
    one, two, three = seats(run)
    decide(one, panel[0], now=T0 + minutes(5))
    result = services.review_sla_breach(now=T0 + minutes(31))
    assert result["escalated"] == 1
    (escalation,) = escalations(run)
    assert escalation.reason == "sla_breach"
    assert escalation.escalated_from_id in (two.pk, three.pk)
    assert sorted(statuses(run)) == ["cancelled", "decided", "escalated"]
    answers = AuditEvent.objects.get(verb="review.escalated").payload["answers"]
    assert [a["reviewer"] for a in answers] == ["reviewer"]
    assert services.review_sla_breach(now=T0 + minutes(40))["escalated"] == 0


def test_an_overdue_group_waits_while_a_seat_is_held(
    make_gate_workflow: Callable[..., Workflow], start: Start, panel: list[User]
) -> None:
    workflow = make_gate_workflow({**QUORUM, "sla_minutes": 30})
    run = start(workflow)
    two = seats(run)[1]
    services.review_claim(task=two, user=panel[1], now=T0 + minutes(25))
    assert services.review_sla_breach(now=T0 + minutes(31))["escalated"] == 0
    assert escalations(run) == []
    assert statuses(run) == ["open", "claimed", "open"]


def test_the_dataset_labels_an_item_with_the_gates_final_output(
    quorum_workflow: Workflow, start: Start, panel: list[User], escalator: User, tmp_path: Any
) -> None:
    agreed = start(quorum_workflow)
    one, two, _ = seats(agreed)
    decide(one, panel[0], "edit", output={"label": "refund"})
    decide(two, panel[1], "edit", output={"label": "refund"})
    split = start(quorum_workflow)
    decide(seats(split)[0], panel[0], "reject")
    decide(escalations(split)[0], escalator, "edit", output={"label": "bug"})
    records = {r["run"]: r for r in export(tmp_path=tmp_path)[0]}
    assert (records[agreed.pk]["final_output"], records[agreed.pk]["escalated"]) == (
        {"label": "refund"},
        False,
    )
    assert (records[split.pk]["final_output"], records[split.pk]["escalated"]) == (
        {"label": "bug"},
        True,
    )
    assert records[split.pk]["reviewer"] == "escalator"
