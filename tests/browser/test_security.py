"""Secure by default, in a real browser: the Content Security Policy holds on every page a
reviewer uses, the queue's polling needs no eval, and a locked-out login gets a page that
says when to try again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.browser.test_desk import start_tickets
from tests.integration.worker import Worker
from workflows.models import ReviewTask

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def strict_policy(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    assert "'unsafe-inline'" not in directives["script-src"] + directives["style-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    return directives


def test_the_desk_the_login_and_the_token_page_break_no_csp_rule(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    runs = start_tickets(desk, system, wait_until, n=2)
    desk_page = open_page(None)
    page = desk_page.page
    login = page.goto(desk_page.base_url + "/accounts/login/")
    strict_policy(login.headers["content-security-policy"])
    desk_page.login("alice")
    queue = page.goto(desk_page.base_url + "/review/")
    strict_policy(queue.headers["content-security-policy"])
    # The queue, the help, and a task opened and claimed with the mouse.
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url("**/review/tasks/*/")
    page.click("button:text('Claim')")
    page.wait_for_selector("text=Claimed by")
    assert page.locator("#decide").is_visible()
    # Decided with the keyboard: approve opens the next task, reject wants a reason.
    page.keyboard.press("a")
    page.wait_for_selector("text=approved.")
    page.keyboard.press("r")
    page.keyboard.type("a billing question, not this team's")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=rejected.")
    decided = ReviewTask.objects.filter(run__in=runs, decision__isnull=False)
    assert sorted(decided.values_list("decision__action", flat=True)) == ["approve", "reject"]
    page.keyboard.press("u")
    page.wait_for_url("**/review/")
    # The token page: create one (shown once), then revoke it.
    tokens = page.goto(desk_page.base_url + "/accounts/tokens/")
    strict_policy(tokens.headers["content-security-policy"])
    page.fill("#id_name", "csp check")
    page.check("input[value='runs:read']")
    page.click("button:text('Create token')")
    page.wait_for_selector("[data-token]")
    page.click("button:text('Revoke')")
    page.wait_for_selector("text=revoked")
    assert desk_page.violations == []
    assert desk_page.errors == []


def test_an_inline_script_would_be_refused_and_reported(
    desk: dict[str, Any], open_page: Callable[..., Any]
) -> None:
    """The watch itself: what the other tests' empty `violations` rests on."""
    desk_page = open_page("alice")
    page = desk_page.page
    page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.ranInline = true";
          document.body.append(s);
          const d = document.createElement("div");
          d.setAttribute("style", "color: red");
          document.body.append(d);
        }"""
    )
    page.wait_for_function("() => true")
    assert page.evaluate("window.ranInline === undefined")
    assert [v.split()[0] for v in desk_page.violations] == ["script-src-elem", "style-src-attr"]


def test_the_queue_polls_only_while_the_page_is_visible(
    worker: Worker,
    desk: dict[str, Any],
    system: Any,
    wait_until: Callable[..., None],
    open_page: Callable[..., Any],
) -> None:
    start_tickets(desk, system, wait_until)
    desk_page = open_page("alice")
    page = desk_page.page
    page.clock.install()
    page.reload()
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.headers.get("hx-request") else None)
    hidden = """(state) => Object.defineProperty(
        document, "visibilityState", {value: state, configurable: true})"""
    page.evaluate(hidden, "hidden")
    page.clock.run_for(35_000)
    page.wait_for_timeout(300)
    assert polls == []
    page.evaluate(hidden, "visible")
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
        page.clock.run_for(11_000)
    assert len(polls) == 1 and "/review/" in polls[0]
    assert page.locator("#queue tr[data-task]").count() == 1
    assert desk_page.errors == []


def test_a_locked_out_login_says_when_to_try_again(
    desk: dict[str, Any], open_page: Callable[..., Any], settings: Any
) -> None:
    desk_page = open_page(None)
    page = desk_page.page
    page.goto(desk_page.base_url + "/accounts/login/")

    def log_in(password: str) -> Any:
        page.fill("#id_username", "alice")
        page.fill("#id_password", password)
        with page.expect_navigation() as navigation:
            page.click("button[type=submit]")
        return navigation.value

    def back_to_login() -> None:
        # The link is boosted: wait until htmx has recorded the page in history, or a submit
        # right after the swap is cancelled by htmx's pushState.
        page.click("text=Back to the login page")
        page.wait_for_function("() => history.state && history.state.htmx")

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in("wrong").status == 200
        assert "didn't match" in page.locator("[role=alert]").inner_text()
    locked = log_in("wrong")
    assert locked.status == 429
    assert int(locked.headers["retry-after"]) > 60 * 14
    strict_policy(locked.headers["content-security-policy"])
    assert page.locator("h1").inner_text() == "Too many failed logins"
    text = page.locator("[data-locked-out]").inner_text()
    assert "Try again after" in text and "UTC" in text and "about 15 minutes" in text
    back_to_login()
    assert log_in("pw").status == 429  # the right password, still refused
    # Another reviewer at the same address is not locked out.
    back_to_login()
    page.fill("#id_username", "bob")
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_url("**/review/")
    assert desk_page.violations == []
    assert [e for e in desk_page.errors if "429" not in e] == []


def test_the_admin_and_the_api_docs_break_no_rule_of_their_policy(
    desk: dict[str, Any], open_page: Callable[..., Any]
) -> None:
    """The admin runs under the desk's strict policy; the API docs add data: images only."""
    User.objects.create_superuser("boss", "boss@example.com", "pw")
    group = desk["alice"].groups.get()
    desk_page = open_page(None)
    page = desk_page.page
    base = desk_page.base_url
    page.goto(base + "/admin/login/?next=/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    for path in (
        "/admin/workflows/run/?q=nothing",
        "/admin/workflows/auditevent/",
        "/admin/axes/accessattempt/",
        "/admin/axes/accesslog/",
        "/admin/auth/user/add/",
        f"/admin/auth/user/{desk['alice'].pk}/change/",
        f"/admin/auth/group/{group.pk}/delete/",
        f"/admin/workflows/workflow/{desk['workflow'].pk}/change/",
        "/admin/workflows/endpoint/add/",
        "/admin/password_change/",
    ):
        response = page.goto(base + path)
        assert response.status == 200, path
        strict_policy(response.headers["content-security-policy"])
        page.wait_for_load_state("load")
    # The user's groups, moved with the admin's two-box widget (its script builds the boxes).
    page.goto(base + f"/admin/auth/user/{desk['alice'].pk}/change/")
    page.click("#id_groups_remove_all")
    page.click("#id_groups_add_all")
    docs = page.goto(base + "/api/docs")
    assert docs.status == 200
    page.wait_for_selector(".swagger-ui .info .title")
    page.click(".opblock-summary >> nth=0")
    page.wait_for_timeout(300)
    assert desk_page.violations == []
    assert desk_page.errors == []
