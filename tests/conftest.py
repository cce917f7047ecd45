"""Shared fixtures: users with roles, workflow helpers, and a real Celery worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User

from tests.factories import GroupFactory, UserFactory
from workflows import services
from workflows.models import Workflow

# The worker and the test process must agree on these; see tests/worker.py.
os.environ.setdefault("HITL_EXTRA_STEP_KINDS", "tests.kinds")
# Tests set up gates without an audit sample; tests/review/test_gate.py raises the floor.
os.environ.setdefault("HITL_GATE_MIN_AUDIT_RATE", "0")
django_settings.HITL_GATE_MIN_AUDIT_RATE = 0.0
# Settings are production's (DEBUG off), which redirect plain HTTP to HTTPS; the test client
# and the live servers speak plain HTTP. tests/test_deploy.py turns the redirect back on.
django_settings.SECURE_SSL_REDIRECT = False
# Static files: the tests run without `collectstatic`, so pages link the files as they are and
# WhiteNoise finds them where they lie, as with DEBUG. tests/test_static_files.py collects them
# and checks production's storage and headers.
django_settings.STORAGES = {
    **django_settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
django_settings.WHITENOISE_USE_FINDERS = True
django_settings.WHITENOISE_AUTOREFRESH = True


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """The test database, and the `runtime` alias (the application's role) pointed at it.

    Django takes an alias with the same host, port and name as `default` for a mirror of it
    and gives it the owner's credentials: give the runtime role back its own.
    """
    from django.conf import settings
    from django.db import connections

    if "runtime" in settings.DATABASES:
        # In place, in the dict the connection handler builds connections from: a connection
        # made later (another thread or context, as the browser tests' make) gets it too.
        runtime = connections.settings["runtime"]
        runtime.update(
            {
                **connections["default"].settings_dict,
                "USER": runtime["USER"],
                "PASSWORD": runtime["PASSWORD"],
                "CONN_MAX_AGE": 0,
                # A mirror is not flushed between tests: the owner's flush covers it.
                "TEST": {**connections["default"].settings_dict["TEST"], "MIRROR": "default"},
            }
        )
        connections["runtime"].close()
        connections["runtime"].settings_dict = runtime
    yield
    if "runtime" in settings.DATABASES:
        connections["runtime"].close()  # the test database is dropped after this


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """pytest-django's live server, serving as the application's database role when the
    tests have one (tests/liveserver.py)."""
    from django.conf import settings
    from pytest_django.live_server_helper import LiveServer

    from tests.liveserver import RuntimeRoleLiveServerThread

    addr = request.config.getvalue("liveserver") or "localhost"
    server = LiveServer(addr, start=False)
    if "runtime" in settings.DATABASES:
        request.getfixturevalue("django_db_setup")
        thread = server.thread
        server.thread = RuntimeRoleLiveServerThread(
            thread.host,
            static_handler=thread.static_handler,
            connections_override=thread.connections_override,
            port=thread.port,
        )
        server.thread.daemon = True
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _test_step_kinds(settings: Any) -> Iterator[None]:
    from workflows.steps import registry

    if "tests.kinds" not in settings.HITL_STEP_KINDS:
        settings.HITL_STEP_KINDS = [*settings.HITL_STEP_KINDS, "tests.kinds"]
    registry.cache_clear()
    yield
    registry.cache_clear()


@pytest.fixture
def system() -> services.Actor:
    return services.Actor.system("tests")


@pytest.fixture
def owner(db: None) -> User:
    """Made an admin of the workflows the tests create (see tests/review/conftest.py)."""
    return UserFactory(username="owner")


@pytest.fixture
def reviewers(db: None) -> Group:
    """The reviewer group of the workflows the tests create."""
    return GroupFactory(name="triage-reviewers")


@pytest.fixture
def reviewer(reviewers: Group) -> User:
    return UserFactory(username="reviewer", groups=[reviewers])


@pytest.fixture
def outsider(db: None) -> User:
    """A user with no role in any workflow."""
    return UserFactory(username="outsider")


@pytest.fixture
def make_workflow(db: None, system: services.Actor):
    """Publish a definition given as a dict (or YAML text) and return its workflow."""

    def make(definition: dict[str, Any] | str, **extra: Any) -> Workflow:
        source = (
            definition
            if isinstance(definition, str)
            else yaml.safe_dump(definition, sort_keys=False)
        )
        result = services.workflow_import(source=source, actor=system)
        workflow = result.workflow
        for field, value in extra.items():
            setattr(workflow, field, value)
        if extra:
            workflow.save()
        return workflow

    return make


@pytest.fixture
def transform_workflow(make_workflow: Any) -> Workflow:
    return make_workflow(
        {
            "slug": "totals",
            "name": "Totals",
            "input_schema": {
                "type": "object",
                "properties": {"amount": {"type": "number"}},
                "required": ["amount"],
            },
            "steps": [
                {
                    "id": "double",
                    "kind": "transform",
                    "config": {"output": {"v": "input.amount * 2"}},
                },
                {
                    "id": "label",
                    "kind": "transform",
                    "config": {
                        "output": {"big": "steps.double.output.v > 100"},
                        "outcome": "steps.double.output.v > 100 ? 'approved' : 'rejected'",
                    },
                },
                {"id": "done", "kind": "transform", "config": {"output": {"ok": "true"}}},
            ],
        }
    )
