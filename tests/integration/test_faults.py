"""The engine against a real Celery worker on real Redis and PostgreSQL, including faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from tests.integration.worker import Worker
from workflows import services
from workflows.models import Run, StepRun
from workflows.tasks import step_execute_task

pytestmark = pytest.mark.integration


def probe_workflow(make_workflow: Any, slug: str, *, max_attempts: int = 5, **probe: Any) -> Any:
    return make_workflow(
        {
            "slug": slug,
            "name": slug,
            "steps": [
                {"id": "first", "kind": "transform", "config": {"output": {"n": "1"}}},
                {"id": "probe", "kind": "probe", "config": probe, "max_attempts": max_attempts},
                {
                    "id": "last",
                    "kind": "transform",
                    "config": {"output": {"n": "steps.first.output.n + 1"}},
                },
            ],
        }
    )


def status_of(run: Run) -> str:
    run.refresh_from_db()
    return run.status


def effect_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def step_status(run: Run, step_id: str) -> str | None:
    return StepRun.objects.filter(run=run, step_id=step_id).values_list("status", flat=True).first()


def test_a_worker_drives_multi_step_runs_to_completion(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None], effects: Path
) -> None:
    workflow = probe_workflow(make_workflow, "happy")
    runs = [
        services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
        for _ in range(5)
    ]
    wait_until(lambda: all(status_of(r) == Run.Status.COMPLETED for r in runs), sweep=False)
    assert len(effect_lines(effects)) == 5
    for run in runs:
        assert StepRun.objects.get(run=run, step_id="last").output == {"n": 2}


def test_a_kill_9_of_the_worker_mid_step_completes_the_step_exactly_once(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None], effects: Path
) -> None:
    workflow = probe_workflow(make_workflow, "kill-worker", sleep=2.0)
    run = services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
    wait_until(lambda: step_status(run, "probe") == StepRun.Status.RUNNING, sweep=False)
    wait_until(lambda: len(effect_lines(effects)) == 1, sweep=False)
    worker.kill_hard()
    worker.start()
    wait_until(lambda: status_of(run) == Run.Status.COMPLETED, timeout=40)
    step = StepRun.objects.get(run=run, step_id="probe")
    assert step.attempts == 2
    assert step.output["attempt"] == 2
    assert len(effect_lines(effects)) == 2  # started twice, recorded once
    assert StepRun.objects.filter(run=run, step_id="last").count() == 1


def test_a_killed_pool_child_loses_nothing(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None], effects: Path
) -> None:
    workflow = probe_workflow(make_workflow, "kill-child", sleep=2.0)
    run = services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
    wait_until(lambda: len(effect_lines(effects)) == 1, sweep=False)
    worker.kill_child()
    wait_until(lambda: status_of(run) == Run.Status.COMPLETED, timeout=40)
    assert worker.alive()
    step = StepRun.objects.get(run=run, step_id="probe")
    assert step.status == StepRun.Status.COMPLETED
    assert step.attempts == 2
    assert StepRun.objects.filter(run=run, step_id="last").count() == 1


def test_flushing_redis_loses_no_run(
    worker: Worker,
    make_workflow: Any,
    system: Any,
    wait_until: Callable[..., None],
    effects: Path,
    broker: Any,
) -> None:
    workflow = probe_workflow(make_workflow, "flush", sleep=0.3)
    runs = [
        services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
        for _ in range(6)
    ]
    broker.flushall()
    wait_until(lambda: all(status_of(r) == Run.Status.COMPLETED for r in runs), timeout=60)
    assert sorted(
        StepRun.objects.filter(step_id="last").values_list("run_id", flat=True)
    ) == sorted(r.pk for r in runs)


def test_the_same_task_delivered_twice_at_once_has_one_effect(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None], effects: Path
) -> None:
    workflow = make_workflow(
        {
            "slug": "twice",
            "name": "twice",
            "steps": [{"id": "wait", "kind": "wait"}, {"id": "probe", "kind": "probe"}],
        }
    )
    run = services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
    wait_until(lambda: status_of(run) == Run.Status.WAITING, sweep=False)
    services.run_resume(run=run, step_id="wait", actor=system)
    probe = StepRun.objects.get(run=run, step_id="probe")
    for _ in range(3):
        step_execute_task.apply_async(args=[probe.pk], queue="default")
    wait_until(lambda: status_of(run) == Run.Status.COMPLETED, sweep=False)
    time.sleep(1.0)  # let the duplicate messages be consumed
    assert len(effect_lines(effects)) == 1
    probe.refresh_from_db()
    assert probe.attempts == 1


def test_a_step_that_kills_its_worker_every_time_stops_at_the_attempts_cap(
    worker: Worker, make_workflow: Any, system: Any, wait_until: Callable[..., None], effects: Path
) -> None:
    workflow = probe_workflow(make_workflow, "suicide", die=True, max_attempts=2)
    run = services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
    wait_until(lambda: status_of(run) == Run.Status.FAILED, timeout=60)
    step = StepRun.objects.get(run=run, step_id="probe")
    assert step.status == StepRun.Status.FAILED
    assert step.attempts == 2
    assert "worker lost 2 times" in step.error
    assert "worker lost 2 times" in run.error
    assert len(effect_lines(effects)) == 2
    # Parked, not looping: nothing re-enqueues a failed step.
    assert services.steps_sweep() == {"enqueued": 0, "parked": 0}
    assert worker.alive()


def test_a_rolled_back_run_start_runs_nothing(
    worker: Worker,
    make_workflow: Any,
    system: Any,
    effects: Path,
    broker: Any,
    wait_until: Callable[..., None],
) -> None:
    workflow = probe_workflow(make_workflow, "rollback")
    # A worker restarted by an earlier test may still be restoring that test's messages.
    wait_until(lambda: broker.llen("default") == 0, sweep=False)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
        raise RuntimeError("the caller failed after run_start")
    assert broker.llen("default") == 0
    time.sleep(1.0)
    assert not Run.objects.exists()
    assert effect_lines(effects) == []


def test_a_wait_step_survives_a_worker_restart_and_a_redis_flush(
    worker: Worker,
    make_workflow: Any,
    system: Any,
    wait_until: Callable[..., None],
    effects: Path,
    broker: Any,
) -> None:
    workflow = make_workflow(
        {
            "slug": "survive",
            "name": "survive",
            "steps": [
                {"id": "hold", "kind": "wait"},
                {"id": "probe", "kind": "probe"},
            ],
        }
    )
    run = services.run_start(workflow=workflow, input={"log": str(effects)}, actor=system)
    wait_until(lambda: status_of(run) == Run.Status.WAITING, sweep=False)
    worker.stop()
    broker.flushall()
    worker.start()
    services.run_resume(run=run, step_id="hold", actor=system, output={"ok": True})
    wait_until(lambda: status_of(run) == Run.Status.COMPLETED)
    assert len(effect_lines(effects)) == 1
