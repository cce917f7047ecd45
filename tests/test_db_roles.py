"""Two database roles: the owner migrates; the application runs as a role that cannot erase
or rewrite the evidence.

The `default` alias is the owner (pytest-django creates, migrates and flushes through it);
the `runtime` alias connects to the same test database as the role the application runs as
(`DATABASE_RUNTIME_URL`), and carries the attacks. `make test` and CI set both up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, connections

from tests.freshshell import ROOT
from tests.helpers import require_runtime_role
from workflows import services
from workflows.dbroles import AUDIT_SEAL_COLUMNS
from workflows.models import AuditEvent

require_runtime_role()

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "runtime"])


def runtime_sql(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections["runtime"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def refused(sql: str, params: list[Any] | None = None) -> str:
    """Run `sql` as the runtime role, expecting PostgreSQL to refuse it; return why."""
    with pytest.raises(DatabaseError) as caught:
        runtime_sql(sql, params)
    connections["runtime"].close()  # the failed statement aborted nothing else; start clean
    return str(caught.value)


@pytest.fixture
def sealed_event(system: services.Actor) -> AuditEvent:
    event = services.audit_record(actor=system, verb="test.evidence", payload={"n": 1})
    services.audit_seal()
    event.refresh_from_db()
    assert event.seq is not None
    return event


def test_the_runtime_role_is_not_the_owner() -> None:
    [(me,)] = runtime_sql("SELECT current_user")
    [(owner,)] = runtime_sql(
        "SELECT tableowner FROM pg_tables WHERE tablename = 'workflows_auditevent'"
    )
    assert me == settings.DATABASES["runtime"]["USER"]
    assert owner == settings.DATABASES["default"]["USER"] != me


def test_the_runtime_role_cannot_erase_the_audit_trail(sealed_event: AuditEvent) -> None:
    assert "permission denied" in refused("TRUNCATE workflows_auditevent")
    assert "permission denied" in refused("DELETE FROM workflows_auditevent")
    assert "permission denied" in refused(
        "UPDATE workflows_auditevent SET payload = '{}'::jsonb WHERE id = %s", [sealed_event.pk]
    )
    assert "owner" in refused("ALTER TABLE workflows_auditevent DISABLE TRIGGER ALL")
    assert "owner" in refused(
        "DROP TRIGGER workflows_auditevent_append_only ON workflows_auditevent"
    )
    assert AuditEvent.objects.filter(pk=sealed_event.pk, payload={"n": 1}).exists()
    assert services.audit_verify().ok


def test_the_runtime_role_writes_and_seals_events(system: services.Actor) -> None:
    # Insert and read as the application does, and seal: the seal columns, and only those.
    runtime_sql(
        "INSERT INTO workflows_auditevent (created_at, actor_type, actor_id, actor_label,"
        " verb, object_type, object_id, payload, payload_sha256, prev_hash, hash)"
        " VALUES (now(), 'system', '', 'x', 'test.runtime', '', '', '{}', %s, '', '')",
        ["0" * 64],
    )
    [(event_id,)] = runtime_sql("SELECT id FROM workflows_auditevent WHERE verb = 'test.runtime'")
    runtime_sql(
        "UPDATE workflows_auditevent SET seq = 1, prev_hash = 'p', hash = 'h', sealed_at = now()"
        " WHERE id = %s",
        [event_id],
    )
    assert set(AUDIT_SEAL_COLUMNS) >= {"seq", "prev_hash", "hash", "sealed_at"}


def test_decisions_are_insert_only_for_the_runtime_role() -> None:
    assert "permission denied" in refused("DELETE FROM workflows_decision")
    assert "permission denied" in refused("UPDATE workflows_decision SET reason = 'x'")
    assert "permission denied" in refused("TRUNCATE workflows_decision")
    runtime_sql("SELECT count(*) FROM workflows_decision")


def test_every_other_table_is_usable_and_tables_made_later_are_too() -> None:
    role = settings.DATABASES["runtime"]["USER"]
    # One privilege per call: given a list, has_table_privilege answers whether any is held.
    missing = runtime_sql(
        "SELECT c.relname, p.name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p(name)"
        " WHERE n.nspname = 'public' AND c.relkind = 'r'"
        " AND c.relname NOT IN ('workflows_auditevent', 'workflows_decision')"
        " AND NOT has_table_privilege(%s, c.oid, p.name)",
        [role],
    )
    assert missing == []
    # Default privileges: a table a later migration creates is usable without a new grant.
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE hitl_later (id bigserial PRIMARY KEY, note text)")
    try:
        runtime_sql("INSERT INTO hitl_later (note) VALUES ('made after the grants')")
        assert runtime_sql("SELECT note FROM hitl_later") == [("made after the grants",)]
        assert "permission denied" in refused("TRUNCATE hitl_later")
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP TABLE hitl_later")


def _url(alias: str, dbname: str) -> str:
    s = connections[alias].settings_dict
    host = s["HOST"] or "127.0.0.1"
    netloc = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "") + "@"
    if host.startswith("/"):
        return f"postgres://{netloc}/{dbname}?host={host}"
    return urlunsplit(("postgres", f"{netloc}{host}:{s['PORT'] or 5432}", f"/{dbname}", "", ""))


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """An empty database made by the owner role, as a DBA would hand it over."""
    name = f"hitl_roles_{uuid.uuid4().hex[:8]}"
    admin = _url("default", settings.DATABASES["default"]["NAME"])
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.django_db(databases=[])
def test_migrate_in_production_runs_as_the_owner_and_grants_the_runtime_role(
    scratch_database: str,
) -> None:
    # As a deployment runs it: the app's DATABASE_URL is the runtime role; migrate goes
    # through DATABASE_OWNER_URL and grants the runtime role what it needs, nothing more.
    env = {
        **os.environ,
        "DATABASE_URL": _url("runtime", scratch_database),
        "DATABASE_OWNER_URL": _url("default", scratch_database),
    }
    env.pop("DATABASE_RUNTIME_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(_url("runtime", scratch_database)) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'workflows_run'"
        ).fetchone()
        assert owner == (settings.DATABASES["default"]["USER"],)
        conn.execute("SELECT count(*) FROM workflows_run")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE workflows_auditevent")


def test_the_integration_worker_connects_as_the_runtime_role() -> None:
    from tests.integration.worker import worker_database_url

    url = worker_database_url("test_x")
    assert urlsplit(url).username == settings.DATABASES["runtime"]["USER"]


@pytest.mark.django_db(databases=[])
def test_check_deploy_warns_when_the_app_would_run_as_the_owner() -> None:
    from workflows.checks import W_ONE_ROLE, check_database_roles, database_roles_warnings

    assert check_database_roles() == []
    [warning] = database_roles_warnings({"default": settings.DATABASES["default"]})
    assert warning.id == W_ONE_ROLE and "DATABASE_OWNER_URL" in warning.msg


def test_the_live_server_serves_as_the_runtime_role(
    live_server: Any, make_workflow: Any, owner: Any, system: services.Actor
) -> None:
    import threading

    import httpx
    from django.db.backends.signals import connection_created

    from hitl.accounts.models import SCOPES
    from hitl.accounts.services import api_token_create
    from tests.api.conftest import WAIT_DEFINITION

    workflow = make_workflow(WAIT_DEFINITION)
    workflow.admins.add(owner)
    run = services.run_start(workflow=workflow, input={"amount": 1}, actor=system)
    _, token = api_token_create(user=owner, name="roles", scopes=SCOPES)
    served_as: list[str] = []

    def opened(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            served_as.append(connection.settings_dict["USER"])

    connection_created.connect(opened)
    try:
        response = httpx.get(
            f"{live_server.url}/api/v1/runs/{run.pk}",
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        connection_created.disconnect(opened)
    assert response.status_code == 200 and response.json()["id"] == run.pk
    assert served_as and set(served_as) == {settings.DATABASES["runtime"]["USER"]}
