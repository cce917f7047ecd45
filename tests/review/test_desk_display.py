"""What the task page and the queue show: untrusted text made visible, confidence as a
percentage, the SLA of live tasks only, what a decision changed, and who a task waits for."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from html import unescape
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from hitl.review.templatetags.desk import BIDI_CONTROLS, gate_reason, percent, reveal, reveal_plain
from tests.review.conftest import T0, gated_definition
from workflows import services
from workflows.models import ReviewTask, Run, StepRun, Workflow

FREE_TEXT = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "file": {"type": "string"}},
    "required": ["label"],
}


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_of(client: Client, task: ReviewTask) -> str:
    response = client.get(reverse("review:task", args=[task.pk]))
    assert response.status_code == 200
    return response.content.decode()


def without_the_decide_form(html: str) -> str:
    """The page less the edit form, whose fields must send back exactly what they hold."""
    return re.sub(r'<form method="post" action="[^"]*/decide/".*?</form>', "", html, flags=re.S)


# --- bidirectional control characters --------------------------------------------------------


def test_reveal_shows_every_bidi_control_as_a_marked_token_and_escapes_the_rest() -> None:
    for char in BIDI_CONTROLS:
        shown = str(reveal(f"a{char}b"))
        assert char not in shown
        assert f"⟨U+{ord(char):04X}⟩" in shown
        assert shown.startswith('a<span class="bidi"') and shown.endswith("</span>b")
    assert str(reveal("<b>invoice\u202efdp.exe</b>")) == (
        '&lt;b&gt;invoice<span class="bidi" title="hidden direction control">⟨U+202E⟩</span>'
        "fdp.exe&lt;/b&gt;"
    )
    assert reveal_plain("invoice\u202efdp.exe") == "invoice⟨U+202E⟩fdp.exe"
    assert str(reveal(None)) == "" and str(reveal(3)) == "3"


def test_bidi_controls_in_input_output_votes_and_reasons_are_shown_visibly(
    make_gate_workflow: Callable[..., Workflow],
    start: Callable[..., Run],
    reviewer: User,
    second_reviewer: User,
) -> None:
    definition = gated_definition("bidi")
    definition["steps"][0]["config"] = {"output_schema": FREE_TEXT}
    workflow = make_gate_workflow(definition=definition)
    answer = {"label": "billing\u202e", "file": "invoice\u2066fdp.exe"}
    run = start(
        workflow,
        answer=answer,
        votes={"billing\u202e": 2, "refund\u2067": 1},
        subject="look at invoice\u202efdp.exe",
        **{"key\u202b": "value"},
    )
    task = ReviewTask.objects.get(run=run)
    html = page_of(client_for(reviewer), task)
    shown = without_the_decide_form(html)
    assert not any(char in shown for char in BIDI_CONTROLS)
    for token in ("⟨U+202E⟩", "⟨U+2066⟩", "⟨U+2067⟩", "⟨U+202B⟩"):
        assert token in shown, token
    # The edit form keeps the exact text (what it sends back must be the AI's answer
    # unchanged), and a field holding controls says so in words beside the box.
    form = html[html.index('id="decide"') :]
    assert 'value="invoice\u2066fdp.exe"' in form
    warning = re.search(r'<p class="field-warning"[^>]*>(.*?)</p>', form, flags=re.S)
    assert warning is not None
    assert "hidden direction control" in warning.group(1) and "⟨U+2066⟩" in warning.group(1)
    # A reason with a control in it, decided by one reviewer and read by another.
    client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]),
        {"action": "reject", "reason": "the file is \u202eexe.pdf"},
    )
    later = page_of(client_for(second_reviewer), task)
    assert not any(char in later for char in BIDI_CONTROLS)
    assert 'the file is <span class="bidi"' in later


def test_bidi_controls_in_the_queue_are_shown_visibly(
    make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run], reviewer: User
) -> None:
    definition = gated_definition("bidiq")
    definition["steps"][0]["config"] = {"output_schema": FREE_TEXT}
    workflow = make_gate_workflow(definition=definition)
    start(workflow, answer={"label": "billing\u202e"})
    html = client_for(reviewer).get(reverse("review:queue")).content.decode()
    assert not any(char in html for char in BIDI_CONTROLS)
    assert 'billing<span class="bidi"' in html


# --- confidence as a percentage -----------------------------------------------------------------


def test_percent_formats_every_kind_of_number_and_nothing_else() -> None:
    assert percent(0.6053478722680969) == "61%"
    assert percent(1) == "100%"
    assert percent(0) == "0%"
    assert percent(Decimal("0.5")) == "50%"
    assert percent(None) == "—"
    assert percent("0.6053478722680969") == "—"  # not a number: never repeated or shown raw
    assert percent(True) == "—"
    # Below 1 is never shown as 100%, above 0 never as 0%.
    assert percent(0.997) == "99.7%"
    assert percent(0.9999) == "99.99%"
    assert percent(0.999999) == "99.99%"
    assert percent(0.004) == "0.4%"
    assert percent(0.0000001) == "0.01%"


def test_the_gate_reason_gives_threshold_and_confidence_as_percentages() -> None:
    gate = {"reason": "below_threshold", "threshold": 0.8}
    assert gate_reason(gate, 0.6053478722680969) == "below threshold 80% (confidence 61%)"
    assert gate_reason(gate, None) == "below threshold 80% (no confidence)"
    # Rounded alike, they would read as equal: one more digit shows the difference.
    assert gate_reason(gate, 0.7996) == "below threshold 80% (confidence 79.96%)"
    assert (
        gate_reason({"reason": "below_threshold"}, 0.5) == "no threshold set yet (confidence 50%)"
    )
    assert gate_reason({"reason": "audit_sample", "audit_rate": 0.1}, 0.95) == (
        "audit sample (10% of passing items)"
    )


def test_no_confidence_on_the_task_page_is_shown_raw(
    workflow: Workflow, start: Callable[..., Run], reviewer: User
) -> None:
    raw = 0.6053478722680969
    run = start(workflow, confidence=raw, votes={"billing": 2, "refund": 1})
    task = ReviewTask.objects.get(run=run)
    html = page_of(client_for(reviewer), task)
    # The input carries the number (the test step reads its score from there): data, shown
    # as it came. Everywhere else it is a percentage.
    input_card = re.search(
        r'<section class="card" aria-labelledby="input-title">.*?</section>', html, flags=re.S
    )
    assert input_card is not None
    rest = html.replace(input_card.group(), "")
    text = re.sub(r"<[^>]+>", " ", rest)  # what is read, not attributes like <meter value>
    assert "0.605" not in text and "0.61" not in text
    assert "below threshold 80% (confidence 61%)" in rest
    history = re.search(r'<table class="history">.*?</table>', rest, flags=re.S)
    assert history is not None and history.group().count("61%") == 2  # classify and check
    assert "67%" in rest and "33%" in rest  # the votes' shares


# --- the SLA of live tasks only -------------------------------------------------------------------


def sla_of(html: str) -> str:
    found = re.search(r"<dt>SLA</dt><dd>(.*?)</dd>", html, flags=re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_a_live_task_shows_the_time_left(task: ReviewTask, reviewer: User) -> None:
    assert sla_of(page_of(client_for(reviewer), task)).startswith(("in ", "overdue "))


def test_a_task_decided_in_time_shows_met_and_no_countdown(
    task: ReviewTask, reviewer: User
) -> None:
    services.review_decide(task=task, user=reviewer, action="approve", claim=True, now=T0)
    assert sla_of(page_of(client_for(reviewer), task)) == "met"
    queue = client_for(reviewer).get(reverse("review:queue") + "?status=decided").content.decode()
    row = re.search(rf'<tr data-task="{task.pk}".*?</tr>', queue, flags=re.S)
    assert row is not None
    assert ">met<" in row.group() and "late" not in row.group().split(">")[0]
    assert " in " not in re.sub(r"<[^>]+>", " ", row.group()).replace("  ", " ")


def test_a_task_decided_late_shows_missed(task: ReviewTask, reviewer: User) -> None:
    services.review_decide(
        task=task, user=reviewer, action="approve", claim=True, now=T0 + timedelta(minutes=61)
    )
    assert sla_of(page_of(client_for(reviewer), task)) == "missed"


def test_escalated_and_cancelled_tasks_show_no_countdown(
    task: ReviewTask, reviewer: User, system: Any
) -> None:
    services.review_decide(
        task=task, user=reviewer, action="escalate", reason="a supervisor", claim=True, now=T0
    )
    assert sla_of(page_of(client_for(reviewer), task)) == "—"
    successor = ReviewTask.objects.get(escalated_from=task)
    services.run_cancel(run=task.run, actor=system, now=T0)
    successor.refresh_from_db()
    assert successor.status == ReviewTask.Status.CANCELLED
    assert sla_of(page_of(client_for(reviewer), successor)) == "—"


# --- what a decision changed --------------------------------------------------------------------


def outcome_of(html: str) -> str:
    found = re.search(r'<section class="card outcome".*?</section>', html, flags=re.S)
    assert found is not None, "no outcome section"
    return found.group()


def test_an_open_task_has_no_outcome_yet(task: ReviewTask, reviewer: User) -> None:
    assert 'class="card outcome"' not in page_of(client_for(reviewer), task)


def test_an_approved_task_shows_no_change(task: ReviewTask, reviewer: User) -> None:
    client_for(reviewer).post(reverse("review:decide", args=[task.pk]), {"action": "approve"})
    outcome = outcome_of(page_of(client_for(reviewer), task))
    assert "approved" in outcome and "reviewer" in outcome
    assert "No change" in outcome and "<del>" not in outcome


def test_a_rejected_task_shows_no_output_and_the_reason(task: ReviewTask, reviewer: User) -> None:
    client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]), {"action": "reject", "reason": "spam"}
    )
    outcome = outcome_of(page_of(client_for(reviewer), task))
    assert "Rejected: no output" in outcome and "spam" in outcome


def test_an_edited_task_shows_the_changed_fields_as_on_the_gate(
    task: ReviewTask, reviewer: User
) -> None:
    client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]),
        {"action": "edit", "reason": "asks for money back", "out:label": "refund"},
    )
    response = client_for(reviewer).get(reverse("review:task", args=[task.pk]))
    outcome = outcome_of(response.content.decode())
    assert '<span class="field">label</span>' in outcome
    assert "<del>billing</del>" in outcome and "<ins>refund</ins>" in outcome
    assert "asks for money back" in outcome
    gate = StepRun.objects.get(run=task.run, step_id="check")
    assert response.context["d"].final_output == gate.output == {"label": "refund"}
    assert "components/output_diff.html" in [t.name for t in response.templates]


def test_an_escalated_task_says_where_it_went(task: ReviewTask, reviewer: User) -> None:
    client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]), {"action": "escalate", "reason": "unsure"}
    )
    successor = ReviewTask.objects.get(escalated_from=task)
    outcome = outcome_of(page_of(client_for(reviewer), task))
    assert "escalated" in outcome and "unsure" in outcome
    assert reverse("review:task", args=[successor.pk]) in outcome


def test_a_refused_edit_comes_back_with_its_diff_shown(task: ReviewTask, reviewer: User) -> None:
    response = client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]), {"action": "edit", "out:label": "refund"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    edit_box = html[html.index('id="edit-box"') : html.index('class="buttons"')]
    assert "<del>billing</del>" in edit_box and "<ins>refund</ins>" in edit_box
    assert "selected>refund</option>" in edit_box or 'value="refund" selected' in edit_box


# --- who a task waits for -----------------------------------------------------------------------


def escalate(task: ReviewTask, user: User, reason: str = "needs a supervisor") -> ReviewTask:
    response = client_for(user).post(
        reverse("review:decide", args=[task.pk]), {"action": "escalate", "reason": reason}
    )
    assert response.status_code == 302
    return ReviewTask.objects.get(escalated_from=task)


def row_of(html: str, task: ReviewTask) -> str:
    found = re.search(rf'<tr data-task="{task.pk}".*?</tr>', html, flags=re.S)
    assert found is not None, f"task {task.pk} is not in the queue"
    return found.group()


def test_the_queue_marks_a_task_the_reviewer_may_see_but_not_decide(
    task: ReviewTask, reviewer: User, escalator: User
) -> None:
    successor = escalate(task, reviewer)
    mine = row_of(client_for(reviewer).get(reverse("review:queue")).content.decode(), successor)
    assert "waiting for the escalation group" in mine
    assert 'data-decidable="false"' in mine
    theirs = row_of(client_for(escalator).get(reverse("review:queue")).content.decode(), successor)
    assert "waiting for" not in theirs and 'data-decidable="false"' not in theirs
    assert ">open<" in theirs


def test_the_task_page_says_who_an_escalated_task_waits_for_and_why(
    task: ReviewTask, reviewer: User, escalator: User
) -> None:
    successor = escalate(task, reviewer, "a refund over the limit")
    html = page_of(client_for(reviewer), successor)
    assert 'id="decide"' not in html
    waiting = re.search(r'<section class="card waiting".*?</section>', html, flags=re.S)
    assert waiting is not None
    assert "triage-escalation" in waiting.group()  # the group, by name
    assert "you may see it but not decide it" in waiting.group()
    why = re.search(r'<p class="why">.*?</p>', html, flags=re.S)
    assert why is not None
    assert "reviewer" in why.group() and "a refund over the limit" in why.group()
    assert f"task #{task.pk}" in why.group()
    # The escalation group decides it, and escalation is one level deep: no Escalate there.
    theirs = page_of(client_for(escalator), successor)
    assert 'id="decide"' in theirs
    assert 'value="escalate"' not in theirs
    assert 'value="approve"' in theirs and 'value="reject"' in theirs


def test_without_an_escalation_group_the_admins_are_named(
    make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run], reviewer: User
) -> None:
    workflow = make_gate_workflow(escalation=False)
    task = ReviewTask.objects.get(run=start(workflow))
    successor = escalate(task, reviewer)
    html = unescape(page_of(client_for(reviewer), successor))
    assert "waits for the workflow's admins" in html
    queue = client_for(reviewer).get(reverse("review:queue")).content.decode()
    assert "waiting for the workflow's admins" in unescape(row_of(queue, successor))
