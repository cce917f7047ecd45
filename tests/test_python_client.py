"""The Python client (clients/python): its own suite in an environment without Django, and
the real client against the real app.

The first test builds a virtualenv from the client's hash-pinned lock alone (cached under
.venv-client/, keyed by the lock's SHA-256), installs the client from a copy of its folder
with --no-deps (so the package's build, py.typed included, is what gets tested), and runs the
client's pytest suite and `mypy --strict` there: proof that the client needs nothing of the
server's. The others drive `hitl_client` (on pythonpath, see pyproject.toml) against
`live_server`, over real HTTP.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from hitl_client import ApiError, Client, WebhookSender

from hitl.accounts.models import SCOPES
from hitl.accounts.services import api_token_create
from tests.api.conftest import WAIT_DEFINITION
from tests.helpers import drive
from tests.review.conftest import (  # noqa: F401 (fixtures, found by name)
    _review_kinds,
    escalator,
    escalators,
    make_gate_workflow,
    start,
    task,
    workflow,
)
from workflows.models import ReviewTask, Run, Workflow
from workflows.services import endpoint_create, webhook_sources

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"
LOCK = CLIENT / "requirements-test.lock"
CACHE = ROOT / ".venv-client"
# What the child processes must not inherit from this one.
DROPPED = ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV", "PYTHONHOME")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in DROPPED}


def run(command: list[str], cwd: Path = ROOT, timeout: float = 900) -> str:
    done = subprocess.run(
        command,
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}"
    return done.stdout


def client_venv() -> Path:
    """The client's test virtualenv, built from its lock once per version of the lock."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    venv = CACHE / digest
    done = venv / ".complete"
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # an interrupted build
    for stale in CACHE.glob("*") if CACHE.exists() else []:
        shutil.rmtree(stale, ignore_errors=True)  # venvs of earlier locks
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--require-hashes",
            "--no-deps",
            "-r",
            str(LOCK),
        ]
    )
    done.touch()
    return venv


@pytest.fixture(scope="module")
def venv_python() -> Path:
    return client_venv() / "bin" / "python"


def test_the_client_passes_its_own_suite_and_mypy_strict_without_django(
    venv_python: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "python"
    shutil.copytree(
        CLIENT,
        copy,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".*_cache"),
    )
    python = str(venv_python)
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--force-reinstall",
            str(copy),
        ]
    )
    tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=copy)
    assert " passed" in tests and "failed" not in tests, tests
    types = run(
        [python, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "src"], cwd=copy
    )
    assert "Success: no issues found" in types, types
    # Typed for its users too: the installed package carries py.typed.
    installed = run([python, "-c", "import hitl_client, pathlib; print(hitl_client.__file__)"])
    assert "site-packages" in installed
    assert (Path(installed.strip()).parent / "py.typed").exists()


