"""`Client` against a real HTTP server: requests as hitl expects them, answers typed."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from hitl_client import ApiError, Client, NetworkError, Run, RunSummary, Task
from tests import samples
from tests.conftest import Clock
from tests.server import Reply, Request, Server, error


@pytest.fixture
def client(server: Server, clock: Clock) -> Iterator[Client]:
    with Client(server.url, "hitl_secret", sleep=clock.sleep, clock=clock) as c:
        yield c


def test_start_run_posts_the_input_with_the_token_and_a_fresh_idempotency_key(
    server: Server, client: Client
) -> None:
    server.reply(Reply(201, samples.run("pending")), Reply(201, samples.run("pending")))

    run = client.start_run("ticket-triage", {"subject": "Charged twice"}, version=2)
    client.start_run("ticket-triage", {"subject": "Charged twice"})

    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/api/v1/workflows/ticket-triage/runs")
    assert first.headers["authorization"] == "Bearer hitl_secret"
    assert first.json() == {"input": {"subject": "Charged twice"}, "version": 2}
    assert second.json() == {"input": {"subject": "Charged twice"}}
    keys = [request.headers["idempotency-key"] for request in server.requests]
    assert all(uuid.UUID(key).version == 4 for key in keys) and keys[0] != keys[1]
    assert isinstance(run, Run) and run.id == 17 and run.status == "pending"
    assert not run.finished


def test_a_caller_chosen_idempotency_key_is_sent_as_given(server: Server, client: Client) -> None:
    server.reply(Reply(201, samples.run("pending")))
    client.start_run("ticket-triage", {}, idempotency_key="order-1042")
    assert server.requests[0].headers["idempotency-key"] == "order-1042"


def test_a_run_is_read_into_typed_fields_and_keeps_its_json(server: Server, client: Client) -> None:
    body = samples.run("completed", extra_field_from_a_newer_server=1)
    server.reply(Reply(200, body))

    run = client.get_run(17)

    assert server.requests[0].path == "/api/v1/runs/17" and server.requests[0].query == {}
    assert run.finished and run.outcome == "approved" and run.output == {"label": "billing"}
    assert run.created_at == datetime(2026, 3, 1, 9, 0, 0, 123000, tzinfo=timezone.utc)
    assert run.finished_at is not None and run.finished_at.utcoffset() == timedelta(0)
    (step,) = run.steps
    assert step.cost.cost_usd == Decimal("0.001234") and step.confidence == 0.62
    (review,) = run.reviews
    assert review.decision is not None and review.decision.action == "edit"
    assert run.raw["extra_field_from_a_newer_server"] == 1


def test_an_error_body_becomes_an_api_error_with_every_field(
    server: Server, client: Client
) -> None:
    details = [{"loc": ["body", "input"], "msg": "Field required"}]
    server.reply(error(422, "validation_error", "the request is not valid", details))

    with pytest.raises(ApiError) as caught:
        client.start_run("ticket-triage", None)

    e = caught.value
    assert (e.status, e.code, e.message, e.details) == (
        422,
        "validation_error",
        "the request is not valid",
        details,
    )
    assert e.retry_after is None
    assert len(server.requests) == 1  # a refusal is not retried


def test_an_answer_that_is_not_hitls_error_body_keeps_its_status_and_text(
    server: Server, client: Client
) -> None:
    server.reply(Reply(404, raw=b"<html>Not Found</html>"))
    with pytest.raises(ApiError) as caught:
        client.get_run(1)
    assert caught.value.status == 404 and caught.value.code == "http_404"
    assert "Not Found" in caught.value.message


def test_retry_after_is_honoured_and_the_retry_sends_the_same_key(
    server: Server, client: Client, clock: Clock
) -> None:
    server.reply(
        error(429, "too_many_waits", Retry_After="7"),
        error(409, "idempotency_in_flight", Retry_After="1"),
        Reply(201, samples.run("pending")),
    )

    run = client.start_run("ticket-triage", {"subject": "x"})

    assert run.id == 17 and clock.slept == [7.0, 1.0]
    assert len({r.headers["idempotency-key"] for r in server.requests}) == 1
    assert len({r.body for r in server.requests}) == 1


def test_without_retry_after_the_backoff_grows_and_the_retries_are_bounded(
    server: Server, clock: Clock
) -> None:
    server.handler = lambda request: error(503, "unavailable")
    with (
        Client(server.url, "t", max_retries=3, sleep=clock.sleep) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.get_run(1)
    assert caught.value.status == 503
    assert len(server.requests) == 4 and clock.slept == [0.5, 1.0, 2.0]


def test_a_retry_after_longer_than_the_client_will_sleep_is_raised_to_the_caller(
    server: Server, client: Client, clock: Clock
) -> None:
    server.reply(error(429, "rate_limited", Retry_After="3600"))
    with pytest.raises(ApiError) as caught:
        client.get_run(1)
    assert caught.value.retry_after == 3600.0 and clock.slept == []


def test_a_dropped_connection_is_retried_with_the_same_key(
    server: Server, client: Client, clock: Clock
) -> None:
    server.reply(Reply(drop=True), Reply(201, samples.run("pending")))
    assert client.start_run("ticket-triage", {}).id == 17
    first, second = server.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert clock.slept == [0.5]


def test_no_answer_at_all_is_a_network_error_after_the_retries(clock: Clock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: connections are refused.
    url = f"http://127.0.0.1:{port}"
    with Client(url, "t", max_retries=2, sleep=clock.sleep) as client, pytest.raises(NetworkError):
        client.get_run(1)
    assert clock.slept == [0.5, 1.0]


def server_that_waits(server: Server, clock: Clock, statuses: list[str]) -> None:
    """Each GET answers the next status, after "waiting" (on the fake clock) as long as it
    was asked to, as hitl does for a run that has not finished."""

    def handle(request: Request) -> Reply:
        status = statuses.pop(0)
        if status not in ("completed", "failed", "cancelled"):
            clock.now += float(request.query.get("wait", "0"))
        return Reply(200, samples.run(status))

    server.handler = handle


def test_wait_for_run_waits_on_the_server_until_the_run_has_finished(
    server: Server, client: Client, clock: Clock
) -> None:
    server_that_waits(server, clock, ["running", "waiting", "completed"])

    run = client.wait_for_run(17, timeout=120)

    assert run.status == "completed" and run.output == {"label": "billing"}
    assert [r.query["wait"] for r in server.requests] == ["30", "30", "30"]
    assert clock.slept == []  # every wait was the server's


def test_wait_for_run_raises_a_timeout_error_carrying_the_last_state(
    server: Server, client: Client, clock: Clock
) -> None:
    server_that_waits(server, clock, ["running"] * 5)

    with pytest.raises(TimeoutError) as caught:
        client.wait_for_run(17, timeout=45)

    assert [r.query["wait"] for r in server.requests] == ["30", "15"]
    assert caught.value.run.status == "running"  # type: ignore[attr-defined]
    assert "still running after 45 s" in str(caught.value)


def test_a_wait_answered_early_is_followed_by_a_pause_not_a_busy_loop(
    server: Server, client: Client, clock: Clock
) -> None:
    # A server that could not wait answers at once; the client must not hammer it.
    server.reply(Reply(200, samples.run("running")), Reply(200, samples.run("completed")))
    assert client.wait_for_run(17, timeout=10).finished
    assert clock.slept == [1.0]


def test_get_run_refuses_a_wait_the_server_would_refuse(client: Client) -> None:
    with pytest.raises(ValueError, match="wait_for_run"):
        client.get_run(1, wait=31)


def test_list_runs_follows_the_cursors_lazily_with_the_filters(
    server: Server, client: Client
) -> None:
    pages = {
        None: ([3, 2], "c1"),
        "c1": ([1], "c2"),
        "c2": ([], None),
    }

    def handle(request: Request) -> Reply:
        ids, cursor = pages[request.query.get("cursor")]
        items = [samples.run_summary(i) for i in ids]
        return Reply(200, {"items": items, "next_cursor": cursor})

    server.handler = handle
    after = datetime(2026, 3, 1, tzinfo=timezone.utc)
    runs = client.list_runs(workflow="ticket-triage", status="completed", created_after=after)

    first = next(runs)
    assert isinstance(first, RunSummary) and first.id == 3
    assert len(server.requests) == 1  # the next page is fetched when it is reached
    assert [run.id for run in runs] == [2, 1]
    assert [r.query.get("cursor") for r in server.requests] == [None, "c1", "c2"]
    assert server.requests[0].query == {
        "workflow": "ticket-triage",
        "status": "completed",
        "created_after": "2026-03-01T00:00:00+00:00",
        "limit": "50",
    }


def test_workflows_are_listed_and_read(server: Server, client: Client) -> None:
    server.reply(
        Reply(200, {"items": [samples.workflow("a"), samples.workflow("b")], "next_cursor": None}),
        Reply(200, samples.workflow("a")),
    )
    assert [wf.slug for wf in client.list_workflows()] == ["a", "b"]
    assert client.get_workflow("a").active_version == 1
    assert server.requests[1].path == "/api/v1/workflows/a"


def test_cancel_and_resume_send_their_bodies(server: Server, client: Client) -> None:
    server.reply(Reply(200, samples.run("cancelled")), Reply(200, samples.run("running")))
    assert client.cancel_run(17, reason="duplicate order").status == "cancelled"
    client.resume_run(17, output={"approved_by": "grace"}, outcome="approved", step="hold")
    cancel, resume = server.requests
    assert (cancel.path, cancel.json()) == ("/api/v1/runs/17/cancel", {"reason": "duplicate order"})
    assert resume.path == "/api/v1/runs/17/resume"
    assert resume.json() == {
        "output": {"approved_by": "grace"},
        "outcome": "approved",
        "step": "hold",
    }


def test_review_tasks_are_listed_read_claimed_released_and_decided(
    server: Server, client: Client
) -> None:
    server.reply(
        Reply(200, {"items": [samples.task_summary()], "next_cursor": None}),
        Reply(200, samples.task()),
        Reply(200, samples.task(status="claimed", claimed_by_me=True)),
        Reply(200, samples.task()),
        Reply(200, samples.task(status="decided", actions=[])),
    )

    (queued,) = client.list_tasks(workflow="ticket-triage", actionable=True)
    task = client.get_task(queued.id)
    assert client.claim_task(9).claimed_by_me
    client.release_task(9)
    decided = client.decide_task(9, "edit", reason="a refund", output={"label": "billing"})

    assert isinstance(task, Task) and task.actions == ["approve", "reject", "edit", "escalate"]
    assert task.steps[0].cost.calls == 3 and decided.status == "decided"
    listed, _, claim, release, decide = server.requests
    assert listed.query == {"workflow": "ticket-triage", "actionable": "true", "limit": "50"}
    assert [claim.path, release.path] == ["/api/v1/tasks/9/claim", "/api/v1/tasks/9/release"]
    assert claim.body == b"" and "idempotency-key" in claim.headers
    assert decide.json() == {"action": "edit", "reason": "a refund", "output": {"label": "billing"}}
