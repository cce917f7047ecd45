"""Fixtures for the REST API: tokens, clients that send them, and a workflow with a wait step.

The gated workflow, its roles and review tasks come from tests/review/conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hitl.accounts.models import SCOPES, ApiToken
from hitl.accounts.services import api_token_create
from tests.review.conftest import (  # noqa: F401 (fixtures, found by name)
    T0,
    _review_kinds,
    escalator,
    escalators,
    make_gate_workflow,
    other_reviewer,
    second_reviewer,
    start,
    superuser,
    task,
    workflow,
)
from workflows.models import Workflow

ALL_SCOPES = tuple(SCOPES)


class Api:
    """A client that sends one bearer token (or none) and speaks JSON."""

    def __init__(self, secret: str | None) -> None:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self.client = Client(headers=headers)
        self.secret = secret

    def get(self, path: str, params: dict[str, Any] | None = None, **extra: Any) -> Any:
        return self.client.get(f"/api/v1{path}", params or {}, **extra)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> Any:
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        headers = {"Idempotency-Key": key} if key is not None else {}
        return self.client.post(
            f"/api/v1{path}", data, content_type="application/json", headers=headers, **extra
        )


@pytest.fixture
def make_token(db: None) -> Callable[..., str]:
    """A token's secret for `user`, with `scopes` (all by default) and `workflows`."""

    def make(
        user: User,
        scopes: Iterable[str] = ALL_SCOPES,
        workflows: Iterable[Workflow] | None = None,
        expires_at: datetime | None = None,
        name: str = "test",
    ) -> str:
        _, secret = api_token_create(
            user=user,
            name=name,
            scopes=scopes,
            workflows=list(workflows) if workflows is not None else None,
            expires_at=expires_at,
        )
        return secret

    return make


@pytest.fixture
def api_for(make_token: Callable[..., str]) -> Callable[..., Api]:
    """`api_for(user, scopes=..., workflows=...)`: a client with a fresh token of `user`."""

    def make(user: User | None, **token: Any) -> Api:
        return Api(make_token(user, **token) if user is not None else None)

    return make


def token_of(api: Api) -> ApiToken:
    from hitl.accounts.services import token_digest

    assert api.secret is not None
    return ApiToken.objects.get(digest=token_digest(api.secret))


def error_of(response: Any) -> dict[str, Any]:
    """The error of an error answer, checking its one shape on the way."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    return body["error"]


WAIT_DEFINITION = {
    "slug": "expenses",
    "name": "Expenses",
    "input_schema": {
        "type": "object",
        "properties": {"amount": {"type": "number"}},
        "required": ["amount"],
    },
    "steps": [
        {"id": "hold", "kind": "wait", "config": {"reason": "a manager confirms"}},
        {"id": "book", "kind": "transform", "config": {"output": {"booked": "input.amount"}}},
    ],
}


@pytest.fixture
def wait_workflow(make_workflow: Callable[..., Workflow], owner: User, reviewers: Any) -> Workflow:
    """A wait step then a transform: owner is its admin, the `reviewers` group reviews it."""
    wf = make_workflow(WAIT_DEFINITION, reviewer_group=reviewers)
    wf.admins.add(owner)
    return wf
