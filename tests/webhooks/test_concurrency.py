"""Copies of one delivery arriving at once start one run, on real PostgreSQL and threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client

from tests.webhooks.conftest import INTAKE, Sender, encode, sign
from workflows.models import InboundMessage, Run
from workflows.services import webhook_sources
from workflows.services.webhooks import webhook_receive

TICKET = {"subject": "Refund please"}


@pytest.fixture
def committed(transactional_db: None, make_workflow: Any) -> webhook_sources.IssuedSecret:
    workflow = make_workflow(INTAKE)
    return webhook_sources.webhook_source_create(workflow=workflow, slug="crm", user=None)


def in_threads(count: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:  # reported by the assertions below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_eight_copies_at_once_make_one_run(committed: webhook_sources.IssuedSecret) -> None:
    body = encode(TICKET)
    headers = sign(committed.secret, body, msg_id="msg_burst")
    sender = Sender(committed.secret)

    def post() -> tuple[int, Any]:
        response = Client().post(
            sender.url, data=body, content_type="application/json", headers=headers
        )
        return response.status_code, response.json()

    results = in_threads(8, post)
    assert [status for status, _ in results].count(202) == 1, results
    assert sorted(status for status, _ in results) == [200] * 7 + [202]
    run = Run.objects.get()
    assert {answer["run"] for _, answer in results} == {run.pk}
    assert InboundMessage.objects.get().run_id == run.pk


def test_the_copy_that_loses_the_race_at_the_insert_answers_the_winners_run(
    committed: webhook_sources.IssuedSecret,
) -> None:
    """The loser gets past the look-up for an earlier copy (the winner has not committed),
    starts its own run, and blocks on the unique index; when the winner commits, its insert
    fails and its savepoint rolls back: one run, and both answer it."""
    body = encode(TICKET)
    headers = sign(committed.secret, body, msg_id="msg_race")
    inserted, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def winner() -> None:
        try:
            with transaction.atomic():
                results["winner"] = webhook_receive(source_slug="crm", headers=headers, body=body)
                inserted.set()
                assert release.wait(30), "the loser never blocked"
        finally:
            connection.close()

    def loser() -> None:
        inserted.wait(30)
        try:
            results["loser"] = webhook_receive(source_slug="crm", headers=headers, body=body)
        except Exception as exc:
            results["loser"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=winner), threading.Thread(target=loser)]
    for thread in threads:
        thread.start()
    assert inserted.wait(30)
    _wait_for_a_blocked_insert()
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not isinstance(results["loser"], Exception), results["loser"]
    assert results["loser"].run_id == results["winner"].run_id
    assert (results["winner"].duplicate, results["loser"].duplicate) == (False, True)
    assert Run.objects.count() == 1 == InboundMessage.objects.count()


def _wait_for_a_blocked_insert() -> None:
    """Until a session of this database waits on a lock (the loser, on the unique index)."""
    with connection.cursor() as cursor:
        for _ in range(600):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
                " AND query LIKE 'INSERT INTO \"workflows_inboundmessage\"%%'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the second copy never waited on the first one's insert")
