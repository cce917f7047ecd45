"""Browser tests: Playwright driving Debian's Chromium against a live server, with a real
Celery worker finishing the runs that reviewers decide."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from tests.integration.conftest import _worker_process, broker, wait_until, worker
from workflows import services
from workflows.ai.trainingdata import load_jsonl
from workflows.models import Workflow

__all__ = ["_worker_process", "broker", "wait_until", "worker"]

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a
# thread with a running loop unless told this is deliberate (tests only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LABELS = ["billing", "technical", "account", "shipping", "other"]


@dataclass(frozen=True)
class MissingBrowser:
    fail: bool
    message: str


def missing_browser(chromium: str | None, environ: Mapping[str, str]) -> MissingBrowser | None:
    """What to do with the tests that need a browser: None when Chromium is there to run them.

    Outside CI a missing Chromium skips them, with the reason in the summary (`-ra`). Under CI
    (the CI variable set to anything non-empty) it fails them: a browser quietly missing from
    the CI image would otherwise turn every browser test into a skip that looks like a pass.
    """
    if chromium:
        return None
    reason = "Chromium is not installed: apt-get install chromium (.ci/run installs it)"
    if environ.get("CI"):
        return MissingBrowser(True, f"{reason}; CI is set, so a missing browser is a failure")
    return MissingBrowser(False, reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: Any) -> None:
    if "browser" not in getattr(item, "fixturenames", ()):
        return
    verdict = missing_browser(CHROMIUM, os.environ)
    if verdict is None:
        return
    if verdict.fail:
        pytest.fail(verdict.message, pytrace=False)
    pytest.skip(verdict.message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


# Every document reports the Content Security Policy violations it sees, before any script
# of the page runs (an init script is the browser's, not subject to the page's policy).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.hitlCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"}` +
      ` at ${event.sourceFile || event.documentURI}:${event.lineNumber}` +
      (event.sample ? ` (${event.sample})` : "")
  );
});
"""


class Page:
    """A page that records console errors, uncaught exceptions and CSP violations.

    `errors` holds all three: every browser test that asserts it is empty also asserts that
    the page broke no rule of its Content Security Policy. `violations` holds those alone.
    """

    def __init__(self, browser: Any, base_url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.violations: list[str] = []
        self.context.expose_function("hitlCspViolation", self._violation)
        self.context.add_init_script(REPORT_CSP_VIOLATIONS)
        self.page = self.context.new_page()
        self.base_url = base_url
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        self.errors.append(f"CSP violation: {text}")

    def login(self, username: str, password: str = "pw") -> Any:
        page = self.page
        page.goto(self.base_url + "/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/review/")
        return page


@pytest.fixture
def open_page(browser: Any, live_server: Any) -> Iterator[Any]:
    """Opens a page logged in as `username`, or, given None, a page not logged in."""
    pages: list[Page] = []

    def open_page(username: str | None) -> Page:
        page = Page(browser, live_server.url)
        if username is not None:
            page.login(username)
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        page.context.close()


@pytest.fixture
def desk(transactional_db: None, settings: Any, system: services.Actor) -> dict[str, Any]:
    """A ticket-triage workflow on the real local model whose gate sends items to review."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    reviewers = Group.objects.create(name="desk-reviewers")
    alice = User.objects.create_user("alice", "alice@example.com", "pw")
    bob = User.objects.create_user("bob", "bob@example.com", "pw")
    for user in (alice, bob):
        user.groups.add(reviewers)
    examples = load_jsonl("hitl/demo/data/tickets.jsonl")[:900]
    services.local_model_train(name="desk", examples=examples, actor=system)
    result = services.workflow_import(
        source=_definition(),
        actor=system,
    )
    workflow: Workflow = result.workflow
    workflow.reviewer_group = reviewers
    workflow.save()
    return {"workflow": workflow, "alice": alice, "bob": bob}


def _definition() -> str:
    import yaml

    return yaml.safe_dump(
        {
            "slug": "desk",
            "name": "Desk triage",
            "input_schema": {"type": "object", "required": ["subject", "body"]},
            "steps": [
                {
                    "id": "classify",
                    "kind": "ai",
                    "config": {
                        "model": "local:desk",
                        "prompt": "Classify the ticket.",
                        "input": 'input.subject + "\\n\\n" + input.body',
                        "output": {"labels": LABELS},
                    },
                },
                {
                    "id": "check",
                    "kind": "gate",
                    # Nothing passes on its own: every ticket reaches the desk.
                    "config": {"threshold": 1.0, "sla_minutes": 120},
                    "next": {"approved": "route", "rejected": "end"},
                },
                {
                    "id": "route",
                    "kind": "transform",
                    "config": {"output": {"team": "steps.check.output.label"}},
                },
            ],
        }
    )
