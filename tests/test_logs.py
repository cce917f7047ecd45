"""Structured logs: the JSON formatter, and the ids a request, a step and a task put on them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import task_postrun, task_prerun
from django.test import Client
from django.utils import timezone

from workflows import services
from workflows.logs import ContextFilter, JsonFormatter
from workflows.models import StepRun


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the console handler writes under HITL_LOG_FORMAT=json, captured."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_settings_log_json_with_the_context_filter_when_debug_is_off() -> None:
    [console] = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    assert isinstance(console.formatter, JsonFormatter)
    assert any(isinstance(f, ContextFilter) for f in console.filters)


def test_a_requests_log_line_carries_its_request_id_and_the_response_echoes_it(
    db: None, json_lines: io.StringIO
) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="req-42.a")
    assert response["X-Request-ID"] == "req-42.a"
    [line] = [x for x in parsed(json_lines) if x["logger"] == "hitl.request"]
    assert line["request_id"] == "req-42.a"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["level"] == "INFO" and "run_id" not in line


def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(
    db: None, json_lines: io.StringIO
) -> None:
    client = Client()
    first = client.get("/healthz", HTTP_X_REQUEST_ID="no spaces\nor newlines")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert len(first) == 32 and len(second) == 32 and first != second
    ids = [x["request_id"] for x in parsed(json_lines) if x["logger"] == "hitl.request"]
    assert ids == [first, second]


def test_a_steps_log_lines_carry_its_run_and_step_ids(
    make_workflow: Any, system: Any, json_lines: io.StringIO
) -> None:
    workflow = make_workflow(
        {
            "slug": "talks",
            "name": "talks",
            "steps": [{"id": "speak", "kind": "probe", "config": {"say": "hello from a step"}}],
        }
    )
    now = timezone.now()
    run = services.run_start(workflow=workflow, input={}, actor=system, now=now)
    step = StepRun.objects.get(run=run)
    services.step_execute(step_run_id=step.pk, now=now)
    [line] = [x for x in parsed(json_lines) if x["message"] == "hello from a step"]
    assert (line["run_id"], line["step_id"], line["logger"]) == (run.pk, "speak", "tests.kinds")
    # Once the step is done, nothing logged afterwards claims to be about it.
    logging.getLogger("after").warning("after the step")
    [after] = [x for x in parsed(json_lines) if x["message"] == "after the step"]
    assert "run_id" not in after and "step_id" not in after


def test_a_celery_tasks_lines_carry_its_task_id_until_it_ends(
    db: None, json_lines: io.StringIO
) -> None:
    task_prerun.send(sender=None, task_id="task-7", task=None)
    logging.getLogger("in.task").warning("inside")
    task_postrun.send(sender=None, task_id="task-7", task=None)
    logging.getLogger("in.task").warning("outside")
    inside, outside = [x for x in parsed(json_lines) if x["logger"] == "in.task"]
    assert inside["task_id"] == "task-7" and "task_id" not in outside


def test_extra_fields_and_tracebacks_are_kept(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed %s", "here", extra={"alert_kind": "k"})
    [line] = parsed(json_lines)
    assert (line["message"], line["alert_kind"], line["level"]) == ("failed here", "k", "ERROR")
    assert "ValueError: boom" in line["exc_info"]
