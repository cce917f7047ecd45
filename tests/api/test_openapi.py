"""The published OpenAPI document is valid and says what the API does; and Schemathesis,
in-process, finds no input that makes any operation answer 5xx.

The fuzzing is derandomised (the same examples on every run) and bounded (EXAMPLES per
operation, positive and negative alike), with a superuser's token holding every scope, over a
database with a few workflows, runs and tasks for the generated ids to hit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from hitl.api.v1 import api
from tests.api.conftest import ALL_SCOPES
from tests.helpers import drive
from workflows import services
from workflows.models import ReviewTask, Workflow

pytestmark = pytest.mark.django_db

EXAMPLES = 25
# The document as the API publishes it (no request is needed to build it).
DOCUMENT = api.get_openapi_schema(path_prefix="/api/v1/")
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = [
    (path, method.upper())
    for path, methods in DOCUMENT["paths"].items()
    for method in methods
    if method in {"get", "post", "put", "patch", "delete"}
]


def test_the_published_document_is_valid_openapi() -> None:
    published = Client().get("/api/v1/openapi.json").json()
    assert published == DOCUMENT
    SCHEMA.validate()  # against the OpenAPI 3.1 meta-schema
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_operation_is_documented_as_it_behaves() -> None:
    assert len(OPERATIONS) == 14
    for path, method in OPERATIONS:
        operation = DOCUMENT["paths"][path][method.lower()]
        assert operation["security"] == [{"BearerToken": []}], path
        for status in ("401", "403", "422"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorOut"}, (path, status)
        headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert ("Idempotency-Key" in headers) == (method == "POST"), path
    assert DOCUMENT["components"]["securitySchemes"]["BearerToken"] == {
        "type": "http",
        "scheme": "bearer",
    }


@pytest.fixture
def fuzz_world(
    make_token: Callable[..., str],
    superuser: User,
    task: ReviewTask,
    wait_workflow: Workflow,
    system: services.Actor,
    settings: Any,
) -> Iterator[dict[str, Any]]:
    """A superuser's token with every scope, and the ids of real objects to aim at."""
    waiting = drive(services.run_start(workflow=wait_workflow, input={"amount": 1}, actor=system))
    # Django's handler closes the connection around each request, which would end the
    # test's transaction; its test client does the same as this.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield {
            "token": make_token(superuser, scopes=ALL_SCOPES),
            "ids": {"slug": "expenses", "number": 1, "run_id": waiting.pk, "task_id": task.pk},
        }
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_input_makes_an_operation_fail(
    path: str, method: str, fuzz_world: dict[str, Any]
) -> None:
    operation = SCHEMA[path][method]
    app = WSGIHandler()
    headers = {"Authorization": f"Bearer {fuzz_world['token']}", "Host": "testserver"}
    # Generated ids rarely exist: a third of the cases aim at real objects instead, so that
    # the generated queries and bodies reach the services.
    real = {k: v for k, v in fuzz_world["ids"].items() if "{" + k + "}" in path}
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
    )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Any) -> None:
        response = case.call(app=app, headers=headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}\n"
            f"{case.as_curl_command()}\n{response.text[:1000]}"
        )

    check()
