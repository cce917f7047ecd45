"""What the task page and the queue show: untrusted text made visible, confidence as a
percentage, the SLA of live tasks only, what a decision changed, and who a task waits for."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from hitl.review.templatetags.desk import BIDI_CONTROLS, reveal, reveal_plain
from tests.review.conftest import gated_definition
from workflows.models import ReviewTask, Run, Workflow

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
