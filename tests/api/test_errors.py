"""One error body everywhere, and never a 500 for bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.api.conftest import Api, error_of
from tests.helpers import database_state
from workflows.models import Run, Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(api_for: Callable[..., Api], owner: User, wait_workflow: Workflow) -> Api:
    return api_for(owner)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"input": {"amount": 1}',
        b'{"input": {"amount": NaN}}',
        b'{"input": {"amount": Infinity}}',
        b'{"input": {"amount": 1e400}}',
        b'{"input": {"amount": 1, "note": "a\\u0000b"}}',
        b'{"input": {"amount": 1, "note\\u0000": "b"}}',
        b'{"input": {"amount": 1, "note": "\\ud800"}}',
        b'{"input": {"amount": 1, "note": "\xff"}}',
        b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"input": ' + b"[" * 70 + b"]" * 70 + b"}",
        b'{"input": {"amount": 1' + b"0" * 5000 + b"}}",
    ],
    ids=[
        "truncated",
        "nan",
        "infinity",
        "overflow",
        "nul",
        "nul-key",
        "surrogate",
        "not-utf8",
        "deep",
        "deeper-than-64",
        "huge-int",
    ],
)
def test_bodies_postgresql_cannot_store_are_400(api: Api, raw: bytes) -> None:
    before = database_state()
    response = api.post("/workflows/expenses/runs", raw=raw)
    assert response.status_code == 400, response.content[:300]
    assert error_of(response)["code"] == "malformed_json"
    assert database_state() == before


def test_a_validation_error_says_where(api: Api) -> None:
    response = api.post("/workflows/expenses/runs", {"input": {"amount": 1}, "versoin": 2})
    error = error_of(response)
    assert response.status_code == 422 and error["code"] == "validation_error"
    assert error["details"][0]["loc"] == ["body", "payload", "versoin"]
    for body in ([1, 2], "text", 3, None):
        response = api.post("/workflows/expenses/runs", body)
        assert response.status_code == 422, body
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/runs/0", {}, 422),
        ("/runs/-1", {}, 422),
        ("/runs/abc", {}, 422),
        ("/runs/99999999999999999999", {}, 422),
        ("/runs/9223372036854775807", {}, 404),
        ("/runs/1", {"wait": "31"}, 422),
        ("/runs/1", {"wait": "nan"}, 422),
        ("/runs", {"workflow": "a\x00b"}, 422),
        ("/runs", {"status": "sleeping"}, 422),
        ("/runs", {"created_after": "0001-01-01T00:00:00+01:00"}, 422),
        ("/runs", {"created_after": "yesterday"}, 422),
        ("/runs", {"limit": "0"}, 422),
        ("/runs", {"limit": "101"}, 422),
        ("/tasks", {"reason": "a\x00"}, 422),
        ("/tasks", {"min_priority": str(2**40)}, 422),
        ("/workflows/bad%20slug", {}, 422),
        ("/workflows/expenses/versions/0", {}, 422),
        ("/workflows/expenses/versions/99999999999", {}, 422),
    ],
)
def test_bad_ids_and_parameters_are_4xx(
    api: Api, path: str, params: dict[str, Any], status: int
) -> None:
    response = api.get(path, params)
    assert response.status_code == status, response.content[:300]
    error_of(response)


def test_unknown_paths_and_methods_get_the_same_shape(api: Api) -> None:
    missing = api.get("/nothing/here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert api.client.get("/api/nope").status_code == 404
    assert error_of(api.client.get("/api/nope"))["code"] == "not_found"
    not_allowed = api.client.delete("/api/v1/runs")
    assert not_allowed.status_code == 405
    assert error_of(not_allowed)["code"] == "method_not_allowed"
    assert "GET" in not_allowed["Allow"]
    # Outside the API, the site's own page.
    page = api.client.get("/no-such-page/")
    assert page.status_code == 404 and "error" not in page.content.decode()[:20]


def test_without_a_usable_token_it_is_401(
    owner: User, make_token: Callable[..., str], wait_workflow: Workflow
) -> None:
    secret = make_token(owner)
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {secret}"},
        {"Authorization": f"Bearer {secret}x"},
    ):
        response = Client(headers=headers).get("/api/v1/workflows")
        assert response.status_code == 401, headers
        assert error_of(response)["code"] == "unauthenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_desk_session_is_not_accepted(owner: User, wait_workflow: Workflow) -> None:
    client = Client()
    client.force_login(owner)
    before = database_state()
    assert client.get("/api/v1/workflows").status_code == 401
    response = client.post(
        "/api/v1/workflows/expenses/runs", {"input": {"amount": 1}}, content_type="application/json"
    )
    assert response.status_code == 401
    assert database_state() == before


def test_a_body_over_djangos_limit_is_413(api: Api, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/workflows/expenses/runs", {"input": {"amount": 1, "x": "y" * 2000}})
    assert response.status_code == 413 and error_of(response)["code"] == "too_large"


def test_the_openapi_document_and_the_docs_page_are_public() -> None:
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.1")
    docs = Client().get("/api/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "/api/v1/openapi.json" in html
    # Served from this server, not a CDN.
    assert "cdn" not in html.lower()


def test_a_token_sent_with_another_scheme_is_refused_and_never_logged(
    owner: User,
    make_token: Callable[..., str],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.DEBUG = True
    secret = make_token(owner)
    for value in (f"Basic {secret}", f"Token {secret}", secret):
        response = Client(headers={"Authorization": value}).get("/api/v1/workflows")
        assert response.status_code == 401
    assert secret not in caplog.text
    # The scheme is case-insensitive, as HTTP says.
    assert (
        Client(headers={"Authorization": f"bearer {secret}"}).get("/api/v1/workflows").status_code
        == 200
    )