def test_the_clients_environment_has_no_django(venv_python: Path) -> None:
    done = subprocess.run(
        [str(venv_python), "-c", "import django"],
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "No module named 'django'" in done.stderr


# --- the real client against the real app --------------------------------------------------


@pytest.fixture
def expenses(make_workflow: Callable[..., Workflow], owner: User) -> Workflow:
    """A wait step then a transform (tests/api): the owner is its admin."""
    wait_workflow = make_workflow(WAIT_DEFINITION)
    wait_workflow.admins.add(owner)
    return wait_workflow


@pytest.fixture
def hitl(live_server: Any, owner: User, expenses: Workflow) -> Iterator[Client]:
    _, token = api_token_create(user=owner, name="client", scopes=SCOPES)
    with Client(live_server.url, token) as client:
        yield client


def test_start_a_run_read_it_resume_it_and_wait_for_the_end(hitl: Client, owner: User) -> None:
    started = hitl.start_run("expenses", {"amount": 40}, idempotency_key="expense-40")
    assert (started.status, started.source, started.started_by) == ("pending", "api", "owner")
    again = hitl.start_run("expenses", {"amount": 40}, idempotency_key="expense-40")
    assert again.id == started.id and Run.objects.count() == 1

    drive(Run.objects.get(pk=started.id))
    waiting = hitl.get_run(started.id)
    assert waiting.status == "waiting" and not waiting.finished
    assert waiting.steps[0].waiting_for == "a manager confirms"

    resumed = hitl.resume_run(started.id, output={"ok": True}, outcome="approved")
    assert resumed.steps[0].status == "completed"
    drive(Run.objects.get(pk=started.id))
    done = hitl.wait_for_run(started.id, timeout=10)
    assert (done.status, done.outcome, done.output) == ("completed", "approved", {"booked": 40})
    assert [summary.id for summary in hitl.list_runs(workflow="expenses")] == [started.id]
    assert [wf.slug for wf in hitl.list_workflows()] == ["expenses"]


def test_a_run_names_its_callback_endpoint(hitl: Client, expenses: Workflow, owner: User) -> None:
    url = "https://erp.example.com/hitl/callback"
    endpoint_create(workflow=expenses, user=owner, url=url, named_runs_only=True)
    run = hitl.start_run("expenses", {"amount": 3}, callback_url=url)
    assert run.callback_url == url and hitl.get_run(run.id).callback_url == url
    with pytest.raises(ApiError) as e:
        hitl.start_run("expenses", {"amount": 3}, callback_url="https://elsewhere.example/x")
    assert e.value.status == 400 and "callback_url" in e.value.message
    assert hitl.start_run("expenses", {"amount": 4}).callback_url is None


def test_a_signed_webhook_starts_a_run_and_its_retry_gets_the_same_run(
    hitl: Client, live_server: Any, expenses: Workflow, owner: User
) -> None:
    issued = webhook_sources.webhook_source_create(workflow=expenses, slug="erp", user=owner)
    url = f"{live_server.url}/api/v1/webhooks/erp/"
    with WebhookSender(url, issued.secret) as sender:
        first = sender.send({"amount": 12})
        retry = sender.send({"amount": 12}, webhook_id=first.webhook_id)

    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.run == first.run and Run.objects.count() == 1
    run = hitl.get_run(first.run)
    assert run.source == "webhook" and run.input == {"amount": 12}


def test_refusals_are_api_errors_with_hitls_code(
    hitl: Client, live_server: Any, expenses: Workflow, owner: User
) -> None:
    with Client(live_server.url, "hitl_not_a_token") as stranger, pytest.raises(ApiError) as e:
        stranger.get_run(1)
    assert (e.value.status, e.value.code) == (401, "unauthenticated")

    with pytest.raises(ApiError) as e:
        hitl.start_run("expenses", {"amount": "lots"})
    assert e.value.status == 400 and "input amount" in e.value.message

    issued = webhook_sources.webhook_source_create(workflow=expenses, slug="erp", user=owner)
    url = f"{live_server.url}/api/v1/webhooks/erp/"
    with WebhookSender(url, issued.secret) as sender, pytest.raises(ApiError) as e:
        sender.send({"total": 12})
    assert (e.value.status, e.value.code) == (422, "invalid_input")
    assert e.value.details, "the schema's complaints come with the error"
    with WebhookSender(url, "whsec_" + "QUJD" * 8) as forger, pytest.raises(ApiError) as e:
        forger.send({"amount": 12})
    assert (e.value.status, e.value.code) == (401, "invalid_signature")
    assert Run.objects.count() == 0


def test_a_reviewer_lists_reads_claims_releases_and_decides_a_task(
    live_server: Any,
    reviewer: User,
    task: ReviewTask,  # noqa: F811 (the fixture imported above)
) -> None:
    _, token = api_token_create(user=reviewer, name="desk", scopes=SCOPES)
    with Client(live_server.url, token) as hitl:
        (queued,) = hitl.list_tasks(workflow="triage", actionable=True)
        assert (queued.id, queued.status, queued.can_decide) == (task.pk, "open", True)
        shown = hitl.get_task(task.pk)
        assert shown.shown["confidence"] == 0.5 and "approve" in shown.actions
        assert hitl.claim_task(task.pk).claimed_by_me
        assert hitl.release_task(task.pk).status == "open"
        decided = hitl.decide_task(task.pk, "approve")
        with pytest.raises(ApiError) as again:
            hitl.decide_task(task.pk, "reject", reason="changed my mind")

    assert decided.status == "decided" and decided.actions == []
    assert [(d.action, d.reviewer) for d in decided.decisions] == [("approve", "reviewer")]
    assert again.value.status == 409
    assert ReviewTask.objects.get(pk=task.pk).status == "decided"
