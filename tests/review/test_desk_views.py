"""The review desk's views: full pages, htmx partials, CSRF, permissions and every action."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from hitl.review import views
from tests.helpers import database_state
from workflows.models import Decision, ReviewTask, Run, StepRun, Workflow
from workflows.models.review import QUEUE_ORDER, REVIEW_ACTIONS

HX = {"HTTP_HX_REQUEST": "true"}


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_anonymous_users_are_sent_to_log_in(task: ReviewTask) -> None:
    client = Client()
    for url in (reverse("review:queue"), reverse("review:task", args=[task.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    for name in ("claim", "decide", "release", "skip", "renew"):
        response = client.post(reverse(f"review:{name}", args=[task.pk]))
        assert response.status_code == 302
    assert client.post(reverse("review:next")).status_code == 302
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN


def test_the_queue_renders_a_full_page_or_the_htmx_partial(
    task: ReviewTask, reviewer: User
) -> None:
    client = client_for(reviewer)
    page = client.get(reverse("review:queue"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and f'data-task="{task.pk}"' in html
    assert "below threshold" in html
    partial = client.get(reverse("review:queue"), **HX)
    fragment = partial.content.decode()
    assert partial.status_code == 200
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section id="queue"')
    assert f'data-task="{task.pk}"' in fragment
    boosted = client.get(reverse("review:queue"), HTTP_HX_BOOSTED="true", **HX)
    assert "<html" in boosted.content.decode()


def test_the_task_page_renders_a_full_page_or_the_htmx_partial(
    task: ReviewTask, reviewer: User
) -> None:
    client = client_for(reviewer)
    page = client.get(reverse("review:task", args=[task.pk])).content.decode()
    assert "<html" in page
    assert "billing" in page and "50%" in page  # the answer and its confidence
    assert "below threshold 80% (confidence 50%)" in page
    assert 'name="action" value="approve"' in page
    fragment = client.get(reverse("review:task", args=[task.pk]), **HX).content.decode()
    assert "<html" not in fragment and fragment.lstrip().startswith("<article")


@pytest.mark.parametrize(
    ("who", "sees"),
    [("owner", True), ("reviewer", True), ("other_reviewer", False), ("outsider", False)],
)
def test_the_permission_matrix_over_every_view(
    request: pytest.FixtureRequest, task: ReviewTask, who: str, sees: bool
) -> None:
    user = request.getfixturevalue(who)
    client = client_for(user)
    queue = client.get(reverse("review:queue")).content.decode()
    assert (f'data-task="{task.pk}"' in queue) is sees
    page = client.get(reverse("review:task", args=[task.pk]))
    assert page.status_code == (200 if sees else 404)
    for name in ("claim", "decide", "release", "skip", "renew"):
        response = client.post(reverse(f"review:{name}", args=[task.pk]), {"action": "approve"})
        if not sees:
            assert response.status_code == 404, name
    if not sees:
        task.refresh_from_db()
        assert task.status == ReviewTask.Status.OPEN
        assert client.post(reverse("review:next")).status_code == 302
        task.refresh_from_db()
        assert task.claimed_by is None


def test_csrf_is_enforced_on_actions(task: ReviewTask, reviewer: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(reverse("review:decide", args=[task.pk]), {"action": "approve"})
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN
    page = client.get(reverse("review:task", args=[task.pk]))
    token = page.cookies["csrftoken"].value
    assert '"X-CSRFToken"' in page.content.decode()  # htmx sends it from <body hx-headers>
    ok = client.post(
        reverse("review:decide", args=[task.pk]), {"action": "approve"}, HTTP_X_CSRFTOKEN=token
    )
    assert ok.status_code == 302


def test_next_claims_the_first_task_and_opens_it(task: ReviewTask, reviewer: User) -> None:
    response = client_for(reviewer).post(reverse("review:next"))
    assert response["Location"] == reverse("review:task", args=[task.pk])
    task.refresh_from_db()
    assert (task.status, task.claimed_by) == (ReviewTask.Status.CLAIMED, reviewer)


def test_next_with_nothing_waiting_returns_to_the_queue(reviewer: User) -> None:
    client = client_for(reviewer)
    response = client.post(reverse("review:next"), follow=True)
    assert "Nothing is waiting for you" in response.content.decode()


def test_approve_decides_resumes_the_run_and_moves_on(
    task: ReviewTask, reviewer: User, workflow: Workflow, start: Callable[..., Run]
) -> None:
    second = ReviewTask.objects.get(run=start(workflow))
    client = client_for(reviewer)
    response = client.post(reverse("review:decide", args=[task.pk]), {"action": "approve"})
    # Deciding claims first if needed, then claims and shows the next task at once.
    assert response["Location"] == reverse("review:task", args=[second.pk])
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DECIDED
    gate = StepRun.objects.get(run=task.run, step_id="check")
    assert (gate.status, gate.output) == (StepRun.Status.COMPLETED, {"label": "billing"})
    second.refresh_from_db()
    assert second.claimed_by == reviewer


def test_an_override_without_a_reason_is_refused_and_changes_nothing(
    task: ReviewTask, reviewer: User
) -> None:
    client = client_for(reviewer)
    before = database_state()
    response = client.post(
        reverse("review:decide", args=[task.pk]), {"action": "reject", "reason": "  "}
    )
    assert response.status_code == 400
    html = response.content.decode()
    # Without JavaScript too, the message is at the reason field, which has the focus.
    field = re.search(r"<textarea id=\"reason\"[^>]*>", html)
    assert field is not None
    assert 'aria-invalid="true"' in field.group() and "autofocus" in field.group()
    assert 'aria-describedby="reason-error"' in field.group()
    message = re.search(r'<p id="reason-error"[^>]*>(.*?)</p>', html, flags=re.S)
    assert message is not None and 'role="alert"' in message.group()
    assert message.group(1) == "A reason is required to reject."
    assert database_state() == before  # no decision, no claim, no audit event


def test_without_an_error_the_reason_field_is_plain(task: ReviewTask, reviewer: User) -> None:
    html = client_for(reviewer).get(reverse("review:task", args=[task.pk])).content.decode()
    field = re.search(r"<textarea id=\"reason\"[^>]*>", html)
    assert field is not None
    assert "aria-invalid" not in field.group() and "autofocus" not in field.group()
    assert re.search(r'<p id="reason-error"[^>]*hidden', html)


def test_enter_in_a_one_line_field_cannot_submit_a_decision(
    task: ReviewTask, reviewer: User
) -> None:
    # A browser submits a form on Enter in a one-line field with its first submit button,
    # which would be Approve; a disabled first button makes Enter do nothing, script or not.
    html = client_for(reviewer).get(reverse("review:task", args=[task.pk])).content.decode()
    form = html[html.index('id="decide"') :]
    first = re.search(r"<button[^>]*>", form)
    assert first is not None
    assert 'type="submit"' in first.group() and "disabled" in first.group()
    assert 'name="action"' not in first.group()


def test_the_shortcuts_help_lists_every_review_action_as_declared(
    task: ReviewTask, reviewer: User
) -> None:
    html = client_for(reviewer).get(reverse("review:task", args=[task.pk])).content.decode()
    help_dialog = html[html.index('<dialog id="help"') : html.index("</dialog>")]
    for action in REVIEW_ACTIONS.values():
        row = re.search(rf"<tr><td><kbd>{action.key}</kbd></td><td>(.*?)</td></tr>", help_dialog)
        assert row is not None, action.value
        assert escape(action.label) in row.group(1)
        if action.needs_reason:
            assert "reason" in row.group(1)
    assert "Ctrl</kbd>+<kbd>Enter" in help_dialog


def test_edit_and_approve_puts_the_edit_on_the_gate(task: ReviewTask, reviewer: User) -> None:
    response = client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]),
        {"action": "edit", "reason": "it asks for money back", "out:label": "refund"},
    )
    assert response.status_code == 302
    gate = StepRun.objects.get(run=task.run, step_id="check")
    assert gate.output == {"label": "refund"}
    classify = StepRun.objects.get(run=task.run, step_id="classify")
    assert classify.output == {"label": "billing"}  # the AI's step is never changed


def test_an_invalid_edit_is_a_clear_400(task: ReviewTask, reviewer: User) -> None:
    response = client_for(reviewer).post(
        reverse("review:decide", args=[task.pk]),
        {"action": "edit", "reason": "x", "out:label": "weather"},
    )
    assert response.status_code == 400
    assert "weather" in response.content.decode()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN  # the claim went with the refused decision


def test_a_second_reviewer_gets_a_clear_conflict(
    task: ReviewTask, reviewer: User, second_reviewer: User
) -> None:
    first = client_for(reviewer)
    assert first.post(reverse("review:claim", args=[task.pk])).status_code == 302
    other = client_for(second_reviewer)
    page = other.get(reverse("review:task", args=[task.pk])).content.decode()
    assert "reviewer is reviewing this task" in page
    assert 'name="action" value="approve"' not in page
    response = other.post(reverse("review:decide", args=[task.pk]), {"action": "approve"})
    assert response.status_code == 409
    assert f"task {task.pk} is claimed by reviewer" in response.content.decode()
    assert "Take the next task" in response.content.decode()
    first.post(reverse("review:decide", args=[task.pk]), {"action": "approve"})
    late = other.post(reverse("review:decide", args=[task.pk]), {"action": "approve"})
    assert late.status_code == 409
    assert "already been decided by reviewer" in late.content.decode()
    assert Decision.objects.count() == 1


def test_release_and_skip(
    task: ReviewTask, reviewer: User, workflow: Workflow, start: Callable[..., Run]
) -> None:
    client = client_for(reviewer)
    client.post(reverse("review:claim", args=[task.pk]))
    assert client.post(reverse("review:release", args=[task.pk])).status_code == 302
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN
    client.post(reverse("review:claim", args=[task.pk]))
    response = client.post(reverse("review:skip", args=[task.pk]))
    assert response["Location"] == reverse("review:queue")  # nothing else waiting
    assert client.post(reverse("review:next")).status_code == 302
    task.refresh_from_db()
    assert task.claimed_by is None  # a skipped task is not offered again


def test_renew_keeps_the_claim(task: ReviewTask, reviewer: User, second_reviewer: User) -> None:
    client = client_for(reviewer)
    client.post(reverse("review:claim", args=[task.pk]))
    response = client.post(reverse("review:renew", args=[task.pk]), **HX)
    assert response.status_code == 200
    assert response.content.decode().startswith("claimed until")
    conflict = client_for(second_reviewer).post(reverse("review:renew", args=[task.pk]), **HX)
    assert conflict.status_code == 409


def test_the_queue_pages_by_keyset_in_the_one_order(
    workflow: Workflow,
    start: Callable[..., Run],
    reviewer: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for priority in (0, 5, 0, 9, 5):
        start(workflow, priority_hint=priority)
    ReviewTask.objects.filter(pk__in=ReviewTask.objects.order_by("pk").values("pk")[:1]).update(
        due_at=None
    )
    for task, priority in zip(ReviewTask.objects.order_by("pk"), (0, 5, 0, 9, 5), strict=True):
        ReviewTask.objects.filter(pk=task.pk).update(priority=priority)
    ordered = ReviewTask.objects.order_by(*QUEUE_ORDER)
    expected = list(ordered.values_list("pk", flat=True))
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    client = client_for(reviewer)
    seen: list[int] = []
    url = reverse("review:queue")
    for _ in range(5):
        response = client.get(url)
        rows = response.context["rows"]
        seen += [t.pk for t in rows]
        if not response.context["next_cursor"]:
            break
        url = reverse("review:queue") + "?after=" + quote(response.context["next_cursor"])
    assert seen == expected


def test_bad_filters_and_cursors_are_ignored(task: ReviewTask, reviewer: User) -> None:
    client = client_for(reviewer)
    for query in ("priority=lots", "after=garbage", "status=nonsense", "workflow=none-such"):
        response = client.get(reverse("review:queue") + "?" + query)
        assert response.status_code == 200, query
    assert client.get(reverse("review:queue") + "?workflow=none-such").context["rows"] == []


def test_filters_narrow_the_queue(task: ReviewTask, reviewer: User) -> None:
    client = client_for(reviewer)
    assert client.get(reverse("review:queue") + "?reason=audit_sample").context["rows"] == []
    rows = client.get(reverse("review:queue") + "?reason=below_threshold").context["rows"]
    assert [t.pk for t in rows] == [task.pk]
    assert client.get(reverse("review:queue") + "?mine=on").context["rows"] == []
    client.post(reverse("review:claim", args=[task.pk]))
    assert [t.pk for t in client.get(reverse("review:queue") + "?mine=on").context["rows"]] == [
        task.pk
    ]


def test_the_input_is_shown_in_the_schema_order(
    make_gate_workflow: Callable[..., Workflow], start: Callable[..., Run], reviewer: User
) -> None:
    from tests.review.conftest import gated_definition

    definition = gated_definition("ordered")
    definition["input_schema"] = {
        "type": "object",
        "properties": {"subject": {}, "body": {}, "answer": {}, "confidence": {}},
    }
    workflow = make_gate_workflow(definition=definition)
    run = start(workflow, subject="S", body="B" * 10, zzz_extra=1)
    task = ReviewTask.objects.get(run=run)
    detail = client_for(reviewer).get(reverse("review:task", args=[task.pk])).context["d"]
    assert list(detail.input)[:4] == ["subject", "body", "answer", "confidence"]
    assert "zzz_extra" in detail.input


def test_after_a_decision_a_task_still_held_is_shown_with_one_message(
    task: ReviewTask, reviewer: User, workflow: Workflow, start: Callable[..., Run]
) -> None:
    client = client_for(reviewer)
    held = ReviewTask.objects.get(run=start(workflow))
    client.post(reverse("review:claim", args=[held.pk]))
    response = client.post(
        reverse("review:decide", args=[task.pk]), {"action": "approve"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("review:task", args=[held.pk])
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        f"Task {task.pk}: approved.",
        f"Nothing new is waiting for you. You still hold task {held.pk}.",
    ]
