"""`/metrics`: the scrape parses, its gauges match the database, refusals are JSON 401/403,
process counters move when a step executes, and multiprocess files are summed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from workflows import services
from workflows.models import Run, StepRun, Workflow

ROOT = Path(__file__).resolve().parent.parent


def scrape(client: Client | None = None, **headers: Any) -> dict[tuple[str, tuple], float]:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def busy(make_workflow: Any, system: Any) -> Workflow:
    workflow = make_workflow(
        {
            "slug": "busy",
            "name": "busy",
            "steps": [{"id": "t", "kind": "transform", "config": {"output": {"v": "1"}}}],
        }
    )
    for _ in range(3):
        services.run_start(workflow=workflow, input={}, actor=system)
    return workflow


def test_the_scrape_parses_and_its_gauges_match_the_database(busy: Workflow) -> None:
    samples = scrape()
    pending = Run.objects.filter(workflow=busy, status="pending").count()
    assert pending == 3
    assert value(samples, "hitl_runs", workflow="busy", status="pending") == pending
    assert value(samples, "hitl_runs", workflow="*", status="pending") == pending
    assert value(samples, "hitl_review_tasks", workflow="busy", status="open") == 0
    from workflows.models import AuditEvent

    assert value(samples, "hitl_audit_backlog") == AuditEvent.objects.filter(seq=None).count()
    assert value(samples, "hitl_metrics_source_up", source="database") == 1
    assert value(samples, "hitl_metrics_source_up", source="redis") == 1
    for queue in ("default", "ai", "callbacks"):
        assert value(samples, "hitl_queue_depth", queue=queue) is not None
    assert value(samples, "hitl_metrics_window_seconds") == 3600


def test_a_step_executed_moves_the_process_counters(busy: Workflow) -> None:
    labels = {"kind": "transform", "result": "completed"}
    before = value(scrape(), "hitl_step_duration_seconds_count", **labels) or 0
    step = StepRun.objects.filter(run__workflow=busy).first()
    assert step is not None
    services.step_execute(step_run_id=step.pk, now=timezone.now())
    after = scrape()
    assert value(after, "hitl_step_duration_seconds_count", **labels) == before + 1
    assert value(after, "hitl_runs", workflow="busy", status="completed") == 1


def test_a_client_outside_the_allow_list_gets_a_json_403(busy: Workflow, settings: Any) -> None:
    response = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert response.status_code == 403
    assert response.json() == {"error": "this address may not read metrics"}
    settings.HITL_METRICS_ALLOW = ["10.1.0.0/16", "not-a-network"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="garbage").get("/metrics").status_code == 403


def test_with_a_token_only_the_right_bearer_may_scrape(busy: Workflow, settings: Any) -> None:
    settings.HITL_METRICS_TOKEN = "metrics-token-1234"
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong"},
        {"HTTP_AUTHORIZATION": "Basic metrics-token-1234"},
        {"HTTP_AUTHORIZATION": "Bearer"},
    ):
        response = Client().get("/metrics", **headers)
        assert response.status_code == 401, headers
        assert response.json() == {"error": "a valid bearer token is required"}
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert scrape(HTTP_AUTHORIZATION="Bearer metrics-token-1234")
    # The token does not open the allow-list: both must hold.
    other = Client(REMOTE_ADDR="10.1.2.3").get(
        "/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-1234"
    )
    assert other.status_code == 403
    # With no allow-list, the token alone decides, from any address.
    settings.HITL_METRICS_ALLOW = []
    assert scrape(Client(REMOTE_ADDR="10.1.2.3"), HTTP_AUTHORIZATION="Bearer metrics-token-1234")


def test_with_neither_allow_list_nor_token_metrics_are_closed(db: None, settings: Any) -> None:
    settings.HITL_METRICS_ALLOW = []
    response = Client().get("/metrics")
    assert response.status_code == 403 and "HITL_METRICS_TOKEN" in response.json()["error"]


def test_only_get_and_head_are_answered(db: None) -> None:
    assert Client().post("/metrics").status_code == 405


def test_a_database_that_fails_shows_as_a_source_down_not_a_500(
    busy: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflows import metrics

    def broken(**kwargs: Any) -> None:
        raise metrics.Run.DoesNotExist("no database")  # any error from the read

    monkeypatch.setattr(metrics, "metrics_snapshot", broken)
    samples = scrape()
    assert value(samples, "hitl_metrics_source_up", source="database") == 0
    assert value(samples, "hitl_metrics_source_up", source="redis") == 1


def test_counters_of_other_processes_are_summed_from_the_multiprocess_directory(
    busy: Workflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real processes count alerts into PROMETHEUS_MULTIPROC_DIR; the scrape sums them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = (
        "import django; django.setup()\n"
        "from workflows import instruments\n"
        "instruments.ALERTS.labels('from_another_process').inc(2)\n"
    )
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "DJANGO_SETTINGS_MODULE": "hitl.settings"},
            cwd=ROOT,
            check=True,
        )
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape()
    assert value(samples, "hitl_alerts_total", kind="from_another_process") == 4
    # The business gauges still come from the database.
    assert value(samples, "hitl_runs", workflow="busy", status="pending") == 3
