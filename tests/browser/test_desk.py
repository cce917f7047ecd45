"""A reviewer's day, in a real browser: claim, edit, approve, conflicts and the keyboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.worker import Worker
from workflows import services
from workflows.models import ReviewTask, Run, StepRun

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TICKETS = [
    {"subject": "Charged twice", "body": "My card shows two payments for the Plus plan."},
    {"subject": "Camera offline", "body": "The garden camera keeps dropping off the wifi."},
    {"subject": "Where is my order?", "body": "Tracking has not moved for five days."},
]


def start_tickets(
    desk: dict[str, Any], system: Any, wait_until: Callable[..., None], n: int = 1
) -> list[Run]:
    runs = [
        services.run_start(workflow=desk["workflow"], input=ticket, actor=system)
        for ticket in TICKETS[:n]
    ]
    wait_until(lambda: ReviewTask.objects.filter(run__in=runs).count() == n)
    return runs


def test_a_reviewer_claims_edits_and_approves_and_the_run_completes(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    (run,) = start_tickets(desk, system, wait_until)
    desk_page = open_page("alice")
    page = desk_page.page
    assert page.locator("#queue tr[data-task]").count() == 1
    page.click("#next-task")
    page.wait_for_url("**/review/tasks/*/")
    page.wait_for_selector("text=Why a person:")
    ai_label = StepRun.objects.get(run=run, step_id="classify").output["label"]
    new_label = "other" if ai_label != "other" else "account"
    page.click("#edit-box summary")
    page.select_option("#out-label", new_label)
    assert page.locator("[data-diff] ins").inner_text() == new_label
    page.fill("#reason", "the customer writes about something else")
    page.click("#decide button[value=edit]")
    page.wait_for_selector("text=edited and approved")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED)
    assert StepRun.objects.get(run=run, step_id="route").output == {"team": new_label}
    assert StepRun.objects.get(run=run, step_id="classify").output == {"label": ai_label}
    assert desk_page.errors == []


def test_a_second_reviewer_opening_the_same_task_sees_the_conflict(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    start_tickets(desk, system, wait_until)
    alice = open_page("alice")
    alice.page.click("#next-task")
    alice.page.wait_for_url("**/review/tasks/*/")
    bob = open_page("bob")
    task_url = alice.page.url
    bob.page.goto(task_url)
    conflict = bob.page.locator(".conflict")
    assert "alice is reviewing this task" in conflict.inner_text()
    assert bob.page.locator("#decide").count() == 0
    alice.page.keyboard.press("a")
    alice.page.wait_for_selector("text=approved")
    bob.page.goto(task_url)
    assert "already been decided by alice" in bob.page.locator(".conflict").inner_text()
    bob.page.click(".conflict button")
    bob.page.wait_for_selector("text=Nothing is waiting for you")
    assert alice.errors == [] and bob.errors == []


def test_the_keyboard_alone_works_through_the_queue(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    runs = start_tickets(desk, system, wait_until, n=3)
    desk_page = open_page("alice")
    page = desk_page.page
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    selected = page.locator("#queue tr[aria-selected=true]")
    first = page.locator("#queue tr[data-task]").first
    assert selected.get_attribute("data-task") == first.get_attribute("data-task")
    page.keyboard.press("Enter")
    page.wait_for_url("**/review/tasks/*/")
    page.keyboard.press("a")  # approve: claims and decides, then the next task opens
    page.wait_for_selector("text=approved.")
    # Reject needs a reason: r opens the field, typing "r" there must not fire shortcuts.
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "reason"
    page.keyboard.type("wrong team, really a refund request")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=rejected.")
    page.keyboard.press("x")
    page.keyboard.type("needs a supervisor")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=escalated.")
    actions = sorted(
        ReviewTask.objects.filter(run__in=runs, decision__isnull=False).values_list(
            "decision__action", flat=True
        )
    )
    assert actions == ["approve", "escalate", "reject"]
    page.keyboard.press("u")
    page.wait_for_url("**/review/")
    # The escalated task is still listed, for whoever decides it now: not as open for alice.
    assert "That was the last task waiting for you" in page.locator(".messages").inner_text()
    successor = ReviewTask.objects.get(run__in=runs, escalated_from__isnull=False)
    row = page.locator(f'#queue tr[data-task="{successor.pk}"]')
    assert "waiting for the workflow's admins" in row.inner_text()
    assert desk_page.errors == []


def test_the_desk_fits_a_tablet_width(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    start_tickets(desk, system, wait_until)
    desk_page = open_page("alice")
    page = desk_page.page
    page.set_viewport_size({"width": 820, "height": 1180})
    overflow = "document.documentElement.scrollWidth - window.innerWidth"
    assert page.evaluate(overflow) <= 0
    page.click("#next-task")
    page.wait_for_url("**/review/tasks/*/")
    assert page.evaluate(overflow) <= 0
    # Focus is visible: the focused control has an outline.
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    assert desk_page.errors == []


def test_the_desk_fits_a_phone_width(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    long_ticket = {
        "subject": "Refund-request-" + "x" * 80,
        "body": "See https://example.com/orders/" + "0123456789" * 30 + " for the invoice.",
    }
    run = services.run_start(workflow=desk["workflow"], input=long_ticket, actor=system)
    wait_until(lambda: ReviewTask.objects.filter(run=run).exists())
    desk_page = open_page("alice")
    page = desk_page.page
    page.set_viewport_size({"width": 390, "height": 844})
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    page.reload()
    assert page.evaluate(fits), "the queue scrolls sideways"
    page.click("#next-task")
    page.wait_for_url("**/review/tasks/*/")
    task_url = page.url
    assert page.evaluate(fits), "an open task scrolls sideways"
    page.keyboard.press("e")
    page.keyboard.type("a refund, not a technical question")
    ai_label = page.input_value("#out-label")
    page.select_option("#out-label", "other" if ai_label != "other" else "account")
    assert page.evaluate(fits), "the edit box scrolls sideways"
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=edited and approved.")
    page.goto(task_url)
    assert page.locator(".outcome del").inner_text() == ai_label
    assert page.evaluate(fits), "a decided task scrolls sideways"
    # The run history may scroll inside its own box; the page does not.
    assert page.locator("table.history").is_visible()
    assert desk_page.errors == []


@dataclass
class OpenTask:
    """One ticket waiting for review, opened by alice with `n` as the desk does it."""

    run: Run
    task: ReviewTask
    ai_label: str
    desk_page: Any

    @property
    def page(self) -> Any:
        return self.desk_page.page


@pytest.fixture
def open_task(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> OpenTask:
    (run,) = start_tickets(desk, system, wait_until)
    desk_page = open_page("alice")
    page = desk_page.page
    page.click("#next-task")
    page.wait_for_url("**/review/tasks/*/")
    task = ReviewTask.objects.get(pk=int(page.url.rstrip("/").split("/")[-1]))
    ai_label = StepRun.objects.get(run=run, step_id="classify").output["label"]
    return OpenTask(run=run, task=task, ai_label=ai_label, desk_page=desk_page)


def test_e_puts_the_cursor_in_the_reason_and_typing_never_changes_the_answer(
    open_task: OpenTask, wait_until: Callable[..., None]
) -> None:
    run, task, ai_label, page = open_task.run, open_task.task, open_task.ai_label, open_task.page
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.id") == "reason"
    assert page.locator("#edit-box").get_attribute("open") is not None
    # Every letter of a label's first letters, typed: in the label's dropdown each would
    # have jumped to another label. In the reason field they are just the reason.
    reason = "so: this belongs with the other team, a shipping and account thing"
    page.keyboard.type(reason)
    assert page.input_value("#reason") == reason
    assert page.input_value("#out-label") == ai_label
    assert "No change" in page.locator("#edit-box [data-diff]").inner_text()
    # Confirming an edit that changes nothing says so where the eye is, and sends nothing.
    page.keyboard.press("Control+Enter")
    alert = page.locator("#reason-error[role=alert]")
    alert.wait_for(state="visible")
    assert "not changed the answer" in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "reason"
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED  # nothing was sent
    # Changing the answer is deliberate: Tab out of the reason into the edit box.
    for _ in range(3):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "out-label":
            break
    assert page.evaluate("document.activeElement.id") == "out-label"
    new_label = "other" if ai_label != "other" else "account"
    page.select_option("#out-label", new_label)
    diff = page.locator("#edit-box [data-diff]")
    assert diff.locator("del").inner_text() == ai_label
    assert diff.locator("ins").inner_text() == new_label
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=edited and approved")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED)
    assert StepRun.objects.get(run=run, step_id="check").output == {"label": new_label}
    assert open_task.desk_page.errors == []


def test_a_missing_reason_is_flagged_at_the_reason_field(open_task: OpenTask) -> None:
    task, page = open_task.task, open_task.page
    alert = page.locator("#reason-error[role=alert]")
    assert not alert.is_visible()
    page.keyboard.press("r")
    page.keyboard.press("Control+Enter")
    alert.wait_for(state="visible")
    assert "A reason is required to reject" in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "reason"
    assert page.get_attribute("#reason", "aria-invalid") == "true"
    # Clicking an override button without a reason is met the same way.
    page.keyboard.press("Escape")
    page.click("#decide button[data-key=x]")
    assert "A reason is required to escalate" in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "reason"
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED  # nothing was sent
    # Typing the reason clears the message; confirming then escalates.
    page.keyboard.type("a supervisor should see this")
    assert not alert.is_visible()
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=escalated.")
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED
    assert open_task.desk_page.errors == []


def test_approve_never_drops_an_edit_in_progress(
    open_task: OpenTask, wait_until: Callable[..., None]
) -> None:
    run, task, ai_label, page = open_task.run, open_task.task, open_task.ai_label, open_task.page
    page.keyboard.press("e")
    page.select_option("#out-label", "other" if ai_label != "other" else "account")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    alert = page.locator("#reason-error[role=alert]")
    alert.wait_for(state="visible")
    assert "You changed the answer" in alert.inner_text()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED
    page.click("[data-undo-edit]")
    assert page.input_value("#out-label") == ai_label
    assert "No change" in page.locator("#edit-box [data-diff]").inner_text()
    page.keyboard.press("a")
    page.wait_for_selector("text=approved.")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED)
    assert StepRun.objects.get(run=run, step_id="check").output == {"label": ai_label}
    assert open_task.desk_page.errors == []


def test_next_with_only_a_held_task_left_says_so_and_opens_it(open_task: OpenTask) -> None:
    task, page = open_task.task, open_task.page
    page.keyboard.press("u")
    page.wait_for_url("**/review/")
    page.keyboard.press("n")
    page.wait_for_url(f"**/review/tasks/{task.pk}/")
    # One message that matches what is shown: not "nothing is waiting" above a task.
    assert page.locator(".messages li").all_inner_texts() == [
        f"Nothing new is waiting for you. You still hold task {task.pk}."
    ]
    assert page.locator("#decide").is_visible()
    assert open_task.desk_page.errors == []
