"""Fixtures for callbacks: a real receiver on loopback (allowed through the allow-list), a
workflow whose admin is `owner`, and endpoints made through the service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.receiver import Receiver
from workflows import services
from workflows.models import Endpoint, Workflow


@pytest.fixture(autouse=True)
def _fast_hashes(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    """Loopback is refused unless allowed: the tests' receiver is on 127.0.0.1."""
    settings.HITL_OUTBOUND_ALLOW = ["127.0.0.1"]


@pytest.fixture
def receiver(allow_loopback: None) -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def hooked(transform_workflow: Workflow, owner: User) -> Workflow:
    """The three-step transform workflow, administered by `owner`."""
    transform_workflow.admins.add(owner)
    return transform_workflow


@pytest.fixture
def make_endpoint(owner: User) -> Callable[..., Endpoint]:
    def make(workflow: Workflow, url: str, **options: Any) -> Endpoint:
        if owner not in workflow.admins.all():
            workflow.admins.add(owner)
        return services.endpoint_create(workflow=workflow, user=owner, url=url, **options)

    return make
